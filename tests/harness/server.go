// Package harness runs the real kasa binary for integration tests, end-to-end
// tests and benchmarks: a server in its own temporary data dir, on free ports,
// so that it runs beside any kasa already on the machine.
package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Binary returns the kasa binary under test: $KASA_BIN, which the Makefile sets.
func Binary() (string, error) {
	bin := os.Getenv("KASA_BIN")
	if bin == "" {
		return "", errors.New("KASA_BIN is not set: run these tests through make (make integration, make e2e)")
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("KASA_BIN: %w", err)
	}
	return bin, nil
}

// Server is one kasa server process and its data dir.
type Server struct {
	Bin     string
	DataDir string
	// Port is the API server's port; ControllerPort and SchedulerPort are
	// the secure ports of the controller-manager and the scheduler.
	Port, ControllerPort, SchedulerPort int
	// Node runs the server with its node (containerd, kubelet...); the
	// default is the control plane alone (--disable-agent).
	Node bool
	// ExtraArgs are appended to the server's arguments.
	ExtraArgs []string
	// Env is added to the process environment (KASA_* variables of the
	// test's own environment are removed, so tests are hermetic).
	Env []string

	cmd     *exec.Cmd
	exited  chan struct{}
	logFile *os.File
	// Started is when the current process was started.
	Started time.Time
}

// NewServer makes a data dir and picks free ports; it starts nothing.
func NewServer(bin string) (*Server, error) {
	// A short path: kine's unix socket lives in the data dir.
	dir, err := os.MkdirTemp("", "kasa-it-")
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	// The server reads this config file (empty unless a test writes it), so
	// that /etc/kasa/config.yaml on the machine never applies.
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), nil, 0o600); err != nil {
		return nil, err
	}
	return &Server{Bin: bin, DataDir: dir, Port: ports[0], ControllerPort: ports[1], SchedulerPort: ports[2]}, nil
}

// Kubeconfig is where the server writes its admin kubeconfig.
func (s *Server) Kubeconfig() string { return filepath.Join(s.DataDir, "kasa.yaml") }

// ConfigFile is the server's config file (empty unless a test writes it).
func (s *Server) ConfigFile() string { return filepath.Join(s.DataDir, "config.yaml") }

// LogPath is the file that collects the server's output.
func (s *Server) LogPath() string { return filepath.Join(s.DataDir, "server.log") }

// Args are the arguments the server is started with.
func (s *Server) Args() []string {
	args := []string{"server",
		"--data-dir", s.DataDir,
		"--config", s.ConfigFile(),
		"--write-kubeconfig", s.Kubeconfig(),
		"--https-listen-port", strconv.Itoa(s.Port),
		"--kube-controller-manager-arg", "secure-port=" + strconv.Itoa(s.ControllerPort),
		"--kube-scheduler-arg", "secure-port=" + strconv.Itoa(s.SchedulerPort),
	}
	if !s.Node {
		args = append(args, "--disable-agent")
	}
	return append(args, s.ExtraArgs...)
}

// Command returns a kasa command with the harness's hermetic environment.
func (s *Server) Command(args ...string) *exec.Cmd {
	cmd := exec.Command(s.Bin, args...)
	cmd.Env = append(HermeticEnv(), s.Env...)
	return cmd
}

// HermeticEnv is the test process's environment without the KASA_* and
// KUBECONFIG variables that would change what kasa does.
func HermeticEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KASA_") && !strings.HasPrefix(kv, "KUBECONFIG=") {
			env = append(env, kv)
		}
	}
	return env
}

// Start starts the server process; it does not wait for readiness.
func (s *Server) Start() error {
	if s.Running() {
		return errors.New("server already started")
	}
	s.finish() // a process that ended by other means (kasa killall)
	f, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "\n==== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := s.Command(s.Args()...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.Started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	s.cmd, s.logFile, s.exited = cmd, f, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	return nil
}

// Running reports whether the process is alive.
func (s *Server) Running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// PID of the running process.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// ExitCode of the last process, once it has exited.
func (s *Server) ExitCode() int { return s.cmd.ProcessState.ExitCode() }

// WaitReady waits until /readyz answers ok with the admin kubeconfig.
func (s *Server) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !s.Running() {
			return fmt.Errorf("server exited with code %d before it was ready; log:\n%s", s.ExitCode(), s.LogTail(40))
		}
		if ok, _ := s.Readyz(); ok {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("server not ready within %s; log:\n%s", timeout, s.LogTail(40))
}

// Readyz asks /readyz once.
func (s *Server) Readyz() (bool, error) {
	cfg, err := s.RESTConfig()
	if err != nil {
		return false, err
	}
	c, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return false, err
	}
	c.Timeout = time.Second
	resp, err := c.Get(cfg.Host + "/readyz")
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// Stop sends SIGTERM and waits up to timeout; it returns how long the stop
// took. A process still alive then is killed and an error returned.
func (s *Server) Stop(timeout time.Duration) (time.Duration, error) {
	if !s.Running() {
		s.cmd = nil
		return 0, nil
	}
	start := time.Now()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		took := time.Since(start)
		code := s.ExitCode()
		s.finish()
		if code != 0 {
			return took, fmt.Errorf("server exited with code %d after SIGTERM; log:\n%s", code, s.LogTail(30))
		}
		return took, nil
	case <-time.After(timeout):
		s.Kill()
		return timeout, fmt.Errorf("server did not stop within %s of SIGTERM", timeout)
	}
}

// Kill sends SIGKILL to the server's process group and waits for it.
func (s *Server) Kill() {
	if s.Running() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	s.finish()
}

func (s *Server) finish() {
	if s.logFile != nil {
		s.logFile.Close()
		s.logFile = nil
	}
	s.cmd = nil
}

// Close kills the server if it runs and removes its data dir.
func (s *Server) Close() {
	s.Kill()
	_ = os.RemoveAll(s.DataDir)
}

// LogTail returns the last n lines of the server's output.
func (s *Server) LogTail(n int) string {
	b, _ := os.ReadFile(s.LogPath())
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// RESTConfig reads the admin kubeconfig.
func (s *Server) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig())
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 5000, 10000
	return cfg, nil
}

// Client returns an admin clientset.
func (s *Server) Client() (*kubernetes.Clientset, error) {
	cfg, err := s.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// URL of the API server.
func (s *Server) URL() string { return "https://127.0.0.1:" + strconv.Itoa(s.Port) }

// AnonymousGet makes a request with no credentials (and no CA check).
func (s *Server) AnonymousGet(ctx context.Context, path string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the test asks as a stranger would
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1 (and on any
// address, since the API server binds 0.0.0.0).
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Run runs kasa with args and returns its combined output and exit code.
func (s *Server) Run(args ...string) (string, int, error) {
	cmd := s.Command(args...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode(), nil
	}
	if err != nil {
		return string(out), -1, err
	}
	return string(out), 0, nil
}

// Eventually calls f every 250 ms until it returns nil or timeout passes;
// then it returns f's last error.
func Eventually(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
