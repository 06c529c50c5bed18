// Command kasa-hold is kasa's CNI plugin, chained after the bridge in a
// node's network configuration when NetworkPolicy is enforced: it holds a
// new pod of a namespace with a policy until the network policy
// controller's rules name it (pkg/netguard). It is a program of its own,
// shipped in the bundle next to upstream's plugins, because the runtime
// runs a plugin for every pod sandbox it makes and removes: run as kasa's
// own binary, each call also ran every upstream package's initialisation,
// about 0.3 s of CPU, and a burst of 50 pods on two cores took minutes of
// it (docs/benchmarks.md, "Node").
package main

import (
	"fmt"
	"os"

	"github.com/kasa-io/kasa/pkg/netguard"
)

func main() {
	if err := netguard.CNIPlugin(os.Stdin, os.Stdout, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
