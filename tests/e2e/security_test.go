//go:build e2e

package e2e

import (
	"cmp"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kasa-io/kasa/tests/harness"
)

// TestE2ESecurity covers a node's part of kasa's security defaults:
//
//   - with --protect-kernel-defaults and a kernel setting the kubelet wants
//     otherwise, the server refuses to start, naming the setting, both
//     values and the fix, and changes no setting; with the settings right,
//     the node runs with the kubelet protecting them;
//   - every TCP port that the server and its children (containerd) listen
//     on, the kubelet's included, serves TLS 1.2 with modern suites and
//     1.3 and refuses TLS 1.0, 1.1 and weak suites, or is a known plain
//     health or loopback port.
func TestE2ESecurity(t *testing.T) {
	requireRoot(t)
	const key = "kernel/keys/root_maxkeys" // harmless to change, and the kubelet's
	read := func(k string) string {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	write := func(k, v string) {
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wanted := map[string]string{
		"vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10",
		"kernel/panic_on_oops": "1", key: "1000000", "kernel/keys/root_maxbytes": "25000000",
	}
	before := map[string]string{}
	for k := range wanted {
		before[k] = read(k)
	}
	// Registered first, so it runs after the nodes' cleanup (kasa killall).
	t.Cleanup(func() {
		for k, v := range before {
			_ = os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644)
		}
	})

	t.Run("a kernel setting that differs stops the start", func(t *testing.T) {
		for k, v := range wanted {
			write(k, v)
		}
		write(key, "999999")
		bin, err := harness.Binary()
		if err != nil {
			t.Fatal(err)
		}
		s, err := harness.NewServer(bin)
		if err != nil {
			t.Fatal(err)
		}
		s.Node = true
		s.ExtraArgs = []string{"--protect-kernel-defaults"}
		t.Cleanup(func() {
			s.Kill()
			_, _, _ = s.Run("killall", "--data-dir", s.DataDir)
			os.RemoveAll(s.DataDir)
		})
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for s.Running() && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if s.Running() {
			t.Fatalf("the server still runs; log:\n%s", s.LogTail(30))
		}
		log := s.LogTail(20)
		if s.ExitCode() == 0 || !strings.Contains(log, "--protect-kernel-defaults: the kernel's settings differ from what the kubelet needs") ||
			!strings.Contains(log, "kernel.keys.root_maxkeys is 999999, want 1000000") ||
			!strings.Contains(log, "sysctl -w kernel.keys.root_maxkeys=1000000") {
			t.Fatalf("exit code %d; log:\n%s", s.ExitCode(), log)
		}
		t.Logf("refused: %s", lastLine(log))
		if got := read(key); got != "999999" {
			t.Errorf("%s is %s after the refused start, want 999999 (left alone)", key, got)
		}
	})

	for k, v := range wanted {
		write(k, v)
	}
	s, _ := readyNode(t, "--protect-kernel-defaults")
	cfg, err := os.ReadFile(filepath.Join(s.DataDir, "agent", "etc", "kubelet.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "protectKernelDefaults: true") {
		t.Errorf("kubelet.yaml without protectKernelDefaults:\n%s", cfg)
	}

	t.Run("every port serves TLS 1.2+ with modern suites, or is a known plain one", func(t *testing.T) {
		// kube-proxy, the last part to start, opens its health port.
		var addrs []string
		waitFor(t, time.Minute, "kube-proxy's health port", func() error {
			var err error
			if addrs, err = harness.ListeningTCP(s.PID()); err != nil {
				return err
			}
			if !slices.ContainsFunc(addrs, func(a string) bool { return strings.HasSuffix(a, ":10256") }) {
				return fmt.Errorf("listening on %v", addrs)
			}
			return nil
		})
		// Plain HTTP by design: the kubelet's /healthz and kube-proxy's
		// /metrics on loopback, kube-proxy's /healthz for load balancers;
		// containerd's streaming server is on loopback, behind the kubelet.
		plain := map[string]string{"10248": "kubelet healthz", "10249": "kube-proxy metrics", "10256": "kube-proxy healthz"}
		tlsPorts := map[string]bool{}
		for _, a := range addrs {
			host, port, _ := net.SplitHostPort(a)
			dial := a
			if net.ParseIP(host).IsUnspecified() {
				dial = net.JoinHostPort("127.0.0.1", port)
			}
			if !harness.SpeaksTLS(dial) {
				what, known := plain[port]
				if !known && !net.ParseIP(host).IsLoopback() {
					t.Errorf("%s: no TLS, and not a known plain port", a)
				} else {
					t.Logf("%s: plain (%s)", a, cmp.Or(what, "loopback"))
				}
				continue
			}
			tlsPorts[port] = true
			if err := harness.CheckTLSPolicy(dial); err != nil {
				t.Errorf("%s: %v", a, err)
			} else {
				t.Logf("%s: TLS 1.2 (modern suites) and 1.3 only", a)
			}
		}
		for _, p := range []int{s.Port, s.ControllerPort, s.SchedulerPort, 10250} {
			if !tlsPorts[strconv.Itoa(p)] {
				t.Errorf("port %d was not among the TLS ports found: %v", p, addrs)
			}
		}
	})
}

// lastLine is the last line of s.
func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}
