package up

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kasa-io/kasa/install"
)

// TestSplitSecrets: install flags are read as kasa reads them; the values
// of secret flags come out in every form, with their variables; every
// other flag stays as given, a value that looks like a flag included.
func TestSplitSecrets(t *testing.T) {
	for _, tt := range []struct {
		role    string
		flags   []string
		rest    []string
		secrets []secretFlag
		err     string
	}{
		{role: RoleServer, flags: []string{"--node-label", "a=b", "--debug", "-d", "/d", "--tls-san=x"},
			rest: []string{"--node-label", "a=b", "--debug", "-d", "/d", "--tls-san=x"}},
		{role: RoleServer, flags: []string{"--datastore-endpoint", "postgres://u:p@h/db", "--debug", "--datastore-endpoint=mysql://x", "--node-name", "n"},
			rest: []string{"--debug", "--node-name", "n"},
			secrets: []secretFlag{{"--datastore-endpoint", "KASA_DATASTORE_ENDPOINT", "postgres://u:p@h/db"},
				{"--datastore-endpoint", "KASA_DATASTORE_ENDPOINT", "mysql://x"}}},
		{role: RoleServer, flags: []string{"-tone", "-t=two", "-t", "three", "--token", "four", "--token=five", "--agent-token", "six"},
			secrets: []secretFlag{{"-t", "KASA_TOKEN", "one"}, {"-t", "KASA_TOKEN", "two"}, {"-t", "KASA_TOKEN", "three"},
				{"--token", "KASA_TOKEN", "four"}, {"--token", "KASA_TOKEN", "five"}, {"--agent-token", "KASA_AGENT_TOKEN", "six"}}},
		// A flag's value is the next argument whatever it looks like, but
		// for a secret flag, which is read as one.
		{role: RoleServer, flags: []string{"--node-name", "-x", "-d", "--debug", "--bogus", "--", "x"},
			rest: []string{"--node-name", "-x", "-d", "--debug", "--bogus", "--", "x"}},
		{role: RoleServer, flags: []string{"--node-name", "--token", "s3cret", "--bogus", "--datastore-endpoint=d", "--bogus-last"},
			rest:    []string{"--node-name", "--bogus", "--bogus-last"},
			secrets: []secretFlag{{"--token", "KASA_TOKEN", "s3cret"}, {"--datastore-endpoint", "KASA_DATASTORE_ENDPOINT", "d"}}},
		{role: RoleAgent, flags: []string{"--node-name", "--agent-token", "s3cret"}, err: "kasa agent has no --agent-token flag"},
		{role: RoleServer, flags: []string{"--token", "-tx"}, err: "--token needs a value"},
		{role: RoleAgent, flags: []string{"-s", "https://s:6443", "--token", "K10x::node:s3cret"},
			rest: []string{"-s", "https://s:6443"}, secrets: []secretFlag{{"--token", "KASA_TOKEN", "K10x::node:s3cret"}}},
		{role: RoleAgent, flags: []string{"--datastore-endpoint=postgres://u:s3cret@h/db"}, err: "kasa agent has no --datastore-endpoint flag"},
		{role: RoleAgent, flags: []string{"--agent-token", "s3cret"}, err: "kasa agent has no --agent-token flag"},
		{role: RoleServer, flags: []string{"--debug", "--datastore-endpoint"}, err: "--datastore-endpoint needs a value"},
	} {
		rest, secrets, err := splitSecrets(tt.role, tt.flags)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("%s %q: %v, want %q", tt.role, tt.flags, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(rest, tt.rest) || !slices.Equal(secrets, tt.secrets) {
			t.Errorf("%s %q:\n%q %+v %v\nwant\n%q %+v", tt.role, tt.flags, rest, secrets, err, tt.rest, tt.secrets)
		}
	}
}

// TestInstallSettings: the settings kasa up gives install.sh, sourced as
// on a host and read by install.sh itself: every flag reaches the unit's
// command line exactly (spaces quoted, systemd's % and $ doubled), the
// datastore endpoint of the flags goes to the environment (winning over
// spec.datastoreEndpoint, as a flag wins in kasa), and the line kasa up
// shows holds no secret.
func TestInstallSettings(t *testing.T) {
	tricky := `/var/lib/a b/%h ${HOME} $HOME $$ "q" 'it's' \ ;`
	srv := &Host{Name: "srv", Role: RoleServer,
		InstallFlags: []string{"--default-local-storage-path", tricky, "--datastore-endpoint", "postgres://u:p$ss w0rd@h/db", "--node-label=x=y z"},
		Environment:  map[string]string{"KASA_DEBUG": "true"}}
	ag := &Host{Name: "ag", Role: RoleAgent, InstallFlags: []string{"--node-label", `k=$(touch /tmp/pwned)`, "--default-local-storage-path=" + tricky}}
	for _, tt := range []struct {
		h     *Host
		args  []string
		env   map[string]string
		unit  string
		vars  []string
		shown string
	}{
		{srv, serverArgs(&Cluster{Spec: Spec{TLSSANs: []string{"kasa.example"}}}, &Host{SSH: SSH{Address: "10.0.0.1"}, InstallFlags: srv.InstallFlags}),
			map[string]string{"KASA_TOKEN": "t0ken-with-$-and-%", "KASA_DATASTORE_ENDPOINT": "from-spec"},
			`CMD=server ARGS= --tls-san 10.0.0.1 --tls-san kasa.example --default-local-storage-path "/var/lib/a b/%%h $${HOME} $$HOME $$$$ \"q\" 'it's' \\ ;" "--node-label=x=y z"`,
			[]string{"KASA_DATASTORE_ENDPOINT=postgres://u:p$ss w0rd@h/db", "KASA_DEBUG=true", "KASA_TOKEN=t0ken-with-$-and-%"},
			"server --tls-san 10.0.0.1 --tls-san kasa.example --default-local-storage-path " + tricky + " --node-label=x=y z (--datastore-endpoint in the service's environment file)"},
		{ag, append([]string{"agent"}, ag.InstallFlags...),
			map[string]string{"KASA_URL": "https://10.0.0.1:6443", "KASA_TOKEN": "K10abc::node:s3cret"},
			`CMD=agent ARGS= --node-label "k=$$(touch /tmp/pwned)" "--default-local-storage-path=/var/lib/a b/%%h $${HOME} $$HOME $$$$ \"q\" 'it's' \\ ;"`,
			[]string{"KASA_TOKEN=K10abc::node:s3cret", "KASA_URL=https://10.0.0.1:6443"},
			"agent --node-label k=$(touch /tmp/pwned) --default-local-storage-path=" + tricky},
	} {
		settings, shown, err := installSettings(tt.h, tt.args, tt.env, "/home/u/.kasa-up/kasa")
		if err != nil {
			t.Fatal(err)
		}
		if shown != tt.shown {
			t.Errorf("%s: shown %q, want %q", tt.h.Name, shown, tt.shown)
		}
		if strings.Contains(shown, "p$ss") || strings.Contains(shown, "s3cret") {
			t.Errorf("%s: the shown line has a secret: %s", tt.h.Name, shown)
		}
		dir := t.TempDir()
		file := filepath.Join(dir, "env")
		if err := os.WriteFile(file, []byte(settings), 0o600); err != nil {
			t.Fatal(err)
		}
		script := strings.TrimSuffix(strings.TrimRight(string(install.Script), "\n"), `main "$@"`)
		if err := os.WriteFile(filepath.Join(dir, "install.sh"), []byte(script), 0o600); err != nil {
			t.Fatal(err)
		}
		// As up.go runs it on a host, then install.sh's own reading.
		cmd := exec.Command("sh", "-c", "set -a; . "+shellQuote(file)+"; set +a; . "+shellQuote(dir+"/install.sh")+
			`; setup_env; printf 'CMD=%s ARGS=%s\n' "$CMD" "$ARGS"; env | grep '^KASA_' | sort`)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", tt.h.Name, err, stderr.String())
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n") {
			if !strings.HasPrefix(l, "[INFO]") {
				lines = append(lines, l)
			}
		}
		if lines[0] != tt.unit {
			t.Errorf("%s: the unit's command line\n%s\nwant\n%s", tt.h.Name, lines[0], tt.unit)
		}
		if !slices.Equal(lines[1:], tt.vars) {
			t.Errorf("%s: KASA_* variables %q, want %q", tt.h.Name, lines[1:], tt.vars)
		}
		if _, err := os.Stat("/tmp/pwned"); err == nil {
			t.Errorf("%s: a flag's value ran a command", tt.h.Name)
		}
	}
}

// TestCheckInstallFlags: flags that kasa could not read as given are
// refused when the cluster file is read, naming no secret.
func TestCheckInstallFlags(t *testing.T) {
	for _, tt := range []struct {
		h   Host
		err string
	}{
		{Host{Role: RoleServer, InstallFlags: []string{"--node-label", "a=b", "--datastore-endpoint", "postgres://u:s3cret@h/db"}}, ""},
		{Host{Role: RoleServer, InstallFlags: []string{"--datastore-endpoint"}}, "installFlags: --datastore-endpoint needs a value"},
		{Host{Role: RoleAgent, InstallFlags: []string{"--datastore-endpoint=postgres://u:s3cret@h/db"}}, "kasa agent has no --datastore-endpoint flag"},
		{Host{Role: RoleAgent, InstallFlags: []string{"--node-label", "a=b\nc"}}, "a value with a line break cannot go in a systemd unit"},
	} {
		err := checkInstallFlags(&tt.h)
		if (tt.err == "" && err != nil) || (tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err))) {
			t.Errorf("%q: %v, want %q", tt.h.InstallFlags, err, tt.err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}
