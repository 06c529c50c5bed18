//go:build integration

package integration

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/pkg/secretsencrypt"
	"github.com/kasa-io/kasa/tests/harness"
)

// storedSecret reads, from the server's state.db itself, the newest value
// the datastore keeps for the Secret ns/name.
func storedSecret(t *testing.T, s *harness.Server, ns, name string) []byte {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(s.DataDir, "server/db/state.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var value []byte
	key := "/registry/secrets/" + ns + "/" + name
	if err := db.QueryRow("SELECT value FROM kine WHERE name = ? ORDER BY id DESC LIMIT 1", key).Scan(&value); err != nil {
		t.Fatalf("%s in state.db: %v", key, err)
	}
	return value
}

// storedUnder names the key a stored value is encrypted with, as
// "provider:name", or "plaintext" (pkg/secretsencrypt's reading, which its
// TestRenderUpstream holds to upstream's format).
func storedUnder(value []byte) string {
	if under := secretsencrypt.StoredUnder(value); under != secretsencrypt.Identity {
		return under
	}
	return "plaintext"
}

func makeSecret(t *testing.T, c kubernetes.Interface, name, value string) {
	t.Helper()
	_, err := c.CoreV1().Secrets("default").Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		StringData: map[string]string{"password": value},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func secretValue(t *testing.T, c kubernetes.Interface, name string) string {
	t.Helper()
	sec, err := c.CoreV1().Secrets("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(sec.Data["password"])
}

// TestIntegrationSecretsEncryption: a new server encrypts Secrets at rest
// (the bytes in state.db are not the plaintext); rotate-keys re-encrypts
// every Secret under a new key and drops the old one, without a restart;
// a server started with --secrets-encryption=false writes plaintext; and
// turning encryption back on re-encrypts every Secret already there.
func TestIntegrationSecretsEncryption(t *testing.T) {
	s := startServer(t)
	c := client(t, s)
	const plain = "the-plaintext-of-a-secret-4711"

	makeSecret(t, c, "first", plain)
	v := storedSecret(t, s, "default", "first")
	if bytes.Contains(v, []byte(plain)) {
		t.Fatalf("the Secret's plaintext is in state.db: %.80q", v)
	}
	key1 := storedUnder(v)
	if !strings.HasPrefix(key1, "secretbox:kasa-") {
		t.Fatalf("the Secret is stored under %q, want secretbox:kasa-...", key1)
	}
	file := filepath.Join(s.DataDir, "server/cred/encryption-config.yaml")
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, %v; want mode 0600", file, fi, err)
	}
	if b, _ := os.ReadFile(s.LogPath()); bytes.Contains(b, []byte(plain)) {
		t.Error("the server's log shows the Secret's value")
	}

	out, code, err := s.Run("secrets-encrypt", "status", "--data-dir", s.DataDir)
	if err != nil || code != 0 {
		t.Fatalf("status: exit %d, %v\n%s", code, err, out)
	}
	for _, want := range []string{"Encryption: on, " + key1 + " writes", "The API server runs with this configuration: yes", "Secrets under " + key1 + ": "} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not say %q:\n%s", want, out)
		}
	}

	// rotate-keys: every Secret under a new key, the old key gone, the
	// Secrets readable, the same process.
	pid := s.PID()
	time.Sleep(time.Second) // a key name is a second's
	start := time.Now()
	out, code, err = s.Run("secrets-encrypt", "rotate-keys", "--data-dir", s.DataDir)
	if err != nil || code != 0 {
		t.Fatalf("rotate-keys: exit %d, %v\n%s", code, err, out)
	}
	t.Logf("rotate-keys took %s:\n%s", time.Since(start).Round(100*time.Millisecond), out)
	key2 := storedUnder(storedSecret(t, s, "default", "first"))
	if key2 == key1 || !strings.HasPrefix(key2, "secretbox:kasa-") {
		t.Errorf("after rotate-keys the Secret is under %s (before: %s)", key2, key1)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if name := strings.TrimPrefix(key1, "secretbox:"); bytes.Contains(b, []byte(name)) {
		t.Errorf("the old key %s is still in %s", name, file)
	}
	if got := secretValue(t, c, "first"); got != plain {
		t.Errorf("after rotate-keys the Secret reads %q", got)
	}
	// Every Secret of the cluster (the add-ons' too) is under the new key.
	out, _, _ = s.Run("secrets-encrypt", "status", "--data-dir", s.DataDir)
	if strings.Count(out, "Secrets ") != 1 || !strings.Contains(out, "Secrets under "+key2) {
		t.Errorf("after rotate-keys, status:\n%s", out)
	}
	if s.PID() != pid || !s.Running() {
		t.Fatal("the server restarted during rotate-keys")
	}

	// Encryption off: new Secrets in plaintext, the old ones still read.
	restart := func(args ...string) {
		t.Helper()
		if _, err := s.Stop(time.Minute); err != nil {
			t.Fatal(err)
		}
		s.ExtraArgs = args
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitReady(readyTimeout); err != nil {
			t.Fatal(err)
		}
		c = client(t, s)
	}
	restart("--secrets-encryption=false")
	makeSecret(t, c, "second", plain)
	if !bytes.Contains(storedSecret(t, s, "default", "second"), []byte(plain)) {
		t.Error("with --secrets-encryption=false, a new Secret is not stored in plaintext")
	}
	if got := secretValue(t, c, "first"); got != plain {
		t.Errorf("with encryption off, the Secret encrypted before reads %q", got)
	}

	// On again: every Secret already there is encrypted, by the server
	// itself, soon after its start.
	restart()
	if err := harness.Eventually(2*time.Minute, func() error {
		for _, name := range []string{"first", "second"} {
			if under := storedUnder(storedSecret(t, s, "default", name)); under != key2 {
				return fmt.Errorf("Secret %s is under %s, want %s", name, under, key2)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"first", "second"} {
		if got := secretValue(t, c, name); got != plain {
			t.Errorf("Secret %s reads %q", name, got)
		}
	}
	if out, _, _ := s.Run("secrets-encrypt", "status", "--data-dir", s.DataDir); strings.Contains(out, "in plaintext") {
		t.Errorf("after encryption was turned on again, status:\n%s", out)
	}
}

// TestIntegrationSecretsEncryptBadInput: the commands say what is wrong
// where no server runs, and a server refuses an unknown provider.
func TestIntegrationSecretsEncryptBadInput(t *testing.T) {
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	s, err := harness.NewServer(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	out, code, _ := s.Run("secrets-encrypt", "status", "--data-dir", s.DataDir)
	if code == 0 || !strings.Contains(out, "no server runs with the data dir "+s.DataDir) {
		t.Errorf("status without a server: exit %d\n%s", code, out)
	}
	s.ExtraArgs = []string{"--secrets-encryption-provider", "aescbc"}
	out, code, _ = s.Run(s.Args()...)
	if code == 0 || !strings.Contains(out, `invalid --secrets-encryption-provider "aescbc": want one of secretbox, aesgcm`) {
		t.Errorf("an unknown provider: exit %d\n%s", code, out)
	}
}
