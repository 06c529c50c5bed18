// Package airgap carries the versions of the parts that kasa bundles beside
// its own program (versions.env, which scripts/build-bundle.sh builds from),
// so that `kasa version` reports what the bundle was built at.
package airgap

import _ "embed" // versions.env

// VersionsEnv is versions.env as the build read it.
//
//go:embed versions.env
var VersionsEnv string
