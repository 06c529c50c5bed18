package memory

import "testing"

// TestGCPercentFor: a large live heap is collected at 50% growth, a small
// one at 100%, and between the bounds the setting stays as it is.
func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live    uint64
		current int
		want    int
	}{
		{100 << 20, 100, 100},
		{100 << 20, 50, 100},
		{600 << 20, 100, 50},
		{512 << 20, 100, 50},
		{450 << 20, 50, 50},
		{450 << 20, 100, 100},
		{383 << 20, 50, 100},
	} {
		if got := gcPercentFor(c.live, c.current); got != c.want {
			t.Errorf("live %d MiB at GOGC %d: %d, want %d", c.live>>20, c.current, got, c.want)
		}
	}
}
