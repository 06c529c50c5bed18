package token

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kasa-io/kasa/pkg/kubeconfig"
	"github.com/kasa-io/kasa/pkg/settings"
	"github.com/kasa-io/kasa/pkg/token"
	"github.com/kasa-io/kasa/pkg/tokenadmin"
)

// TestRotateRefusesShortSecret: kasa token rotate --new-token refuses a
// secret shorter than 16 characters before it reaches the cluster.
func TestRotateRefusesShortSecret(t *testing.T) {
	for _, agent := range []bool{false, true} {
		cmd := NewCommand(kubeconfig.Env{Readable: func(string) bool { return false }})
		args := []string{"rotate", "--new-token", "short-s3cret", "--kubeconfig", "/nonexistent/kubeconfig"}
		if agent {
			args = append(args, "--agent")
		}
		var out bytes.Buffer
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		err := cmd.Execute()
		if !errors.Is(err, token.ErrWeakSecret) {
			t.Fatalf("rotate %v: %v, want a refusal of the short secret", args, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "--new-token") || !strings.Contains(msg, "openssl rand -hex 16") || strings.Contains(msg, "short-s3cret") {
			t.Errorf("message %q: want the flag and how to make a secret, without the secret", msg)
		}
	}
}

// rotateIn runs kasa token rotate with args against a fake cluster whose CA
// has the hash hash, with the environment vars (KASA_* unset otherwise),
// and returns what it printed.
func rotateIn(t *testing.T, vars map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	for _, k := range []string{"KASA_DATA_DIR", "KASA_CONFIG_FILE", "KASA_CONFIG"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	// Never the machine's own /etc/kasa/config.yaml.
	empty := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KASA_CONFIG_FILE", empty)
	for k, v := range vars {
		t.Setenv(k, v)
	}
	cs := fake.NewClientset()
	if _, err := cs.CoreV1().Secrets("kube-system").Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kasa-token", Namespace: "kube-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cmd := newCommand(deps{
		env:     kubeconfig.Env{Readable: func(string) bool { return false }},
		connect: func(tokenadmin.Cluster) (*tokenadmin.Admin, error) { return tokenadmin.New(cs, hash), nil },
	})
	var out, errOut bytes.Buffer
	cmd.SetArgs(append([]string{"rotate"}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

// serverDataDir is a data dir with a server folder.
func serverDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "server"), 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRotateDataDir: kasa token rotate finds the data dir as every command
// does (--data-dir, else KASA_DATA_DIR, else data-dir in the config file)
// and rewrites the token file there.
func TestRotateDataDir(t *testing.T) {
	fromFlag, fromEnv, fromFile := serverDataDir(t), serverDataDir(t), serverDataDir(t)
	config := filepath.Join(t.TempDir(), "config.yaml")
	// The server's config file: the keys rotate does not take are skipped.
	if err := os.WriteFile(config, []byte("data-dir: "+fromFile+"\nwrite-kubeconfig-mode: \"0644\"\ndisable: [traefik]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{"--data-dir", map[string]string{"KASA_DATA_DIR": fromEnv, "KASA_CONFIG_FILE": config}, []string{"--data-dir", fromFlag}, fromFlag},
		{"KASA_DATA_DIR", map[string]string{"KASA_DATA_DIR": fromEnv, "KASA_CONFIG_FILE": config}, nil, fromEnv},
		{"data-dir in KASA_CONFIG_FILE", map[string]string{"KASA_CONFIG_FILE": config}, nil, fromFile},
		{"data-dir in --config", nil, []string{"--config", config}, fromFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := rotateIn(t, tc.vars, tc.args...)
			if err != nil || errOut != "" {
				t.Fatalf("rotate: %v\n%s", err, errOut)
			}
			data, err := os.ReadFile(filepath.Join(tc.want, "server", "token"))
			if err != nil || string(data) != out {
				t.Errorf("the token file in %s: %q %v, want the printed token %q", tc.want, data, err, out)
			}
		})
	}
}

// TestRotateNoServerDir: without a server folder in the data dir, rotate
// prints the new token and says that no token file was rewritten.
func TestRotateNoServerDir(t *testing.T) {
	dir := t.TempDir()
	out, errOut, err := rotateIn(t, map[string]string{"KASA_DATA_DIR": dir}, "--agent")
	if err != nil {
		t.Fatal(err)
	}
	if tk, err := token.Parse(out); err != nil || tk.User != token.AgentUser {
		t.Errorf("printed %q: %v", out, err)
	}
	if !strings.Contains(errOut, filepath.Join(dir, "server")+" does not exist, so no token file was rewritten") || !strings.Contains(errOut, "KASA_DATA_DIR") {
		t.Errorf("stderr %q: want why no token file was rewritten and how to give the data dir", errOut)
	}
	if strings.Contains(errOut, strings.TrimSpace(out)) {
		t.Errorf("the warning shows the token: %q", errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "server")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the server folder was made: %v", err)
	}
}

// TestRotateBadConfig: a config file named on purpose that is missing
// stops rotate before the cluster is asked anything.
func TestRotateBadConfig(t *testing.T) {
	_, _, err := rotateIn(t, nil, "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, settings.ErrConfig) {
		t.Errorf("rotate with a missing --config: %v", err)
	}
}
