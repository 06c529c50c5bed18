package bootstrap_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kasa-io/kasa/pkg/bootstrap"
	"github.com/kasa-io/kasa/pkg/datastore"
)

const secret = "0123456789abcdef-secret"

func sample() bootstrap.Data {
	return bootstrap.Data{
		Files:    map[string][]byte{"tls/ca.crt": []byte("CA"), "tls/ca.key": []byte("KEY")},
		Settings: map[string]string{"cluster-cidr": "10.42.0.0/16", "disable": "traefik"},
	}
}

func TestSealOpen(t *testing.T) {
	blob, err := bootstrap.Seal(secret, sample())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(blob), "KEY") || strings.Contains(string(blob), "10.42") {
		t.Fatalf("the sealed data shows its content: %s", blob)
	}
	d, err := bootstrap.Open(secret, blob)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Files["tls/ca.key"]) != "KEY" || d.Settings["disable"] != "traefik" {
		t.Fatalf("opened %+v", d)
	}
	if _, err := bootstrap.Open("another-secret-0123456789", blob); !errors.Is(err, bootstrap.ErrWrongToken) {
		t.Fatalf("another secret: %v, want ErrWrongToken", err)
	}
	// A changed byte is refused as well, not read as other data.
	tampered := []byte(strings.Replace(string(blob), `"box":"`, `"box":"A`, 1))
	if _, err := bootstrap.Open(secret, tampered); err == nil {
		t.Fatal("tampered data opened")
	}
	again, _ := bootstrap.Seal(secret, sample())
	if string(again) == string(blob) {
		t.Fatal("two seals of the same data are the same bytes: salt or nonce is not random")
	}
}

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	d := sample()
	if err := d.Install(dir, nil); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "tls", "ca.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v %v, want mode 0600", st, err)
	}
	// Installing again changes nothing; a file of another cluster is kept
	// and named.
	if err := d.Install(dir, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls", "ca.crt"), []byte("OTHER"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = d.Install(dir, nil)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "tls", "ca.crt")) {
		t.Fatalf("a differing ca.crt: %v, want an error naming it", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "tls", "ca.crt")); string(b) != "OTHER" {
		t.Fatal("the differing file was replaced")
	}
}

func TestCheckSettings(t *testing.T) {
	d := sample()
	if err := d.CheckSettings(map[string]string{"cluster-cidr": "10.42.0.0/16", "disable": "traefik"}); err != nil {
		t.Fatal(err)
	}
	err := d.CheckSettings(map[string]string{"cluster-cidr": "10.44.0.0/16", "disable": "traefik"})
	if err == nil || !strings.Contains(err.Error(), `--cluster-cidr is "10.44.0.0/16" here but "10.42.0.0/16" in the cluster`) {
		t.Fatalf("a differing cluster CIDR: %v", err)
	}
	if strings.Contains(err.Error(), "--disable") {
		t.Fatalf("a setting that agrees is named: %v", err)
	}
}

// TestLoadSave runs against a real kine on SQLite.
func TestLoadSave(t *testing.T) {
	k := &datastore.Kine{DBDir: t.TempDir()}
	ctx := context.Background()
	if err := k.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	kv, err := datastore.NewKV(k.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()

	asked := false
	d, err := bootstrap.Load(ctx, kv, func() (string, error) { asked = true; return secret, nil })
	if err != nil || d != nil || asked {
		t.Fatalf("an empty datastore: %v %v (secret asked: %v), want no data and no secret asked", d, err, asked)
	}
	if err := bootstrap.Save(ctx, kv, secret, sample()); err != nil {
		t.Fatal(err)
	}
	if err := bootstrap.Save(ctx, kv, secret, sample()); !errors.Is(err, bootstrap.ErrRace) {
		t.Fatalf("a second save: %v, want ErrRace", err)
	}
	d, err = bootstrap.Load(ctx, kv, func() (string, error) { return secret, nil })
	if err != nil || d == nil || string(d.Files["tls/ca.crt"]) != "CA" {
		t.Fatalf("load: %+v %v", d, err)
	}
	if _, err := bootstrap.Load(ctx, kv, func() (string, error) { return "another-secret-0123456789", nil }); !errors.Is(err, bootstrap.ErrWrongToken) {
		t.Fatalf("load with another secret: %v, want ErrWrongToken", err)
	}
}

// memKV is a datastore in memory with revisions, as kine keeps them.
type memKV struct {
	values map[string][]byte
	revs   map[string]int64
	rev    int64
}

func (m *memKV) Get(_ context.Context, key string) ([]byte, bool, error) {
	v, ok := m.values[key]
	return v, ok, nil
}

func (m *memKV) Create(_ context.Context, key string, value []byte) (bool, error) {
	if _, ok := m.values[key]; ok {
		return false, nil
	}
	return true, m.Put(context.Background(), key, value)
}

func (m *memKV) GetRevision(_ context.Context, key string) ([]byte, int64, bool, error) {
	v, ok := m.values[key]
	return v, m.revs[key], ok, nil
}

func (m *memKV) Update(_ context.Context, key string, value []byte, rev int64) (bool, error) {
	if m.revs[key] != rev {
		return false, nil
	}
	return true, m.Put(context.Background(), key, value)
}

func (m *memKV) Put(_ context.Context, key string, value []byte) error {
	m.rev++
	m.values[key], m.revs[key] = value, m.rev
	return nil
}

// TestReseal: after a rotation of the server token, the data opens with
// the new secret and holds the new token file; the copy under PreviousKey
// opens with the old secret only and holds the new token too, for the
// servers that were down. A second Reseal (another server did it) changes
// nothing; a third secret opens neither.
func TestReseal(t *testing.T) {
	ctx := context.Background()
	kv := &memKV{values: map[string][]byte{}, revs: map[string]int64{}}
	if err := bootstrap.Save(ctx, kv, secret, sample()); err != nil {
		t.Fatal(err)
	}
	const newSecret = "fedcba9876543210-new-secret"
	newToken := []byte("K10abc::server:" + newSecret + "\n")
	if err := bootstrap.Reseal(ctx, kv, secret, newSecret, newToken); err != nil {
		t.Fatal(err)
	}
	d, err := bootstrap.Open(newSecret, kv.values[bootstrap.Key])
	if err != nil || string(d.Files["token"]) != string(newToken) || string(d.Files["tls/ca.key"]) != "KEY" {
		t.Fatalf("the resealed data: %v", err)
	}
	if _, err := bootstrap.Open(secret, kv.values[bootstrap.Key]); !errors.Is(err, bootstrap.ErrWrongToken) {
		t.Errorf("the old secret still opens the data: %v", err)
	}
	prev, err := bootstrap.Open(secret, kv.values[bootstrap.PreviousKey])
	if err != nil || string(prev.Files["token"]) != string(newToken) {
		t.Errorf("the copy for the old secret: %v", err)
	}
	rev := kv.rev
	if err := bootstrap.Reseal(ctx, kv, secret, newSecret, newToken); err != nil || kv.rev != rev {
		t.Errorf("a second Reseal: %v, %d writes", err, kv.rev-rev)
	}
	if err := bootstrap.Reseal(ctx, kv, "a-third-secret-0123456789", "x-0123456789abcdef", newToken); !errors.Is(err, bootstrap.ErrWrongToken) {
		t.Errorf("a Reseal from a secret that is not the data's: %v", err)
	}
}
