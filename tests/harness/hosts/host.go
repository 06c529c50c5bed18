package hosts

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	bootTimeout = 2 * time.Minute
	stopTimeout = 60 // seconds systemd gets to shut down before Docker kills it
	copyTimeout = 5 * time.Minute
)

// HostOptions are what a host starts with.
type HostOptions struct {
	// IP is the host's address; empty picks the next free one from .10 up.
	IP string
	// Files are copied in once the host has booted: path in the host ->
	// path on this machine (a file or a folder, kept with its mode,
	// owned by root; missing parent folders are made).
	Files map[string]string
	// Env is set (KEY=VALUE) for commands run with Exec and, through
	// `systemctl set-environment` after every boot, for units started
	// after the boot.
	Env []string
}

// Host is one machine of a Network: a container that boots systemd, with
// its own address, file system and /var/lib volume.
type Host struct {
	// Name is the host name (and the name other hosts resolve through
	// Docker's DNS).
	Name string
	// IP is the host's address on the network.
	IP string
	// Container and Volume are the Docker names of its container and of
	// its /var/lib volume.
	Container, Volume string
	Network           *Network

	addr netip.Addr
	env  []string

	mu     sync.Mutex
	closed bool
}

// String names the host, its address and its container.
func (h *Host) String() string {
	return fmt.Sprintf("%s (%s, container %s)", h.Name, h.IP, h.Container)
}

// StartHost creates a host and starts it, and returns once systemd has
// finished booting (running, or degraded: the failed units are logged) and
// sshd answers on the host's address from this machine. Files are copied
// in after that.
func (n *Network) StartHost(ctx context.Context, name string, opts HostOptions) (*Host, error) {
	if !validName.MatchString(name) || len(name) > 20 {
		return nil, fmt.Errorf("host name %q: use up to 20 lowercase letters, digits and dashes", name)
	}
	for _, kv := range opts.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("env %q: want KEY=VALUE", kv)
		}
	}
	started := time.Now()
	var h *Host
	for try := 1; ; try++ {
		addr, err := n.allocate(name, opts.IP)
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
		container := n.Name + "-" + name
		h = &Host{Name: name, IP: addr.String(), Container: container, Volume: container + "-var-lib",
			Network: n, addr: addr, env: slices.Clone(opts.Env)}
		n.mu.Lock()
		n.hosts[name] = h
		n.mu.Unlock()
		if err := h.create(ctx); err != nil {
			return nil, errors.Join(err, h.Close())
		}
		err = h.start(ctx, 2)
		if err == nil {
			break
		}
		// Docker can hold an address of a subnet that no container has,
		// left from an earlier network with the same subnet; it then
		// refuses every start at that address. A host whose address was
		// not asked for moves on to the next one.
		if !errors.Is(err, errAddressInUse) || opts.IP != "" || try == 3 {
			return nil, errors.Join(err, h.Close())
		}
		if err := h.Close(); err != nil {
			return nil, err
		}
		n.mu.Lock()
		n.refused[addr] = true
		n.mu.Unlock()
		n.logf("host %s: docker holds %s though no host has it; trying the next address", name, addr)
	}
	if err := h.WriteFile(ctx, PodResolvConf, []byte(fmt.Sprintf(
		"# Written by tests/harness/hosts for kasa's --resolv-conf: the gateway, an address of the test machine.\nnameserver %s\n",
		n.Gateway)), 0o644); err != nil {
		return nil, errors.Join(err, h.Close())
	}
	for _, dst := range slices.Sorted(maps.Keys(opts.Files)) {
		if err := h.copyIn(ctx, opts.Files[dst], dst); err != nil {
			return nil, errors.Join(err, h.Close())
		}
	}
	n.logf("host %s: %s up in %s", name, h.IP, time.Since(started).Round(100*time.Millisecond))
	return h, nil
}

func (h *Host) create(ctx context.Context) error {
	labels := []string{"--label", Label + "=1", "--label", NetworkLabel + "=" + h.Network.Name}
	if _, _, err := docker(ctx, nil, append(append([]string{"volume", "create"}, labels...), h.Volume)...); err != nil {
		return err
	}
	args := []string{"container", "create",
		"--name", h.Container,
		"--hostname", h.Name,
		"--network", h.Network.Name,
		"--ip", h.IP,
		"--network-alias", h.Name,
		// What the machine allows instead of --privileged (it lacks
		// CAP_SYS_RESOURCE, which --privileged asks for).
		"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
		"--security-opt", "seccomp=unconfined",
		"--security-opt", "apparmor=unconfined",
		// /proc/sys writable (kubelet, kube-proxy and flannel set
		// settings) and /proc's other masked paths visible.
		"--security-opt", "systempaths=unconfined",
		// The host's own cgroup tree: never the machine's.
		"--cgroupns", "private",
		"--tmpfs", "/run:rw,nosuid,nodev,exec,mode=755",
		"--tmpfs", "/run/lock:rw,nosuid,nodev,noexec",
		"--mount", "type=volume,src=" + h.Volume + ",dst=/var/lib",
		"--device", "/dev/kmsg",
		// systemd halts on SIGRTMIN+3 (SIGTERM asks it to re-execute).
		"--stop-signal", "SIGRTMIN+3",
		"--stop-timeout", fmt.Sprint(stopTimeout),
	}
	args = append(args, labels...)
	for _, kv := range h.env {
		args = append(args, "--env", kv)
	}
	args = append(args, h.Network.Image)
	_, _, err := docker(ctx, nil, args...)
	return err
}

// Start starts a stopped host (Stop) and waits as StartHost does; the host
// keeps its file system, volume and address. The files in /run and
// /run/lock (tmpfs) are gone, as after a reboot.
func (h *Host) Start(ctx context.Context) error {
	return h.start(ctx, 5)
}

// errAddressInUse is Docker's refusal of a start because its address
// manager has the container's address taken.
var errAddressInUse = errors.New("docker has the address taken")

// start starts the container, trying again up to tries times when Docker
// refuses with "Address already in use": Docker 20.10 sometimes does that
// when several containers of a new network start at once, and takes the
// start on a later try.
func (h *Host) start(ctx context.Context, tries int) error {
	for try := 1; ; try++ {
		_, _, err := docker(ctx, nil, "container", "start", h.Container)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "Address already in use") {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		if try == tries {
			return fmt.Errorf("host %s: %w (%s): %w", h.Name, errAddressInUse, h.IP, err)
		}
		h.Network.logf("host %s: docker refused the start (address already in use), trying again", h.Name)
		time.Sleep(time.Duration(try) * time.Second)
	}
	if err := h.waitBooted(ctx); err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	ip, _, err := docker(ctx, nil, "container", "inspect", "--format",
		fmt.Sprintf(`{{with index .NetworkSettings.Networks %q}}{{.IPAddress}}{{end}}`, h.Network.Name), h.Container)
	if err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	if got := strings.TrimSpace(ip); got != h.IP {
		return fmt.Errorf("host %s came up with address %q, not %s", h.Name, got, h.IP)
	}
	return nil
}

// waitBooted waits for systemd to finish booting and for sshd to answer
// on the host's address from this machine; then it sets the host's Env in
// systemd's manager.
func (h *Host) waitBooted(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	var state string
	for {
		// Fails until systemd (after the entrypoint) answers on its bus.
		out, _, _ := h.Exec(ctx, "systemctl", "is-system-running", "--wait")
		state = strings.TrimSpace(out)
		if state == "running" || state == "degraded" {
			break
		}
		if running, err := h.Running(ctx); err == nil && !running {
			logs, _, _ := docker(ctx, nil, "container", "logs", "--tail", "30", h.Container)
			return fmt.Errorf("the container stopped while booting; its output:\n%s", logs)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("systemd did not finish booting within %s (state %q)", bootTimeout, state)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if state == "degraded" {
		failed, _, _ := h.Exec(ctx, "systemctl", "--failed", "--plain", "--no-legend")
		h.Network.logf("host %s: systemd is degraded; failed units:\n%s", h.Name, failed)
	}
	if _, _, err := h.Exec(ctx, "systemctl", "is-active", "--quiet", "ssh.service"); err != nil {
		return fmt.Errorf("sshd is not active: %w", err)
	}
	if err := waitSSH(ctx, net.JoinHostPort(h.IP, "22")); err != nil {
		return err
	}
	if len(h.env) > 0 {
		if _, _, err := h.Exec(ctx, append([]string{"systemctl", "set-environment"}, h.env...)...); err != nil {
			return err
		}
	}
	return nil
}

// waitSSH waits until addr sends an SSH banner.
func waitSSH(ctx context.Context, addr string) error {
	var last error
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4)
			_, err = io.ReadFull(c, buf)
			c.Close()
			if err == nil && string(buf) == "SSH-" {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("banner %q", buf)
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("sshd does not answer on %s from this machine: %w", addr, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Running reports whether the host's container runs.
func (h *Host) Running(ctx context.Context) (bool, error) {
	out, _, err := docker(ctx, nil, "container", "inspect", "--format", "{{.State.Running}}", h.Container)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(out) == "true", nil
}

// Stop shuts the host down (systemd halts, then the container stops; after
// 60 s Docker kills it) and keeps its file system, volume and address.
func (h *Host) Stop(ctx context.Context) error {
	if _, _, err := docker(ctx, nil, "container", "stop", "--time", fmt.Sprint(stopTimeout), h.Container); err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	return nil
}

// Exec runs a command in the host (docker exec, as root, with the host's
// Env) and returns its output; err is set when it cannot run or exits
// non-zero, and then carries the end of its error output.
func (h *Host) Exec(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	return h.exec(ctx, nil, args...)
}

func (h *Host) exec(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	if len(args) == 0 {
		return "", "", errors.New("no command")
	}
	dargs := []string{"container", "exec"}
	if stdin != nil {
		dargs = append(dargs, "--interactive")
	}
	dargs = append(append(dargs, h.Container), args...)
	stdout, stderr, err = docker(ctx, stdin, dargs...)
	if err != nil {
		err = fmt.Errorf("host %s: %w", h.Name, err)
	}
	return stdout, stderr, err
}

// CopyIn copies src (a file or a folder of this machine) to the path dst
// in the running host, with its modes, owned by root; missing parent
// folders of dst are made. It works in every path the host sees (/run and
// the /var/lib volume included).
func (h *Host) CopyIn(src, dst string) error {
	ctx, cancel := context.WithTimeout(context.Background(), copyTimeout)
	defer cancel()
	return h.copyIn(ctx, src, dst)
}

func (h *Host) copyIn(ctx context.Context, src, dst string) error {
	if !path.IsAbs(dst) {
		return fmt.Errorf("copy to %s: want an absolute path", dst)
	}
	if _, err := os.Stat(src); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, src, path.Base(dst))) }()
	defer pr.Close()
	return h.untar(ctx, pr, path.Dir(dst))
}

// WriteFile writes data to the path dst in the running host with mode
// perm, owned by root; missing parent folders are made.
func (h *Host) WriteFile(ctx context.Context, dst string, data []byte, perm fs.FileMode) error {
	if !path.IsAbs(dst) {
		return fmt.Errorf("write %s: want an absolute path", dst)
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path.Base(dst), Mode: int64(perm.Perm()),
			Size: int64(len(data)), ModTime: time.Now(), Format: tar.FormatPAX})
		if err == nil {
			_, err = tw.Write(data)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	return h.untar(ctx, pr, path.Dir(dst))
}

// untar unpacks a tar stream into dir in the host, through the host's own
// mounts (docker cp would write under /run's tmpfs).
func (h *Host) untar(ctx context.Context, r io.Reader, dir string) error {
	_, _, err := h.exec(ctx, r, "sh", "-c", `mkdir -p "$1" && exec tar -x -f - -C "$1"`, "untar", dir)
	return err
}

// writeTar writes src (a file, link or folder tree) as name, owned by root.
func writeTar(w io.Writer, src, name string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = path.Join(name, filepath.ToSlash(rel))
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "root", "root"
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// Journal returns the last lines of the host's journal, of one unit when
// unit is not empty: for a failing test's log.
func (h *Host) Journal(ctx context.Context, unit string, lines int) string {
	args := []string{"journalctl", "--no-pager", "--lines", fmt.Sprint(lines)}
	if unit != "" {
		args = append(args, "--unit", unit)
	}
	out, stderr, err := h.Exec(ctx, args...)
	if err != nil {
		return fmt.Sprintf("(journal of %s: %v) %s", h.Name, err, stderr)
	}
	return out
}

// Close removes the host's container and its volume; nothing of the host
// remains. It may be called again.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	if _, _, err := docker(ctx, nil, "container", "rm", "--force", "--volumes", h.Container); err != nil && !strings.Contains(err.Error(), "No such container") {
		errs = append(errs, err)
	}
	if _, _, err := docker(ctx, nil, "volume", "rm", "--force", h.Volume); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		h.closed = true
		h.Network.mu.Lock()
		delete(h.Network.hosts, h.Name)
		h.Network.mu.Unlock()
	}
	return errors.Join(errs...)
}
