package apps

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/kasa-io/kasa/pkg/catalog"
	"github.com/kasa-io/kasa/pkg/kubeconfig"
)

// parseFlags binds flags with bind and parses args.
func parseFlags(t *testing.T, bind func(*cobra.Command), args ...string) {
	t.Helper()
	cmd := &cobra.Command{Use: "test"}
	bind(cmd)
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatal(err)
	}
}

// TestValues: -f files in order, --set values whole (helm splits them at
// commas itself) and --ingress-host become the catalog's value options.
func TestValues(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want catalog.ValueOptions
	}{
		{nil, catalog.ValueOptions{}},
		{[]string{"-f", "a.yaml", "--values", "b.yaml", "--set", "a=1,b=2", "--set", "c={x,y}", "--ingress-host", "blog.example.com"},
			catalog.ValueOptions{Files: []string{"a.yaml", "b.yaml"}, Set: []string{"a=1,b=2", "c={x,y}"}, IngressHost: "blog.example.com"}},
	} {
		var v values
		parseFlags(t, v.bind, tt.args...)
		got := v.options()
		if !slices.Equal(got.Files, tt.want.Files) || !slices.Equal(got.Set, tt.want.Set) || got.IngressHost != tt.want.IngressHost {
			t.Errorf("%v: %+v, want %+v", tt.args, got, tt.want)
		}
	}
}

// TestWaiting: commands wait by default, for five minutes; --no-wait or
// --wait=false do not.
func TestWaiting(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		enabled bool
		timeout time.Duration
	}{
		{nil, true, 5 * time.Minute},
		{[]string{"--no-wait"}, false, 5 * time.Minute},
		{[]string{"--wait=false"}, false, 5 * time.Minute},
		{[]string{"--wait", "--no-wait"}, false, 5 * time.Minute},
		{[]string{"--timeout", "90s"}, true, 90 * time.Second},
	} {
		var w waiting
		parseFlags(t, w.bind, tt.args...)
		if w.enabled() != tt.enabled || w.timeout != tt.timeout {
			t.Errorf("%v: enabled %v, timeout %s; want %v, %s", tt.args, w.enabled(), w.timeout, tt.enabled, tt.timeout)
		}
	}
}

// noCluster is an environment without a kubeconfig of kasa's.
func noCluster() kubeconfig.Env {
	return kubeconfig.Env{Readable: func(string) bool { return false }}
}

// execute runs the catalog command name with args.
func execute(t *testing.T, env kubeconfig.Env, args ...string) (string, error) {
	t.Helper()
	for _, cmd := range NewCommands(env) {
		if cmd.Name() == args[0] {
			var out bytes.Buffer
			cmd.SetArgs(args[1:])
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			err := cmd.Execute()
			return out.String(), err
		}
	}
	t.Fatalf("no command %s", args[0])
	return "", nil
}

// TestCommandFlags: each command has the flags of what it does: the
// cluster's everywhere but apps, values on install and upgrade, waiting on
// install and upgrade, -o on list, status and apps.
func TestCommandFlags(t *testing.T) {
	want := map[string][]string{
		"install":   {"kubeconfig", "context", "namespace", "values", "set", "ingress-host", "wait", "no-wait", "timeout", "version", "dry-run"},
		"upgrade":   {"kubeconfig", "context", "namespace", "values", "set", "ingress-host", "wait", "no-wait", "timeout", "chart"},
		"uninstall": {"kubeconfig", "context", "namespace", "purge"},
		"list":      {"kubeconfig", "context", "namespace", "output"},
		"status":    {"kubeconfig", "context", "namespace", "output"},
		"info":      {"kubeconfig", "context", "namespace"},
		"apps":      {"output"},
	}
	var names []string
	for _, cmd := range NewCommands(noCluster()) {
		names = append(names, cmd.Name())
		var got []string
		cmd.Flags().VisitAll(func(f *pflag.Flag) { got = append(got, f.Name) })
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want[cmd.Name()]))) {
			t.Errorf("%s: flags %v, want %v", cmd.Name(), got, want[cmd.Name()])
		}
		if ns := cmd.Flags().Lookup("namespace"); ns != nil && (ns.DefValue != "default" || ns.Shorthand != "n") {
			t.Errorf("%s: -n, --namespace default %q", cmd.Name(), ns.DefValue)
		}
	}
	if !slices.Equal(names, []string{"install", "upgrade", "uninstall", "list", "status", "info", "apps"}) {
		t.Errorf("commands %v", names)
	}
}

// TestInstallArguments: install's arguments and --version are checked
// before it reaches a cluster.
func TestInstallArguments(t *testing.T) {
	isolate(t)
	apps, err := catalog.Apps()
	if err != nil || len(apps) == 0 {
		t.Fatalf("catalog: %v", err)
	}
	app := apps[0]
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"install"}, "accepts between 1 and 3 arg(s), received 0"},
		{[]string{"install", "chart"}, "install chart needs a PATH or URL"},
		{[]string{"install", app.Name, "a", "b"}, "too many arguments: install APP [NAME]"},
		{[]string{"install", app.Name, "--version", "0.0.0-none"}, "kasa's catalog has " + app.Name + " " + app.Version + ", not 0.0.0-none"},
		{[]string{"install", "no-such-app"}, `"no-such-app" is not in the catalog`},
		{[]string{"install", app.Name, "-f", "/nonexistent/values.yaml"}, "invalid values: open /nonexistent/values.yaml"},
		{[]string{"install", app.Name, "--set", "a"}, `invalid values: --set a: key "a" has no value`},
		{[]string{"upgrade"}, "accepts 1 arg(s), received 0"},
		{[]string{"list", "extra"}, `unknown command "extra"`},
	} {
		_, err := execute(t, noCluster(), tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, catalog.ErrUnreachable) {
			t.Errorf("%v: %v, want an error with %q before the cluster", tt.args, err, tt.want)
		}
	}
}

// TestAppsCommand: kasa apps lists the catalog without a cluster, as a
// table or as JSON or YAML.
func TestAppsCommand(t *testing.T) {
	apps, err := catalog.Apps()
	if err != nil {
		t.Fatal(err)
	}
	out, err := execute(t, noCluster(), "apps")
	if err != nil || !strings.HasPrefix(out, "NAME") || strings.Count(out, "\n") != len(apps)+1 {
		t.Errorf("table: %v\n%s", err, out)
	}
	for _, a := range apps {
		if !strings.Contains(out, a.Name+" ") {
			t.Errorf("table without %s:\n%s", a.Name, out)
		}
	}
	for _, format := range []string{"json", "yaml"} {
		out, err := execute(t, noCluster(), "apps", "-o", format)
		if err != nil {
			t.Fatal(err)
		}
		var got []map[string]any
		if err := yaml.Unmarshal([]byte(out), &got); err != nil || len(got) != len(apps) || got[0]["Name"] != apps[0].Name {
			t.Errorf("-o %s: %v\n%s", format, err, out)
		}
	}
	if _, err := execute(t, noCluster(), "apps", "-o", "wide"); err == nil || !strings.Contains(err.Error(), `--output "wide"`) {
		t.Errorf("-o wide: %v", err)
	}
}

// writeKubeconfig writes a kubeconfig for the API server at url.
func writeKubeconfig(t *testing.T, url string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "kubeconfig")
	data := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "` + url + `"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {}}]
current-context: c
`
	if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// isolate keeps the test from the user's clusters: no KUBECONFIG, a HOME
// of its own (Helm's and client-go's caches), and a ~/.kube/config, read
// from the path client-go computed when it started, that names no server
// that answers.
func isolate(t *testing.T) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBECONFIG", "")
	home := clientcmd.RecommendedHomeFile
	clientcmd.RecommendedHomeFile = writeKubeconfig(t, "http://127.0.0.1:1")
	t.Cleanup(func() { clientcmd.RecommendedHomeFile = home })
}

// TestKubeconfig: the cluster is --kubeconfig's, else KUBECONFIG's, else
// kasa's admin kubeconfig when readable (KASA_KUBECONFIG_OUTPUT), else
// ~/.kube/config's; an unreachable cluster's error names which.
func TestKubeconfig(t *testing.T) {
	isolate(t)
	unreachable := writeKubeconfig(t, "http://127.0.0.1:1")
	other := writeKubeconfig(t, "http://127.0.0.1:1")
	for _, tt := range []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{"--kubeconfig", map[string]string{"KASA_KUBECONFIG_OUTPUT": other}, []string{"--kubeconfig", unreachable}, "(kubeconfig: --kubeconfig " + unreachable + ")"},
		{"KUBECONFIG", map[string]string{"KUBECONFIG": unreachable, "KASA_KUBECONFIG_OUTPUT": other}, nil, "(kubeconfig: KUBECONFIG=" + unreachable + ")"},
		{"kasa's", map[string]string{"KASA_KUBECONFIG_OUTPUT": unreachable}, nil, "(kubeconfig: " + unreachable + ")"},
		{"~/.kube/config", nil, nil, "(kubeconfig: ~/.kube/config)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if v, ok := tt.vars["KUBECONFIG"]; ok {
				t.Setenv("KUBECONFIG", v) // the client-go loader reads it itself
			}
			kc, set := tt.vars["KUBECONFIG"]
			env := kubeconfig.Env{
				Kubeconfig: kc, KubeconfigSet: set, Output: tt.vars["KASA_KUBECONFIG_OUTPUT"],
				Readable: func(p string) bool { _, err := os.Stat(p); return err == nil },
			}
			_, err := execute(t, env, append([]string{"uninstall", "db"}, tt.args...)...)
			if !errors.Is(err, catalog.ErrUnreachable) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%v, want the cluster unreachable, %q", err, tt.want)
			}
		})
	}
}

// fakeAPIServer answers what listing Helm's releases asks: the version
// and the release Secrets, one release named name in namespace ns.
func fakeAPIServer(t *testing.T, name, ns string) *httptest.Server {
	t.Helper()
	rel, err := json.Marshal(map[string]any{
		"name": name, "namespace": ns, "version": 1,
		"info":  map[string]any{"status": "deployed"},
		"chart": map[string]any{"metadata": map[string]any{"name": "mysql", "version": "1.0.0"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	if _, err := w.Write(rel); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]any{"kind": "SecretList", "apiVersion": "v1", "metadata": map[string]any{}, "items": []any{map[string]any{
		"metadata": map[string]any{"name": "sh.helm.release.v1." + name + ".v1", "namespace": ns,
			"labels": map[string]string{"owner": "helm", "name": name, "status": "deployed", "version": "1"}},
		"type": "helm.sh/release.v1",
		"data": map[string]string{"release": base64.StdEncoding.EncodeToString([]byte(base64.StdEncoding.EncodeToString(gz.Bytes())))},
	}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/version":
			_ = json.NewEncoder(w).Encode(map[string]string{"major": "1", "minor": "33", "gitVersion": "v1.33.0"})
		case "/api/v1/secrets":
			_ = json.NewEncoder(w).Encode(secrets)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestReleaseNames: upgrade, uninstall and status complete their argument
// with the releases of the cluster that the command's own --kubeconfig
// names.
func TestReleaseNames(t *testing.T) {
	isolate(t)
	kubeconfig := writeKubeconfig(t, fakeAPIServer(t, "shop-db", "shop").URL)
	for _, name := range []string{"upgrade", "uninstall", "status"} {
		var cmd *cobra.Command
		for _, c := range NewCommands(noCluster()) {
			if c.Name() == name {
				cmd = c
			}
		}
		root := &cobra.Command{Use: "kasa"}
		root.AddCommand(cmd)
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&bytes.Buffer{})
		root.SetArgs([]string{cobra.ShellCompRequestCmd, name, "--kubeconfig", kubeconfig, ""})
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(out.String()); len(got) < 1 || got[0] != "shop-db" {
			t.Errorf("%s: completions %q, want shop-db", name, out.String())
		}
		// A second argument has no completion.
		out.Reset()
		root.SetArgs([]string{cobra.ShellCompRequestCmd, name, "--kubeconfig", kubeconfig, "shop-db", ""})
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), "shop-db") {
			t.Errorf("%s: a second argument completed: %q", name, out.String())
		}
	}
}
