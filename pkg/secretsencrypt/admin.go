package secretsencrypt

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
)

// Cluster is what the admin commands work on, on a server: its encryption
// configuration file, the datastore's stored Secrets (through kine's
// socket) and the API (with the admin identity).
type Cluster struct {
	File   string
	Stored Stored
	Client kubernetes.Interface
	// Shared reports whether servers share the datastore: each has its own
	// file then, which rotate-keys cannot change yet.
	Shared bool
	Now    func() time.Time
	// Wait is how long each step waits for the API server: to load a
	// changed file, to re-write the Secrets.
	Wait time.Duration
	Out  io.Writer
}

// Status is what `kasa secrets-encrypt status` prints.
type Status struct {
	Config Config
	// Exists is false when encryption was never on: no file.
	Exists bool
	// Loaded reports whether the API server runs with the file as it is.
	Loaded bool
	// Stored counts the Secrets by what they are stored under.
	Stored map[string]int
}

// Status reads the file, the API server's loaded configuration and the
// stored Secrets.
func (c Cluster) Status(ctx context.Context) (Status, error) {
	var st Status
	var err error
	st.Config, st.Exists, err = Load(c.File)
	if err != nil {
		return st, err
	}
	if st.Exists {
		if st.Loaded, err = c.loaded(ctx); err != nil {
			return st, err
		}
	}
	st.Stored, _, err = Census(ctx, c.Stored, st.Config.WriteID())
	return st, err
}

// Print writes st for people.
func (st Status) Print(w io.Writer) {
	switch {
	case !st.Exists:
		fmt.Fprintln(w, "Encryption: off (--secrets-encryption=false); Secrets are stored in plaintext")
	case st.Config.Write == nil:
		fmt.Fprintln(w, "Encryption: off (--secrets-encryption=false); older keys still read what they encrypted")
	default:
		fmt.Fprintf(w, "Encryption: on, %s writes\n", st.Config.WriteID())
	}
	for _, k := range st.Config.Read {
		fmt.Fprintf(w, "Key that reads: %s\n", k.ID())
	}
	if st.Exists {
		loaded := "yes"
		if !st.Loaded {
			loaded = "not yet (it reads the file every few seconds)"
		}
		fmt.Fprintf(w, "The API server runs with this configuration: %s\n", loaded)
	}
	if len(st.Stored) == 0 {
		fmt.Fprintln(w, "Secrets: none")
	}
	for _, under := range slices.Sorted(maps.Keys(st.Stored)) {
		what := "under " + under
		if under == Identity {
			what = "in plaintext"
		}
		fmt.Fprintf(w, "Secrets %s: %d\n", what, st.Stored[under])
	}
}

// RotateKeys gives the cluster a new key: the file gets a new write key
// with the old ones still reading; once the API server runs with it,
// every Secret is re-written under the new key; once none is left under
// an old key, the old keys are dropped. A failed step leaves every key
// that a Secret may need, and a second run goes on from there.
func (c Cluster) RotateKeys(ctx context.Context) (Config, error) {
	if c.Shared {
		return Config{}, errors.New("this server shares its datastore with other servers, each with its own copy of the keys, which rotate-keys cannot change together yet: the keys stay as they are")
	}
	old, exists, err := Load(c.File)
	if err != nil {
		return Config{}, err
	}
	if !exists || old.Write == nil {
		return Config{}, errors.New("secrets are written in plaintext here (--secrets-encryption=false): start the server with encryption on before rotating keys")
	}
	next, err := old.Rotated(c.Now())
	if err != nil {
		return Config{}, err
	}
	if err := c.apply(ctx, next); err != nil {
		return Config{}, err
	}
	fmt.Fprintf(c.Out, "new key %s writes; the API server runs with it\n", next.WriteID())
	rewritten, err := c.rewriteAll(ctx, next.WriteID())
	if err != nil {
		return Config{}, err
	}
	fmt.Fprintf(c.Out, "%d Secrets re-written under %s\n", rewritten, next.WriteID())
	final := Config{Write: next.Write}
	if err := c.apply(ctx, final); err != nil {
		return Config{}, err
	}
	for _, k := range next.Read {
		fmt.Fprintf(c.Out, "key %s dropped\n", k.ID())
	}
	return final, nil
}

// apply writes cfg and waits until the API server runs with it.
func (c Cluster) apply(ctx context.Context, cfg Config) error {
	if err := Save(c.File, cfg); err != nil {
		return err
	}
	deadline := time.Now().Add(c.Wait)
	for {
		ok, err := c.loaded(ctx)
		if err == nil && ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("it still runs with the file as it was")
			}
			return fmt.Errorf("the API server did not load %s within %s (%w): is the server running? Every key a Secret needs is in the file; run the command again", c.File, c.Wait, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// rewriteAll re-writes Secrets until none is left under another key.
func (c Cluster) rewriteAll(ctx context.Context, writeID string) (int, error) {
	deadline := time.Now().Add(c.Wait)
	total := 0
	for {
		rewritten, remaining, err := Rewrite(ctx, c.Stored, c.Client, writeID)
		total += rewritten
		if err == nil && remaining == 0 {
			return total, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("%d are still stored under other keys", remaining)
			}
			return total, fmt.Errorf("re-writing the Secrets under %s: %w; the old keys stay, run the command again", writeID, err)
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// loaded reports whether the API server runs with the file as it is now:
// it publishes the hash of the file it loaded in its metrics.
func (c Cluster) loaded(ctx context.Context) (bool, error) {
	b, err := os.ReadFile(c.File)
	if err != nil {
		return false, err
	}
	want := fmt.Sprintf(`hash="sha256:%x"`, sha256.Sum256(b))
	metrics, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return false, fmt.Errorf("read the API server's metrics: %w", err)
	}
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, "apiserver_encryption_config_controller_last_config_info{") && strings.Contains(line, want) {
			return true, nil
		}
	}
	return false, nil
}
