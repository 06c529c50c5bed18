//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kasa-io/kasa/tests/harness"
	"github.com/kasa-io/kasa/tests/harness/hosts"
)

// TestE2EInstall: install/install.sh on two hosts: a server with the
// binary given (INSTALL_KASA_BINARY, as on a machine without internet),
// then an agent through KASA_URL and KASA_TOKEN as `curl | sh -`,
// downloading the binary and checking its sha256; re-running
// changes nothing, new flags upgrade with a restart, bad settings are
// refused without touching what runs; the uninstall scripts leave each
// host without a trace of kasa.
func TestE2EInstall(t *testing.T) {
	script, err := filepath.Abs("../../install/install.sh")
	if err != nil {
		t.Fatal(err)
	}
	cl := newClusterWith(t, hosts.Prefix+"e2e-install", "172.31.245.0/24", func(bin, image string) map[string]string {
		return map[string]string{"/root/kasa": bin, "/root/install.sh": script, inHostDataDir + "/agent/images/web.tar": image}
	}, "ag")
	ctx := context.Background()
	srv, ag := cl.srv, cl.agents["ag"]
	const serverArgs = "server --data-dir " + inHostDataDir + " --resolv-conf " + hosts.PodResolvConf + " --disable traefik,metrics-server"
	install := func(h *hosts.Host, env ...string) (string, error) {
		args := append([]string{"env", "INSTALL_KASA_BINARY=/root/kasa"}, env...)
		out, stderr, err := h.Exec(ctx, append(args, "sh", "/root/install.sh")...)
		return out + stderr, err
	}
	mainPID := func(h *hosts.Host, unit string) string {
		return strings.TrimSpace(mustExec(t, h, "systemctl", "show", "-p", "MainPID", "--value", unit))
	}

	// A server.
	out, err := install(srv, "INSTALL_KASA_EXEC="+serverArgs, "KASA_TOKEN=e2e-install-secret")
	if err != nil || !strings.Contains(out, "starting kasa") {
		t.Fatalf("install the server: %v\n%s", err, out)
	}
	cl.c = cl.client()
	waitFor(t, 3*time.Minute, "node srv Ready", func() error { return nodesReady(ctx, cl.c, "srv") })
	unit := mustExec(t, srv, "cat", "/etc/systemd/system/kasa.service")
	for _, want := range []string{"KillMode=process", "Delegate=yes", "Restart=always", "ExecStart=/usr/local/bin/kasa server '--data-dir'"} {
		if !strings.Contains(unit, want) {
			t.Errorf("kasa.service lacks %q:\n%s", want, unit)
		}
	}
	if mode := strings.TrimSpace(mustExec(t, srv, "stat", "-c", "%a", "/etc/systemd/system/kasa.service.env")); mode != "600" {
		t.Errorf("the environment file has mode %s", mode)
	}
	if env := mustExec(t, srv, "cat", "/etc/systemd/system/kasa.service.env"); !strings.Contains(env, `KASA_TOKEN="e2e-install-secret"`) {
		t.Errorf("the environment file lacks the token:\n%s", env)
	}
	if ps := mustExec(t, srv, "ps", "-eo", "args"); strings.Contains(ps, "e2e-install-secret") {
		t.Error("the token shows in the process list")
	}
	for _, link := range []string{"kubectl", "crictl", "ctr"} {
		if target := strings.TrimSpace(mustExec(t, srv, "readlink", "/usr/local/bin/"+link)); target != "/usr/local/bin/kasa" {
			t.Errorf("%s links to %q", link, target)
		}
	}
	if out := mustExec(t, srv, "kubectl", "get", "nodes", "--no-headers"); !strings.HasPrefix(out, "srv ") {
		t.Errorf("kubectl through the link: %q", out)
	}

	// The same again: nothing changes, the service keeps running.
	pid := mainPID(srv, "kasa")
	out, err = install(srv, "INSTALL_KASA_EXEC="+serverArgs, "KASA_TOKEN=e2e-install-secret")
	if err != nil || !strings.Contains(out, "no change") {
		t.Errorf("a second run: %v\n%s", err, out)
	}
	if p := mainPID(srv, "kasa"); p != pid {
		t.Errorf("a second run restarted kasa (pid %s -> %s)", pid, p)
	}
	// Bad settings are refused, and what runs stays.
	for _, bad := range []struct{ env []string }{
		{[]string{"INSTALL_KASA_EXEC=frobnicate"}},
		{[]string{"INSTALL_KASA_EXEC=agent"}},
		{[]string{"INSTALL_KASA_EXEC=" + serverArgs, "INSTALL_KASA_SHA256=0000"}},
	} {
		out, err := install(srv, bad.env...)
		if err == nil || !strings.Contains(out, "[ERROR]") {
			t.Errorf("%v: %v\n%s", bad.env, err, out)
		}
	}
	// A machine the installer cannot serve: another architecture or
	// kernel (as uname says, from a PATH that answers so), no systemctl,
	// or a user who is not root; and a download with nowhere to go.
	mustExec(t, srv, "sh", "-c", `for f in riscv64:-m Darwin:-s; do d=/tmp/uname-${f%%:*}; mkdir -p $d; `+
		`printf '#!/bin/sh\n[ "$1" = %s ] && { echo %s; exit; }\nexec /usr/bin/uname "$@"\n' ${f#*:} ${f%%:*} > $d/uname; chmod +x $d/uname; done; `+
		`mkdir -p /tmp/no-systemctl; ln -sf /usr/bin/uname /usr/bin/id /tmp/no-systemctl/; `+
		`cp /root/install.sh /tmp/install.sh; chmod 0644 /tmp/install.sh`)
	for _, bad := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"env", "PATH=/tmp/uname-riscv64:/usr/sbin:/usr/bin:/sbin:/bin", "sh", "/tmp/install.sh"}, "unsupported architecture riscv64"},
		{[]string{"env", "PATH=/tmp/uname-Darwin:/usr/sbin:/usr/bin:/sbin:/bin", "sh", "/tmp/install.sh"}, "kasa runs on Linux; this is Darwin"},
		{[]string{"env", "PATH=/tmp/no-systemctl", "/bin/sh", "/tmp/install.sh"}, "needs systemd as the init system"},
		{[]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "/tmp/install.sh"}, "run the installer as root"},
		// No release is published yet: no default download, no version.
		{[]string{"sh", "/tmp/install.sh"}, "no release of kasa is published to download yet"},
		{[]string{"env", "INSTALL_KASA_VERSION=v1.0.0", "sh", "/tmp/install.sh"}, "INSTALL_KASA_VERSION: no release of kasa is published yet"},
	} {
		out, stderr, err := srv.Exec(ctx, bad.cmd...)
		if err == nil || !strings.Contains(out+stderr, bad.want) {
			t.Errorf("%v: %v, want %q in\n%s%s", bad.cmd, err, bad.want, out, stderr)
		}
	}
	if p := mainPID(srv, "kasa"); p != pid {
		t.Errorf("a refused run restarted kasa (pid %s -> %s)", pid, p)
	}
	// New flags: an upgrade, with a restart.
	out, err = install(srv, "INSTALL_KASA_EXEC="+serverArgs+" --node-label tier=e2e", "KASA_TOKEN=e2e-install-secret")
	if err != nil || !strings.Contains(out, "starting kasa") {
		t.Fatalf("new flags: %v\n%s", err, out)
	}
	if unit := mustExec(t, srv, "cat", "/etc/systemd/system/kasa.service"); !strings.Contains(unit, "'--node-label' 'tier=e2e'") {
		t.Errorf("kasa.service after new flags:\n%s", unit)
	}
	if p := mainPID(srv, "kasa"); p == pid || p == "0" {
		t.Errorf("new flags did not restart kasa (pid %s -> %s)", pid, p)
	}
	waitFor(t, 2*time.Minute, "node srv Ready after the upgrade", func() error { return nodesReady(ctx, cl.c, "srv") })

	// An agent, through KASA_URL and KASA_TOKEN, installed as
	// `curl -sfL URL | sh -` from a web server on this machine, which
	// also serves the binary and its sha256.
	web := serveInstall(t, cl.nw.Gateway.String(), script)
	tok := strings.TrimSpace(mustExec(t, srv, "cat", inHostDataDir+"/server/token"))

	// First an agent in another folder, without links, enabled but not
	// started; its own uninstall script takes it away again.
	agentExec := "INSTALL_KASA_EXEC=--data-dir " + inHostDataDir + " --resolv-conf " + hosts.PodResolvConf
	out, err = install(ag, agentExec, "KASA_URL=https://srv:6443", "KASA_TOKEN="+tok,
		"INSTALL_KASA_BIN_DIR=/opt/kasa/bin", "INSTALL_KASA_SKIP_START=true", "INSTALL_KASA_SYMLINK=skip")
	if err != nil || !strings.Contains(out, "not started") {
		t.Errorf("install with INSTALL_KASA_BIN_DIR, _SKIP_START and _SYMLINK: %v\n%s", err, out)
	}
	if unit := mustExec(t, ag, "cat", "/etc/systemd/system/kasa-agent.service"); !strings.Contains(unit, "ExecStart=/opt/kasa/bin/kasa agent ") {
		t.Errorf("kasa-agent.service with INSTALL_KASA_BIN_DIR:\n%s", unit)
	}
	if files := mustExec(t, ag, "ls", "/opt/kasa/bin"); files != "kasa\nkasa-agent-uninstall.sh\nkasa-killall.sh\n" {
		t.Errorf("/opt/kasa/bin holds:\n%s", files)
	}
	if out, _, _ := ag.Exec(ctx, "systemctl", "is-enabled", "kasa-agent"); strings.TrimSpace(out) != "enabled" {
		t.Errorf("kasa-agent is %q, not enabled", out)
	}
	if out, _, _ := ag.Exec(ctx, "systemctl", "is-active", "kasa-agent"); strings.TrimSpace(out) != "inactive" {
		t.Errorf("kasa-agent is %q, not inactive", out)
	}
	if out, stderr, err := ag.Exec(ctx, "/opt/kasa/bin/kasa-agent-uninstall.sh"); err != nil {
		t.Errorf("kasa-agent-uninstall.sh in /opt/kasa/bin: %v\n%s%s", err, out, stderr)
	}
	if files := mustExec(t, ag, "sh", "-c", "ls -A /opt/kasa/bin 2>/dev/null; ls /etc/systemd/system | grep '^kasa-agent' || true"); files != "" {
		t.Errorf("left after the uninstall script:\n%s", files)
	}
	checkHostClean(t, ag)

	curlInstall := func(binURL string) (string, error) {
		cmd := fmt.Sprintf("curl -sfL %s/install.sh | KASA_URL=https://srv:6443 KASA_TOKEN=%s INSTALL_KASA_DOWNLOAD_URL=%s INSTALL_KASA_EXEC='--data-dir %s --resolv-conf %s' sh -",
			web, tok, binURL, inHostDataDir, hosts.PodResolvConf)
		out, stderr, err := ag.Exec(ctx, "sh", "-c", cmd)
		return out + stderr, err
	}
	out, err = curlInstall(web + "/tampered/kasa")
	if err == nil || !strings.Contains(out, "refusing to install it") {
		t.Errorf("a binary that does not match its sha256: %v\n%s", err, out)
	}
	if _, _, err := ag.Exec(ctx, "test", "-e", "/usr/local/bin/kasa"); err == nil {
		t.Error("the tampered binary was installed")
	}
	out, err = curlInstall(web + "/kasa")
	if err != nil || !strings.Contains(out, "starting kasa-agent") || !strings.Contains(out, "downloading") {
		t.Fatalf("install the agent: %v\n%s", err, out)
	}
	waitFor(t, 3*time.Minute, "nodes srv and ag Ready", func() error { return nodesReady(ctx, cl.c, "ag", "srv") })
	if unit := mustExec(t, ag, "cat", "/etc/systemd/system/kasa-agent.service"); !strings.Contains(unit, "ExecStart=/usr/local/bin/kasa agent ") {
		t.Errorf("kasa-agent.service:\n%s", unit)
	}

	// Uninstall, the agent first: each host is left without kasa.
	for _, u := range []struct {
		h      *hosts.Host
		script string
	}{{ag, "kasa-agent-uninstall.sh"}, {srv, "kasa-uninstall.sh"}} {
		if out, stderr, err := u.h.Exec(ctx, "/usr/local/bin/"+u.script); err != nil {
			t.Errorf("%s in %s: %v\n%s%s", u.script, u.h.Name, err, out, stderr)
		}
		checkHostClean(t, u.h)
	}
}

// checkHostClean fails for anything of kasa's left in host h.
func checkHostClean(t *testing.T, h *hosts.Host) {
	t.Helper()
	ctx := context.Background()
	for _, p := range []string{"/usr/local/bin/kasa", "/usr/local/bin/kubectl", "/usr/local/bin/crictl", "/usr/local/bin/ctr",
		"/usr/local/bin/kasa-killall.sh", "/usr/local/bin/kasa-uninstall.sh", "/usr/local/bin/kasa-agent-uninstall.sh",
		"/etc/systemd/system/kasa.service", "/etc/systemd/system/kasa.service.env",
		"/etc/systemd/system/kasa-agent.service", "/etc/systemd/system/kasa-agent.service.env",
		inHostDataDir, "/etc/kasa", "/run/kasa", "/var/lib/kubelet", "/var/log/pods", "/var/log/containers"} {
		if _, _, err := h.Exec(ctx, "test", "-e", p); err == nil {
			t.Errorf("host %s: %s is still there", h.Name, p)
		}
	}
	if out, _, _ := h.Exec(ctx, "pgrep", "-a", "kasa|containerd|pause"); strings.TrimSpace(out) != "" {
		t.Errorf("host %s: processes left:\n%s", h.Name, out)
	}
	if out := mustExec(t, h, "cat", "/proc/mounts"); strings.Contains(out, inHostDataDir) || strings.Contains(out, "/run/kasa") {
		t.Errorf("host %s: mounts left:\n%s", h.Name, lineWith(out, "kasa"))
	}
	links := mustExec(t, h, "ip", "-br", "link")
	for _, name := range []string{"cni0", "flannel.1", "veth"} {
		if strings.Contains(links, name) {
			t.Errorf("host %s: interface %s left:\n%s", h.Name, name, links)
		}
	}
	rules := mustExec(t, h, "iptables-save")
	for _, chain := range []string{"KUBE-", "FLANNEL", "CNI-"} {
		if strings.Contains(rules, chain) {
			t.Errorf("host %s: iptables still has %s: %s", h.Name, chain, lineWith(rules, chain))
		}
	}
	if out := mustExec(t, h, "systemctl", "list-units", "--all", "--no-legend", "kasa.service", "kasa-agent.service"); strings.TrimSpace(out) != "" {
		t.Errorf("host %s: units left:\n%s", h.Name, out)
	}
}

// serveInstall serves, on addr (an address of this machine), the
// installer at /install.sh, the kasa binary at /kasa with its sha256 at
// /kasa.sha256, and the same binary at /tampered/kasa with a sha256 that
// does not match. It returns the base URL.
func serveInstall(t *testing.T, addr, script string) string {
	t.Helper()
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sum := hex.EncodeToString(h.Sum(nil))
	mux := http.NewServeMux()
	mux.HandleFunc("/install.sh", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, script) })
	mux.HandleFunc("/kasa", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, bin) })
	mux.HandleFunc("/tampered/kasa", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, bin) })
	mux.HandleFunc("/kasa.sha256", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s  kasa\n", sum) })
	mux.HandleFunc("/tampered/kasa.sha256", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s  kasa\n", strings.Repeat("0", 64))
	})
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}
