// Package version holds the build stamps of the kasa binary. The Makefile sets
// them with -ldflags -X; an unstamped build says so plainly.
package version

import (
	"fmt"
	"runtime"
)

// Stamped at link time by the Makefile.
var (
	// Version is kasa's own version, from git describe.
	Version = "v0.0.0-dev"
	// GitCommit is the commit kasa was built from.
	GitCommit = "unknown"
	// Kubernetes is the version of the embedded upstream Kubernetes components.
	Kubernetes = "unknown"
	// BuildDate is the UTC time of the build in RFC 3339 form.
	BuildDate = "unknown"
)

// String is what `kasa --version` prints.
func String() string {
	return fmt.Sprintf("kasa version %s (commit %s, built %s)\nkubernetes %s\ngo %s %s/%s",
		Version, GitCommit, BuildDate, Kubernetes, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
