package hostinfo

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDefaultRouteInterface(t *testing.T) {
	route := `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth1	0000A8C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
eth0	00000000	0100A8C0	0003	0	0	0	00000000	0	0	0
`
	f := filepath.Join(t.TempDir(), "route")
	if err := os.WriteFile(f, []byte(route), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := defaultRouteInterface(f); got != "eth0" {
		t.Fatalf("got %q, want eth0", got)
	}
	if got := defaultRouteInterface(filepath.Join(t.TempDir(), "none")); got != "" {
		t.Fatalf("got %q for a missing file", got)
	}
	if DefaultRouteIP(filepath.Join(t.TempDir(), "none")).IsValid() {
		t.Fatal("an address without a default route")
	}
}
