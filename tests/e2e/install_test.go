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
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kasa-io/kasa/pkg/token"
	"github.com/kasa-io/kasa/tests/harness"
	"github.com/kasa-io/kasa/tests/harness/hosts"
)

// TestE2EInstall: install/install.sh on two hosts: a server with the
// binary given (INSTALL_KASA_BINARY, as on a machine without internet),
// then an agent through KASA_URL and KASA_TOKEN as `curl | sh -`,
// downloading the binary and checking its sha256; re-running
// changes nothing, new flags upgrade with a restart, bad settings are
// refused without touching what runs; the uninstall scripts leave each
// host without a trace of kasa. Tokens given as flags (INSTALL_KASA_EXEC,
// with quotes, %, $ and backslashes in them) reach kasa through the 0600
// environment file only: no process's arguments and no other file under
// /etc/systemd/system show them; a flag value with spaces, % and $
// reaches kasa exactly.
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
	// The server's secret, given as a flag: what a careless quoting would
	// expand or cut, then a marker that no encoding changes.
	secret := `e2e%h$HOME${X}$$"'\` + "installsecret42"
	serverArgs := "server --data-dir " + inHostDataDir + " --resolv-conf " + hosts.PodResolvConf + " --disable traefik,metrics-server" +
		" --default-local-storage-path " + shQuote(trickyPath) + " --token " + shQuote(secret)
	install := func(h *hosts.Host, env ...string) (string, error) {
		args := append([]string{"env", "INSTALL_KASA_BINARY=/root/kasa"}, env...)
		out, stderr, err := h.Exec(ctx, append(args, "sh", "/root/install.sh")...)
		return out + stderr, err
	}
	mainPID := func(h *hosts.Host, unit string) string {
		return strings.TrimSpace(mustExec(t, h, "systemctl", "show", "-p", "MainPID", "--value", unit))
	}

	// A server.
	out, err := install(srv, "INSTALL_KASA_EXEC="+serverArgs)
	if err != nil || !strings.Contains(out, "starting kasa") || strings.Contains(out, "installsecret42") {
		t.Fatalf("install the server: %v\n%s", err, out)
	}
	cl.c = cl.client()
	waitFor(t, 3*time.Minute, "node srv Ready", func() error { return nodesReady(ctx, cl.c, "srv") })
	unit := mustExec(t, srv, "cat", "/etc/systemd/system/kasa.service")
	for _, want := range []string{"KillMode=process", "Delegate=yes", "Restart=always", "ExecStart=/usr/local/bin/kasa server --data-dir " + inHostDataDir + " "} {
		if !strings.Contains(unit, want) {
			t.Errorf("kasa.service lacks %q:\n%s", want, unit)
		}
	}
	// The token went to the environment file and reached kasa exactly;
	// the odd path too, through ExecStart.
	checkNoSecret(t, srv, "/etc/systemd/system/kasa.service.env", "installsecret42")
	if tok, err := token.Parse(mustExec(t, srv, "cat", inHostDataDir+"/server/token")); err != nil || tok.Secret != secret {
		t.Errorf("the server's token is not the one given (%v)", err)
	}
	checkArgs(t, srv, "kasa", "--default-local-storage-path", trickyPath)
	if _, _, err := srv.Exec(ctx, "test", "-d", trickyPath); err != nil {
		t.Errorf("kasa made no %q: %v", trickyPath, err)
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
	out, err = install(srv, "INSTALL_KASA_EXEC="+serverArgs)
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
		{[]string{"INSTALL_KASA_EXEC=" + serverArgs + " --agent-token"}},
		{[]string{"INSTALL_KASA_EXEC=" + serverArgs + " --node-name 'srv"}},
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
		// No release host is built in: no default download, and a
		// version needs the address of the releases.
		{[]string{"sh", "/tmp/install.sh"}, "nothing to download: give INSTALL_KASA_RELEASE_URL"},
		{[]string{"env", "INSTALL_KASA_VERSION=v1.0.0", "sh", "/tmp/install.sh"}, "INSTALL_KASA_VERSION needs INSTALL_KASA_RELEASE_URL"},
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
	out, err = install(srv, "INSTALL_KASA_EXEC="+serverArgs+" --node-label tier=e2e")
	if err != nil || !strings.Contains(out, "starting kasa") {
		t.Fatalf("new flags: %v\n%s", err, out)
	}
	if unit := mustExec(t, srv, "cat", "/etc/systemd/system/kasa.service"); !strings.Contains(unit, " --node-label tier=e2e\n") {
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

	// The agent from a release as make release writes it (the Makefile's
	// e2e target makes one of this build in $KASA_TEST_DIST), served as
	// dist/ is: only the address and the version are given.
	curlInstall := func(env string) (string, error) {
		// The token as a flag, in sh quotes inside sh quotes.
		cmd := fmt.Sprintf("curl -sfL %s/install.sh | KASA_URL=https://srv:6443 %s INSTALL_KASA_EXEC=%s sh -",
			web, env, shQuote("--data-dir "+inHostDataDir+" --resolv-conf "+hosts.PodResolvConf+" -t "+shQuote(tok)))
		out, stderr, err := ag.Exec(ctx, "sh", "-c", cmd)
		return out + stderr, err
	}
	version := harness.TestDistVersion(t)
	for _, bad := range []struct{ env, want string }{
		// A binary that does not match its sha256; then a release
		// artifact changed after its sha256sum file was written.
		{"INSTALL_KASA_DOWNLOAD_URL=" + web + "/tampered/kasa", "refusing to install it"},
		{"INSTALL_KASA_RELEASE_URL=" + web + "/tampered-releases INSTALL_KASA_VERSION=" + version, "refusing to install it"},
		{"INSTALL_KASA_RELEASE_URL=" + web + "/releases INSTALL_KASA_VERSION=v9.9.9", "is there a release v9.9.9 for " + runtime.GOARCH},
		{"INSTALL_KASA_RELEASE_URL=" + web + "/releases INSTALL_KASA_VERSION=v1/../../etc", "letters, digits and . + _ - only"},
	} {
		out, err = curlInstall(bad.env)
		if err == nil || !strings.Contains(out, bad.want) {
			t.Errorf("%s: %v, want %q in\n%s", bad.env, err, bad.want, out)
		}
		if _, _, err := ag.Exec(ctx, "test", "-e", "/usr/local/bin/kasa"); err == nil {
			t.Fatalf("%s: a binary was installed", bad.env)
		}
	}
	// The newest release (BASE/latest), for this host's architecture.
	out, err = curlInstall("INSTALL_KASA_RELEASE_URL=" + web + "/releases")
	if err != nil || !strings.Contains(out, "starting kasa-agent") || !strings.Contains(out, "release "+version+" for "+runtime.GOARCH) {
		t.Fatalf("install the agent from the release: %v\n%s", err, out)
	}
	waitFor(t, 3*time.Minute, "nodes srv and ag Ready", func() error { return nodesReady(ctx, cl.c, "ag", "srv") })
	// What runs is the release's kasa, unpacked by its launcher into
	// the agent's data dir (the launcher replaced itself by it).
	if exe := mustExec(t, ag, "sh", "-c", "readlink /proc/$(systemctl show -p MainPID --value kasa-agent)/exe"); !strings.HasPrefix(exe, inHostDataDir+"/data/") {
		t.Errorf("kasa-agent runs %q, not the program unpacked into the data dir", exe)
	}
	if unit := mustExec(t, ag, "cat", "/etc/systemd/system/kasa-agent.service"); !strings.Contains(unit, "ExecStart=/usr/local/bin/kasa agent ") {
		t.Errorf("kasa-agent.service:\n%s", unit)
	}
	checkNoSecret(t, ag, "/etc/systemd/system/kasa-agent.service.env", "installsecret42")
	checkNoSecret(t, srv, "/etc/systemd/system/kasa.service.env", "installsecret42")

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

// trickyPath is a folder whose name a careless quoting would expand or
// cut: spaces, systemd's % and $, sh's quotes and backslash.
const trickyPath = inHostDataDir + `/local path %h ${HOME} $HOME $$ "q" 'it's' \ ; end`

// shQuote quotes s for sh.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// checkNoSecret is the attacker's look at host h after an installer: no
// marker (a part of a secret that no quoting changes) shows in the process
// list or in any file under /etc/systemd/system but the service's
// environment file, which holds them, belongs to root and has mode 0600.
func checkNoSecret(t *testing.T, h *hosts.Host, envFile string, markers ...string) {
	t.Helper()
	ps := mustExec(t, h, "ps", "-eo", "args")
	files := strings.Fields(mustExec(t, h, "find", "/etc/systemd/system", "(", "-type", "f", "-o", "-type", "l", ")"))
	if !slices.Contains(files, envFile) {
		t.Errorf("host %s: no %s", h.Name, envFile)
	}
	if st := strings.TrimSpace(mustExec(t, h, "stat", "-c", "%a %U", envFile)); st != "600 root" {
		t.Errorf("host %s: %s has mode and owner %s", h.Name, envFile, st)
	}
	env := mustExec(t, h, "cat", envFile)
	for _, m := range markers {
		if strings.Contains(ps, m) {
			t.Errorf("host %s: a secret shows in the process list: %s", h.Name, lineWith(ps, m))
		}
		if !strings.Contains(env, m) {
			t.Errorf("host %s: %s lacks a secret it should hold", h.Name, envFile)
		}
		for _, f := range files {
			if f == envFile {
				continue
			}
			// Links to /dev/null (masked units) read empty.
			if out, _, _ := h.Exec(context.Background(), "cat", f); strings.Contains(out, m) {
				t.Errorf("host %s: a secret shows in %s: %s", h.Name, f, lineWith(out, m))
			}
		}
	}
}

// checkArgs checks that the main process of unit on h was given flag with
// value, as two arguments, exactly.
func checkArgs(t *testing.T, h *hosts.Host, unit, flag, value string) {
	t.Helper()
	pid := strings.TrimSpace(mustExec(t, h, "systemctl", "show", "-p", "MainPID", "--value", unit))
	args := strings.Split(strings.TrimSuffix(mustExec(t, h, "cat", "/proc/"+pid+"/cmdline"), "\x00"), "\x00")
	if i := slices.Index(args, flag); i < 0 || i+1 == len(args) || args[i+1] != value {
		t.Errorf("host %s: %s's arguments are %q, want %s %q", h.Name, unit, args, flag, value)
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
	// The network policy controller's ipsets, the guard's table and route.
	if out := mustExec(t, h, "ipset", "list", "-n"); strings.Contains(out, "KUBE-") {
		t.Errorf("host %s: ipsets left: %s", h.Name, lineWith(out, "KUBE-"))
	}
	if _, _, err := h.Exec(ctx, "nft", "list", "table", "ip", "kasa"); err == nil {
		t.Errorf("host %s: the nftables table ip kasa is still there", h.Name)
	}
	if out := mustExec(t, h, "ip", "route", "show", "proto", "107"); strings.TrimSpace(out) != "" {
		t.Errorf("host %s: the guard's route is still there: %s", h.Name, out)
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
	// The release of this build, and the same release with its artifact
	// changed (a byte added) after its sha256sum file was written.
	dist := harness.TestDist(t)
	releases := http.FileServer(http.Dir(dist))
	mux.Handle("/releases/", http.StripPrefix("/releases/", releases))
	tamperedArtifact := "/tampered-releases/" + harness.TestDistVersion(t) + "/kasa-" + runtime.GOARCH
	mux.HandleFunc("/tampered-releases/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != tamperedArtifact {
			http.StripPrefix("/tampered-releases/", releases).ServeHTTP(w, r)
			return
		}
		f, err := os.Open(filepath.Join(dist, strings.TrimPrefix(tamperedArtifact, "/tampered-releases/")))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		_, _ = io.Copy(w, io.MultiReader(f, strings.NewReader("#")))
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
