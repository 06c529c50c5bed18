//go:build integration

package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kasa-io/kasa/tests/harness"
)

// snapshot fingerprints every file of a data dir (but the lock, the log and
// the config file the test itself writes),
// so a test can tell that a failed start changed nothing.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "server.log" || rel == "config.yaml" || rel == "server/kasa.lock" || d.Type()&fs.ModeSocket != 0 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		sum := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(sum[:]) + " " + info.Mode().String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, before, after map[string]string) {
	t.Helper()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed", k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s appeared", k)
		}
	}
}

// TestIntegrationBadInput: each mistake gets one clear line naming the
// culprit, a non-zero exit, and leaves the data dir as it was.
func TestIntegrationBadInput(t *testing.T) {
	// A data dir that holds a real cluster, stopped.
	s := startServer(t)
	if _, err := s.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s.DataDir)
	if len(before) < 10 {
		t.Fatalf("the data dir holds only %d files", len(before))
	}

	blocker, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	busyPort := strconv.Itoa(blocker.Addr().(*net.TCPAddr).Port)

	fileInTheWay := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(fileInTheWay, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		config string   // config file content, when set
		args   []string // replaces or extends the harness's arguments
		env    []string // added to the environment
		want   []string // the one line must contain these
	}{
		{name: "unknown flag", args: []string{"--bogus-flag"}, want: []string{"unknown flag: --bogus-flag", "kasa server --help"}},
		{name: "unknown config key", config: "https-listen-port: 6443\nno-such-key: 1\n", want: []string{"config.yaml", `unknown key "no-such-key"`}},
		{name: "malformed YAML", config: "tls-san: [a, b\n", want: []string{"config.yaml", "malformed YAML"}},
		{name: "invalid CIDR", args: []string{"--cluster-cidr", "10.42.0.0/99"}, want: []string{`invalid --cluster-cidr "10.42.0.0/99"`}},
		{name: "invalid CIDR from the environment", env: []string{"KASA_SERVICE_CIDR=10.43.0.0/40"}, want: []string{"--service-cidr"}},
		{name: "port in use", args: []string{"--https-listen-port", busyPort}, want: []string{"port in use", ":" + busyPort, "--https-listen-port"}},
		{name: "unwritable data dir", args: []string{"--data-dir", filepath.Join(fileInTheWay, "data")}, want: []string{"data dir", "not a directory", "--data-dir"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.config != "" {
				if err := os.WriteFile(s.ConfigFile(), []byte(tt.config), 0o600); err != nil {
					t.Fatal(err)
				}
				defer func() { _ = os.WriteFile(s.ConfigFile(), nil, 0o600) }()
			}
			args := append(s.Args(), tt.args...)
			cmd := s.Command(args...)
			cmd.Env = append(cmd.Env, tt.env...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("kasa %v succeeded:\n%s", args, out)
			}
			if cmd.ProcessState.ExitCode() == 0 {
				t.Fatal("exit code 0")
			}
			msg := strings.TrimSpace(string(out))
			if strings.Count(msg, "\n") != 0 {
				t.Errorf("want one line, got:\n%s", msg)
			}
			if !strings.HasPrefix(msg, "kasa: ") {
				t.Errorf("want a line starting with 'kasa: ', got %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			sameSnapshot(t, before, snapshot(t, s.DataDir))
		})
	}
}

// TestIntegrationDataDirInUse: a second server on a data dir that a running
// server holds fails at once and harms neither the first server nor the data.
func TestIntegrationDataDirInUse(t *testing.T) {
	s := startServer(t)
	before := snapshot(t, s.DataDir)
	ports, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	second := *s
	second.Port, second.ControllerPort, second.SchedulerPort = ports[0], ports[1], ports[2]
	start := time.Now()
	out, code, err := second.Run(second.Args()...)
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 {
		t.Fatalf("second server started:\n%s", out)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the refusal took %s; want at once", took)
	}
	msg := strings.TrimSpace(out)
	for _, w := range []string{"data dir in use", "pid " + strconv.Itoa(s.PID()), "--data-dir"} {
		if !strings.Contains(msg, w) {
			t.Errorf("message %q lacks %q", msg, w)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("want one line, got:\n%s", msg)
	}
	if ok, err := s.Readyz(); !ok {
		t.Fatalf("the first server is no longer ready: %v", err)
	}
	after := snapshot(t, s.DataDir)
	// The running server writes to its database and its audit log; compare
	// everything else.
	for _, m := range []map[string]string{before, after} {
		for k := range m {
			if strings.HasPrefix(k, "server/db/") || strings.HasPrefix(k, "server/logs/") {
				delete(m, k)
			}
		}
	}
	sameSnapshot(t, before, after)
}
