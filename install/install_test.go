package install_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kasa-io/kasa/install"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/settings"
)

// functions writes install.sh without its last line (main "$@") into a
// temporary folder, for a test to source its functions.
func functions(t *testing.T) string {
	t.Helper()
	script := strings.TrimRight(string(install.Script), "\n")
	i := strings.LastIndex(script, "\n")
	if script[i+1:] != `main "$@"` {
		t.Fatalf("install.sh ends with %q, not main \"$@\"", script[i+1:])
	}
	file := filepath.Join(t.TempDir(), "functions.sh")
	if err := os.WriteFile(file, []byte(script[:i+1]), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// runSh runs script with install.sh's functions sourced, args as its
// arguments and env as its whole environment besides PATH.
func runSh(t *testing.T, funcs, script string, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", ". " + funcs + "\n" + script, "sh"}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// unitWords reads a systemd command line as systemd does for the words
// install.sh writes (bare, or in double quotes with \\ and \" escaped) and
// undoes systemd's %% and $$.
func unitWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	for line = strings.TrimLeft(line, " "); line != ""; line = strings.TrimLeft(line, " ") {
		var w strings.Builder
		if line[0] == '"' {
			i := 1
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' {
					i++
					if i == len(line) || (line[i] != '\\' && line[i] != '"') {
						t.Fatalf("a backslash that systemd would read otherwise in %q", line)
					}
				}
				w.WriteByte(line[i])
			}
			if i == len(line) {
				t.Fatalf("an unclosed quote in %q", line)
			}
			line = line[i+1:]
			if line != "" && line[0] != ' ' {
				t.Fatalf("a quoted word that does not end at a space in %q", line)
			}
		} else {
			word, rest, _ := strings.Cut(line, " ")
			if strings.ContainsAny(word, `"'\;`) {
				t.Fatalf("a bare word %q that systemd would read otherwise", word)
			}
			w.WriteString(word)
			line = rest
		}
		s := w.String()
		for _, c := range []string{"%", "$"} {
			if strings.Count(s, c)%2 != 0 || strings.Contains(strings.ReplaceAll(s, c+c, ""), c) {
				t.Fatalf("a %s that systemd would expand in %q", c, s)
			}
			s = strings.ReplaceAll(s, c+c, c)
		}
		words = append(words, s)
	}
	return words
}

// TestSetupEnv: INSTALL_KASA_EXEC is read as sh reads words (quotes and
// backslashes, nothing expanded), then the arguments; each flag reaches the
// unit's command line exactly (systemd's % and $ doubled, spaces quoted),
// but flags whose values are secrets go to the environment, in every form
// kasa reads; what kasa could not read is refused.
func TestSetupEnv(t *testing.T) {
	funcs := functions(t)
	const show = `setup_env "$@"
printf 'CMD=%s\n%s\n' "$CMD" "$ARGS"
env | grep '^KASA_' | sort
printf 'DATA_DIR=%s\n' "$DATA_DIR"`
	tricky := `a b %h ${HOME} $HOME $$ "q" 'it's' \ ; tab	end`
	for _, tt := range []struct {
		name    string
		exec    string
		args    []string
		env     []string
		cmd     string
		words   []string
		secrets []string // KASA_* lines
		dataDir string
		err     string
	}{
		{name: "plain", exec: "server --tls-san kasa.example --debug -d /srv/kasa", cmd: "server",
			words: []string{"--tls-san", "kasa.example", "--debug", "-d", "/srv/kasa"}, dataDir: "/srv/kasa"},
		{name: "flags alone make a server", exec: "--node-label a=b", cmd: "server", words: []string{"--node-label", "a=b"}},
		{name: "flags alone with KASA_URL make an agent", exec: "--node-label a=b", env: []string{"KASA_URL=https://s:6443"}, cmd: "agent",
			words: []string{"--node-label", "a=b"}, secrets: []string{"KASA_URL=https://s:6443"}},
		{name: "sh quoting, nothing expanded", exec: `server --default-local-storage-path '` + strings.ReplaceAll(tricky, "'", `'\''`) + `' "--node-label=x=\"\$HOME\\" a\ b`,
			cmd: "server", words: []string{"--default-local-storage-path", tricky, `--node-label=x="$HOME\`, "a b"}},
		{name: "arguments after INSTALL_KASA_EXEC", exec: "server --debug", args: []string{"--data-dir=/d d", tricky}, cmd: "server",
			words: []string{"--debug", "--data-dir=/d d", tricky}, dataDir: "/d d"},
		{name: "empty words", exec: `server --node-name '' ""`, cmd: "server", words: []string{"--node-name", "", ""}},
		{name: "secrets in every form", exec: `server --token 't$k "1%h' --agent-token=a\ 2 --datastore-endpoint 'postgres://u:p$w@h/db' --node-label l=1`,
			env: []string{"KASA_TOKEN=from-the-environment"}, cmd: "server", words: []string{"--node-label", "l=1"},
			secrets: []string{"KASA_AGENT_TOKEN=a 2", `KASA_DATASTORE_ENDPOINT=postgres://u:p$w@h/db`, `KASA_TOKEN=t$k "1%h`}},
		{name: "-t forms", exec: "server -tone -t=two", args: []string{"-t", "three"}, cmd: "server", secrets: []string{"KASA_TOKEN=three"}},
		{name: "an agent's token", exec: "agent --server https://s:6443 -t K10x::node:s3cret", cmd: "agent",
			words: []string{"--server", "https://s:6443"}, secrets: []string{"KASA_TOKEN=K10x::node:s3cret"}},
		{name: "a value that looks like a flag", exec: "server --node-name --debug -d -x", cmd: "server", words: []string{"--node-name", "--debug", "-d", "-x"}, dataDir: "-x"},
		{name: "a secret flag is never a value", exec: "server --bogus -t s3cret --node-name --datastore-endpoint=dsn-s3cret --bogus-last", cmd: "server",
			words: []string{"--bogus", "--node-name", "--bogus-last"}, secrets: []string{"KASA_DATASTORE_ENDPOINT=dsn-s3cret", "KASA_TOKEN=s3cret"}},
		{name: "a flag without a value", exec: "server --debug --token", err: "--token needs a value"},
		{name: "a secret flag without a value", exec: "server --token --agent-token=s3cret", err: "--token needs a value"},
		{name: "agent-token to an agent", exec: "agent --server https://s:6443 --agent-token x", err: "kasa agent has no --agent-token flag"},
		{name: "an unclosed quote", exec: `server --node-name 'x`, err: "INSTALL_KASA_EXEC has a ' that is not closed"},
		{name: "a line break", exec: "server --node-name 'a\nb'", err: "holds a line break"},
		{name: "an unknown command", exec: "frobnicate", err: "unknown command 'frobnicate'"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := runSh(t, funcs, show, append([]string{"INSTALL_KASA_EXEC=" + tt.exec}, tt.env...), tt.args...)
			if tt.err != "" {
				if err == nil || !strings.Contains(stderr, tt.err) {
					t.Fatalf("%v, want %q in\n%s", err, tt.err, stderr)
				}
				if strings.Contains(stderr, "s3cret") {
					t.Errorf("the error shows a secret: %s", stderr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			var lines []string
			for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
				if !strings.HasPrefix(l, "[INFO]") {
					lines = append(lines, l)
				}
			}
			if lines[0] != "CMD="+tt.cmd {
				t.Errorf("%s, want CMD=%s", lines[0], tt.cmd)
			}
			if got := unitWords(t, lines[1]); !slices.Equal(got, tt.words) {
				t.Errorf("the unit's words:\n%q\nwant\n%q\n(from %s)", got, tt.words, lines[1])
			}
			if got := lines[2 : len(lines)-1]; !slices.Equal(got, tt.secrets) {
				t.Errorf("KASA_* variables: %q, want %q", got, tt.secrets)
			}
			want := "DATA_DIR=" + tt.dataDir
			if tt.dataDir == "" {
				want = "DATA_DIR=/var/lib/kasa"
			}
			if lines[len(lines)-1] != want {
				t.Errorf("%s, want %s", lines[len(lines)-1], want)
			}
			for _, s := range tt.secrets {
				_, v, _ := strings.Cut(s, "=")
				if strings.Contains(lines[1], v) || strings.Contains(lines[1], strings.ReplaceAll(v, "$", "$$")) {
					t.Errorf("the secret of %s is on the unit's command line: %s", s, lines[1])
				}
			}
		})
	}
}

// TestEnvFile: the environment file holds every KASA_* variable, the
// secrets moved from flags among them, escaped for systemd; a value with a
// line break stays one setting.
func TestEnvFile(t *testing.T) {
	funcs := functions(t)
	file := filepath.Join(t.TempDir(), "kasa.service.env")
	script := `setup_env "$@"; FILE_ENV=` + file + `; CHANGED=0; create_env_file; echo "CHANGED=$CHANGED"`
	_, stderr, err := runSh(t, funcs, script, []string{"INSTALL_KASA_EXEC=server --token 'a$b\"c`d\\e%h'", "KASA_NODE_NAME=n\nKASA_EVIL=1", "KASA_DEBUG=true"})
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := "KASA_DEBUG=\"true\"\nKASA_NODE_NAME=\"n\nKASA_EVIL=1\"\nKASA_TOKEN=\"a\\$b\\\"c\\`d\\\\e%h\"\n"
	if string(b) != want {
		t.Errorf("the environment file:\n%s\nwant\n%s", b, want)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the environment file's mode: %v %v", fi.Mode(), err)
	}
}

// TestFlagLists: install.sh's lists of kasa's flags (the secret ones with
// their variables, the agent's secret ones, those without a value) are
// kasa's own.
func TestFlagLists(t *testing.T) {
	lists := map[string][]string{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Z_]+_FLAGS)="([^"]*)"$`).FindAllStringSubmatch(string(install.Script), -1) {
		lists[m[1]] = strings.Fields(m[2])
	}
	server, agent := pflag.NewFlagSet("server", pflag.ContinueOnError), pflag.NewFlagSet("agent", pflag.ContinueOnError)
	(&config.ServerOptions{}).AddFlags(server)
	(&config.AgentNodeOptions{}).AddFlags(agent)
	var secrets, agentSecrets, bools []string
	for _, fs := range []*pflag.FlagSet{server, agent} {
		fs.VisitAll(func(f *pflag.Flag) {
			names := []string{"--" + f.Name}
			if f.Shorthand != "" {
				names = append(names, "-"+f.Shorthand)
			}
			for _, n := range names {
				switch {
				case settings.IsSensitive(f):
					secrets = append(secrets, n+"="+settings.EnvNames(f)[0])
					if fs == agent {
						agentSecrets = append(agentSecrets, n)
					}
				case f.NoOptDefVal != "":
					bools = append(bools, n)
				}
			}
		})
	}
	// cobra adds --help, -h.
	bools = append(bools, "--help", "-h")
	for name, want := range map[string][]string{"SECRET_FLAGS": secrets, "AGENT_SECRET_FLAGS": agentSecrets, "BOOL_FLAGS": bools} {
		slices.Sort(want)
		want = slices.Compact(want)
		if got := slices.Sorted(slices.Values(lists[name])); !slices.Equal(got, want) {
			t.Errorf("install.sh's %s is %q; kasa's flags say %q", name, got, want)
		}
	}
}
