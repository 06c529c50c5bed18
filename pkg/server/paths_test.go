package server

import "testing"

// TestPathsJoin: the one folder addons.go names itself is datadir's.
func TestPathsJoin(t *testing.T) {
	p := NewPaths("/var/lib/kasa")
	if got, want := p.join("helm"), p.Helm(); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
