package up

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

// hostArch is Go's name for the architecture `uname -m` printed on a host.
func hostArch(machine string) (string, error) {
	switch strings.TrimSpace(machine) {
	case "x86_64", "amd64":
		return "amd64", nil
	case "aarch64", "arm64":
		return "arm64", nil
	}
	return "", fmt.Errorf("the host's architecture is %q: kasa is built for amd64 (x86_64) and arm64 (aarch64)", strings.TrimSpace(machine))
}

// releaseName is how a release names its artifact for one architecture
// (scripts/release.sh): kasa-amd64, kasa-arm64.
var releaseName = regexp.MustCompile(`^kasa-(amd64|arm64)$`)

// artifacts picks and hashes the file uploaded to a host of each
// architecture. From a release's artifact (kasa-ARCH), a host of another
// architecture takes its sibling in the same folder, as make release lays
// them out; a program built by make serves only hosts of its own.
type artifacts struct {
	binary   string
	stateDir string
	mu       sync.Mutex
	sums     map[string]string
}

// For returns the file for arch, and its sha256.
func (a *artifacts) For(arch string) (string, string, error) {
	file := a.binary
	if m := releaseName.FindStringSubmatch(filepath.Base(a.binary)); m != nil {
		if m[1] != arch {
			file = filepath.Join(filepath.Dir(a.binary), "kasa-"+arch)
			if _, err := os.Stat(file); err != nil {
				return "", "", fmt.Errorf("the host is %s, and %s has no kasa-%s beside it: make release writes both architectures", arch, a.binary, arch)
			}
		}
	} else if arch != runtime.GOARCH {
		return "", "", fmt.Errorf("the host is %s and %s is kasa for %s: run kasa up from a release (make release VERSION=...), whose folder holds kasa-%s", arch, a.binary, runtime.GOARCH, arch)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if sum, ok := a.sums[file]; ok {
		return file, sum, nil
	}
	var sum string
	var err error
	if a.stateDir == "" {
		sum, err = fileutil.SHA256(file)
	} else {
		sum, err = cachedSHA256(filepath.Join(a.stateDir, "sums.json"), file)
	}
	if err != nil {
		return "", "", fmt.Errorf("the kasa binary to upload: %w", err)
	}
	if a.sums == nil {
		a.sums = map[string]string{}
	}
	a.sums[file] = sum
	return file, sum, nil
}

// sumEntry is what cachedSHA256 keeps of one file.
type sumEntry struct {
	Size  int64  `json:"size"`
	MTime int64  `json:"mtimeNanos"`
	Inode uint64 `json:"inode"`
	Sum   string `json:"sha256"`
}

// cachedSHA256 is file's sha256, read from cache (a JSON file of absolute
// paths) while the file's size, modification time and inode are those it
// had when hashed; otherwise it hashes the file and records it. A cache
// that cannot be read or written only costs the hashing.
func cachedSHA256(cache, file string) (string, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	now := sumEntry{Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		now.Inode = st.Ino
	}
	entries := map[string]sumEntry{}
	if b, err := os.ReadFile(cache); err == nil {
		_ = json.Unmarshal(b, &entries)
	}
	if e, ok := entries[abs]; ok && e.Sum != "" && e.Size == now.Size && e.MTime == now.MTime && e.Inode == now.Inode {
		return e.Sum, nil
	}
	sum, err := fileutil.SHA256(abs)
	if err != nil {
		return "", err
	}
	now.Sum = sum
	entries[abs] = now
	// Files that are gone are forgotten.
	for p := range entries {
		if _, err := os.Stat(p); err != nil {
			delete(entries, p)
		}
	}
	if b, err := json.MarshalIndent(entries, "", "  "); err == nil {
		_ = fileutil.WriteFile(cache, b, 0o600)
	}
	return sum, nil
}
