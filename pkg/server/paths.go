package server

import "github.com/kasa-io/kasa/pkg/datadir"

// Paths is <data-dir>/server, laid out by datadir.Server.
type Paths struct{ datadir.Server }

// NewPaths returns the server folder of dataDir.
func NewPaths(dataDir string) Paths { return Paths{datadir.New(dataDir).Server()} }
