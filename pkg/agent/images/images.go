// Package images imports image archives into containerd's k8s.io namespace,
// where the kubelet's pods find them, with the bundled upstream ctr.
package images

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Namespace is containerd's namespace for Kubernetes.
const Namespace = "k8s.io"

// Importer imports archives through ctr.
type Importer struct {
	// Ctr is the ctr binary; Socket containerd's socket.
	Ctr    string
	Socket string
}

// IsArchive reports whether a file name is one the images folder takes:
// docker or OCI archives, plain or compressed.
func IsArchive(name string) bool {
	for _, ext := range []string{".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// Import loads one archive and unpacks its images for the CRI snapshotter.
// The error carries ctr's own words and the file's name.
func (im Importer) Import(ctx context.Context, file string) error {
	cmd := exec.CommandContext(ctx, im.Ctr, "--address", im.Socket, "--namespace", Namespace,
		"images", "import", "--all-platforms", "--label", "io.cri-containerd.pinned=pinned", file)
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			msg = msg[i+1:]
		}
		return fmt.Errorf("import %s: %s (%w)", filepath.Base(file), msg, err)
	}
	return nil
}

// List returns the references of the images containerd holds.
func (im Importer) List(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, im.Ctr, "--address", im.Socket, "--namespace", Namespace,
		"images", "list", "--quiet").Output()
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	refs := strings.Fields(string(out))
	slices.Sort(refs)
	return refs, nil
}
