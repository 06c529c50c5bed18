package sysctl

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"testing"
)

// TestSaveRestore: the first Save records the settings as they are (less
// those the kernel lacks), a later one keeps that record; Restore writes
// every recorded value back and removes the record, and keeps it when a
// value cannot be written.
func TestSaveRestore(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent", "sysctl-before.json")
	host := map[string]string{"net/ipv4/ip_forward": "0\n", "vm/panic_on_oom": "1\n"}
	read := func(k string) (string, error) {
		v, ok := host[k]
		if !ok {
			return "", fs.ErrNotExist
		}
		return v, nil
	}
	keys := []string{"net/ipv4/ip_forward", "vm/panic_on_oom", "net/bridge/bridge-nf-call-iptables"}
	if err := Save(file, keys, read); err != nil {
		t.Fatal(err)
	}
	// kasa changes them; a second start must not record its own values.
	host["net/ipv4/ip_forward"], host["vm/panic_on_oom"] = "1\n", "0\n"
	if err := Save(file, keys, read); err != nil {
		t.Fatal(err)
	}

	failing := errors.New("read-only")
	if err := Restore(file, func(string, string) error { return failing }); !errors.Is(err, failing) {
		t.Fatalf("a failed write: got %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the record went after a failed restore: %v", err)
	}

	written := map[string]string{}
	if err := Restore(file, func(k, v string) error { written[k] = v; return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"net/ipv4/ip_forward": "0", "vm/panic_on_oom": "1"}
	if !maps.Equal(written, want) {
		t.Errorf("restored %v, want %v", written, want)
	}
	if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the record is still there: %v", err)
	}
	if err := Restore(file, func(string, string) error { return failing }); err != nil {
		t.Errorf("nothing recorded: got %v", err)
	}
}
