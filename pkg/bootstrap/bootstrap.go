// Package bootstrap keeps a cluster's bootstrap data in its datastore, so
// that every server of the cluster runs with the same: the certificate
// authorities and their keys, the service-account key and the cluster-wide
// settings. The data is sealed with a key derived from the server token's
// secret (PBKDF2-SHA256, then AES-256-GCM): the datastore alone gives none
// of it away, and a server with another token cannot open it.
//
// The first server of a cluster saves the data; every later one loads it
// before it makes any certificate, so a cluster never gets a second CA.
package bootstrap

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

// Key is where the datastore keeps the bootstrap data: one per cluster,
// whatever the token, so that a wrong token is refused rather than taken
// for a new cluster.
const Key = "/kasa/bootstrap"

// PreviousKey keeps the bootstrap data sealed with the server token's
// secret before its last rotation: a server that was down during the
// rotation opens it with the secret it has, and takes the new token from
// it.
const PreviousKey = "/kasa/bootstrap-previous"

// Iterations of PBKDF2-SHA256 that turn the secret into the sealing key.
const Iterations = 200_000

// ErrWrongToken is returned when the token's secret cannot open the data.
var ErrWrongToken = errors.New("the bootstrap data in the datastore is sealed with another server token")

// Data is what every server of a cluster shares.
type Data struct {
	// Files are the server folder's shared files, by path relative to it
	// (tls/ca.crt, tls/ca.key, ...).
	Files map[string][]byte `json:"files"`
	// Settings are the cluster-wide settings, by flag name.
	Settings map[string]string `json:"settings"`
}

// sealed is the stored form.
type sealed struct {
	Version int    `json:"version"`
	Salt    []byte `json:"salt"`
	Nonce   []byte `json:"nonce"`
	Box     []byte `json:"box"`
}

func aead(secret string, salt []byte) (cipher.AEAD, error) {
	key, err := pbkdf2.Key(sha256.New, secret, salt, Iterations, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts d with a key derived from secret.
func Seal(secret string, d Data) ([]byte, error) {
	plain, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	s := sealed{Version: 1, Salt: make([]byte, 16)}
	if _, err := rand.Read(s.Salt); err != nil {
		return nil, err
	}
	gcm, err := aead(secret, s.Salt)
	if err != nil {
		return nil, err
	}
	s.Nonce = make([]byte, gcm.NonceSize())
	if _, err := rand.Read(s.Nonce); err != nil {
		return nil, err
	}
	s.Box = gcm.Seal(nil, s.Nonce, plain, []byte(Key))
	return json.Marshal(s)
}

// Open decrypts what Seal made; ErrWrongToken when secret is not the one
// it was sealed with.
func Open(secret string, blob []byte) (Data, error) {
	var s sealed
	if err := json.Unmarshal(blob, &s); err != nil {
		return Data{}, fmt.Errorf("the bootstrap data in the datastore is damaged: %w", err)
	}
	if s.Version != 1 {
		return Data{}, fmt.Errorf("the bootstrap data in the datastore has version %d, which this kasa does not know: upgrade kasa", s.Version)
	}
	gcm, err := aead(secret, s.Salt)
	if err != nil {
		return Data{}, err
	}
	if len(s.Nonce) != gcm.NonceSize() {
		return Data{}, errors.New("the bootstrap data in the datastore is damaged: bad nonce")
	}
	plain, err := gcm.Open(nil, s.Nonce, s.Box, []byte(Key))
	if err != nil {
		return Data{}, ErrWrongToken
	}
	var d Data
	if err := json.Unmarshal(plain, &d); err != nil {
		return Data{}, fmt.Errorf("the bootstrap data in the datastore is damaged: %w", err)
	}
	return d, nil
}

// KV is the datastore as bootstrap needs it.
type KV interface {
	// Get returns the value of key, and false when there is none.
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Create stores value under key unless key exists; false when it did.
	Create(ctx context.Context, key string, value []byte) (bool, error)
}

// ErrRace is returned by Save when another server saved its bootstrap data
// first.
var ErrRace = errors.New("another server bootstrapped this cluster at the same time; start this server again and it will join that cluster")

// Load returns the cluster's bootstrap data, or nil when the datastore has
// none yet (the first server). secret is asked only when there is data to
// open: a first server may not have its token yet.
func Load(ctx context.Context, kv KV, secret func() (string, error)) (*Data, error) {
	blob, ok, err := kv.Get(ctx, Key)
	if err != nil || !ok {
		return nil, err
	}
	sec, err := secret()
	if err != nil {
		return nil, err
	}
	d, err := Open(sec, blob)
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// Save stores d as the cluster's bootstrap data; ErrRace when another
// server did first.
func Save(ctx context.Context, kv KV, secret string, d Data) error {
	blob, err := Seal(secret, d)
	if err != nil {
		return err
	}
	created, err := kv.Create(ctx, Key, blob)
	if err != nil {
		return err
	}
	if !created {
		return ErrRace
	}
	return nil
}

// ResealKV is the datastore as Reseal needs it.
type ResealKV interface {
	GetRevision(ctx context.Context, key string) ([]byte, int64, bool, error)
	Update(ctx context.Context, key string, value []byte, rev int64) (bool, error)
	Put(ctx context.Context, key string, value []byte) error
}

// Reseal seals the cluster's bootstrap data with newSecret after the
// server token was rotated from oldSecret, with the new token file
// (tokenFile) in it, and keeps a copy sealed with oldSecret under
// PreviousKey for the servers that still have the old token. It does
// nothing when the data is sealed with newSecret already (another server
// did it).
func Reseal(ctx context.Context, kv ResealKV, oldSecret, newSecret string, tokenFile []byte) error {
	return update(ctx, kv, func(blob []byte) ([]byte, error) {
		d, err := Open(oldSecret, blob)
		if errors.Is(err, ErrWrongToken) {
			if _, err := Open(newSecret, blob); err == nil {
				return nil, nil
			}
		}
		if err != nil {
			return nil, err
		}
		d.Files["token"] = tokenFile
		previous, err := Seal(oldSecret, d)
		if err != nil {
			return nil, err
		}
		// The copy first: a server with the old token finds the new one
		// as soon as the data is sealed with it.
		if err := kv.Put(ctx, PreviousKey, previous); err != nil {
			return nil, err
		}
		return Seal(newSecret, d)
	})
}

// Update changes the cluster's bootstrap data with change and seals it
// again with secret; it tries again when another server wrote it in
// between.
func Update(ctx context.Context, kv ResealKV, secret string, change func(*Data)) error {
	return update(ctx, kv, func(blob []byte) ([]byte, error) {
		d, err := Open(secret, blob)
		if err != nil {
			return nil, err
		}
		change(&d)
		return Seal(secret, d)
	})
}

// update replaces the bootstrap data with what next makes of it (nothing
// when next returns nil), if no other write came in between; else it
// tries again.
func update(ctx context.Context, kv ResealKV, next func(blob []byte) ([]byte, error)) error {
	for range 5 {
		blob, rev, ok, err := kv.GetRevision(ctx, Key)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("the datastore holds no bootstrap data")
		}
		value, err := next(blob)
		if err != nil || value == nil {
			return err
		}
		if done, err := kv.Update(ctx, Key, value, rev); err != nil || done {
			return err
		}
	}
	return errors.New("the bootstrap data kept changing while it was written; the next try goes on")
}

// ReadFiles reads the named files of dir into a Data's Files.
func ReadFiles(dir string, names []string) (map[string][]byte, error) {
	files := make(map[string][]byte, len(names))
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		files[n] = b
	}
	return files, nil
}

// Install writes d's files into dir, 0600 (they hold keys), where they are
// missing. A file that is there and differs is not replaced, unless
// replace says it may be (a CA that a rotation replaced): the error names
// it, since it belongs to another cluster (a server that was started on
// its own before it was pointed at this datastore).
func (d Data) Install(dir string, replace func(name string, have []byte) bool) error {
	for _, n := range slices.Sorted(maps.Keys(d.Files)) {
		path := filepath.Join(dir, n)
		have, err := os.ReadFile(path)
		switch {
		case err == nil && bytes.Equal(have, d.Files[n]):
			continue
		case err == nil && replace != nil && replace(n, have):
		case err == nil:
			return fmt.Errorf("%s is not the cluster's (the datastore holds another): this data dir belongs to another cluster; give this server a new --data-dir, or move the file away to take the cluster's", path)
		case !errors.Is(err, os.ErrNotExist):
			return err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := fileutil.WriteFile(path, d.Files[n], 0o600); err != nil {
			return err
		}
	}
	return nil
}

// CheckSettings compares this server's cluster-wide settings with the
// cluster's, and names every one that differs.
func (d Data) CheckSettings(mine map[string]string) error {
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(d.Settings)) {
		if mine[k] != d.Settings[k] {
			diffs = append(diffs, fmt.Sprintf("--%s is %q here but %q in the cluster", k, mine[k], d.Settings[k]))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("this server's settings differ from the cluster's: %s; every server of a cluster needs the same", strings.Join(diffs, "; "))
}
