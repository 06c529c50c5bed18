// Package install holds the node installer, install.sh, which kasa up
// uploads to each host.
package install

import _ "embed"

// Script is install.sh.
//
//go:embed install.sh
var Script []byte
