package server

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestLocalAddr: this node's clients reach the API server on its bind
// address, or on the loopback address of the same family when it listens
// on every address, at --https-listen-port.
func TestLocalAddr(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "127.0.0.1:6443"},
		{[]string{"--bind-address", "0.0.0.0", "--https-listen-port", "7443"}, "127.0.0.1:7443"},
		{[]string{"--bind-address", "::"}, "[::1]:6443"},
		{[]string{"--bind-address", "192.0.2.20"}, "192.0.2.20:6443"},
		{[]string{"--bind-address", "2001:db8::20", "--https-listen-port", "443"}, "[2001:db8::20]:443"},
		{[]string{"--bind-address", "::ffff:192.0.2.20"}, "192.0.2.20:6443"},
	} {
		if got := localAddr(serverConfig(t, tt.args...)).String(); got != tt.want {
			t.Errorf("%v: %s, want %s", tt.args, got, tt.want)
		}
	}
}

// TestCheckPorts: a port the control plane or its node would listen on
// that is taken stops the start with ErrPortInUse, naming the address and
// the flag that moves the port; free ports pass.
func TestCheckPorts(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	free := func() string {
		t.Helper()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	}

	for _, tt := range []struct {
		name string
		args []string
		// flag is the one the error names; empty: the ports are free.
		flag string
		addr string
	}{
		{"API server", []string{"--https-listen-port", port}, "--https-listen-port", "127.0.0.1:" + port},
		{"controller manager", []string{"--kube-controller-manager-arg", "secure-port=" + port}, "--kube-controller-manager-arg secure-port=N", "127.0.0.1:" + port},
		{"scheduler", []string{"--kube-scheduler-arg", "--secure-port=" + port}, "--kube-scheduler-arg secure-port=N", "127.0.0.1:" + port},
		{"kubelet", []string{"--kubelet-arg", "port=" + port}, "--kubelet-arg port=N", ":" + port},
		{"kubelet, flag with dashes", []string{"--kubelet-arg", "--port=" + port}, "--kubelet-arg port=N", ":" + port},
		{"kubelet without a node", []string{"--kubelet-arg", "port=" + port, "--disable-agent"}, "", ""},
		{"free", nil, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Every port free but the one under test, so that the
			// machine's own services (a kasa running here) do not matter.
			args := []string{"--bind-address", "127.0.0.1", "--https-listen-port", free(),
				"--kube-controller-manager-arg", "secure-port=" + free(), "--kube-scheduler-arg", "secure-port=" + free(),
				"--kubelet-arg", "port=" + free()}
			cfg := serverConfig(t, append(args, tt.args...)...)
			p := NewPaths(t.TempDir())
			err := checkPorts(cfg, controllerManagerArgs(cfg, p), schedulerArgs(cfg, p))
			if tt.flag == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrPortInUse) || !errors.Is(err, syscall.EADDRINUSE) {
				t.Fatalf("%v, want ErrPortInUse (EADDRINUSE)", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "cannot listen on "+tt.addr+":") || !strings.HasSuffix(msg, "pick another port with "+tt.flag) {
				t.Errorf("%q: want the address %s and the flag %s", msg, tt.addr, tt.flag)
			}
		})
	}
}
