package server

import (
	"path/filepath"

	"github.com/kasa-io/kasa/pkg/datadir"
)

// Paths is <data-dir>/server, laid out by datadir.Server.
type Paths struct{ datadir.Server }

// NewPaths returns the server folder of dataDir.
func NewPaths(dataDir string) Paths { return Paths{datadir.New(dataDir).Server()} }

// join is how addons.go names the helm controller's folder, p.join("helm"),
// until it asks p.Helm() (TestPathsJoin holds the two equal).
func (p Paths) join(folder string) string { return filepath.Join(p.Root, folder) }
