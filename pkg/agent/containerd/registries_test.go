package containerd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRegistriesToHosts(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "registries.yaml")
	if err := os.WriteFile(file, []byte(`
mirrors:
  docker.io:
    endpoint: ["https://mirror-a.example:5000", "https://mirror-b.example"]
  "*":
    endpoint: ["http://127.0.0.1:5001"]
configs:
  "mirror-a.example:5000":
    auth: {username: alice, password: s3cret}
    tls: {ca_file: /etc/ssl/mirror.pem}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := LoadRegistries(file)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "certs.d")
	if err := r.WriteHosts(out, false); err != nil {
		t.Fatal(err)
	}
	docker, _ := os.ReadFile(filepath.Join(out, "docker.io", "hosts.toml"))
	for _, want := range []string{
		`server = "https://registry-1.docker.io"`,
		`[host."https://mirror-a.example:5000"]`,
		`ca = "/etc/ssl/mirror.pem"`,
		`Authorization = "Basic YWxpY2U6czNjcmV0"`,
		`[host."https://mirror-b.example"]`,
	} {
		if !strings.Contains(string(docker), want) {
			t.Errorf("docker.io hosts.toml lacks %s:\n%s", want, docker)
		}
	}
	if st, _ := os.Stat(filepath.Join(out, "docker.io", "hosts.toml")); st.Mode().Perm() != 0o600 {
		t.Errorf("hosts.toml with credentials has mode %o", st.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(out, "_default", "hosts.toml")); err != nil {
		t.Errorf("the * mirror did not become _default: %v", err)
	}

	// Without the default endpoint, the last mirror is the server.
	if err := r.WriteHosts(out, true); err != nil {
		t.Fatal(err)
	}
	docker, _ = os.ReadFile(filepath.Join(out, "docker.io", "hosts.toml"))
	if !strings.Contains(string(docker), `server = "https://mirror-b.example"`) || strings.Contains(string(docker), "registry-1.docker.io") {
		t.Errorf("default endpoint still in:\n%s", docker)
	}
	def, _ := os.ReadFile(filepath.Join(out, "_default", "hosts.toml"))
	if !strings.Contains(string(def), `server = "http://127.0.0.1:5001"`) {
		t.Errorf("_default:\n%s", def)
	}
}

func TestRegistriesErrors(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"rewrite":  "mirrors:\n  docker.io:\n    endpoint: [\"https://m\"]\n    rewrite:\n      \"^a/(.*)\": \"b/$1\"\n",
		"endpoint": "mirrors:\n  docker.io:\n    endpoint: [\"mirror.example\"]\n",
		"unknown":  "mirrorz: {}\n",
		"yaml":     "mirrors: [\n",
	} {
		file := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadRegistries(file); err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: got %v, want an error naming the file", name, err)
		}
	}
	r, err := LoadRegistries(filepath.Join(dir, "missing.yaml"))
	if err != nil || len(r.Mirrors) != 0 {
		t.Fatalf("a missing file: %v %+v", err, r)
	}
}
