package joinserver

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for the limiter.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestLimiter(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := newLimiter(c.now)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := range failBurst {
		if ok, _, _ := l.take(a); !ok {
			t.Fatalf("try %d of %d refused", i+1, failBurst)
		}
	}
	ok, wait, first := l.take(a)
	if ok || wait != failEvery || !first {
		t.Fatalf("over the limit: ok=%v wait=%s first=%v; want refused for %s, first", ok, wait, first, failEvery)
	}
	if _, _, first := l.take(a); first {
		t.Error("the second refusal in a row is reported as the first")
	}
	// Another address is not touched.
	if ok, _, _ := l.take(b); !ok {
		t.Fatal("another address refused")
	}
	// One try comes back per failEvery.
	c.add(failEvery / 2)
	if ok, wait, _ := l.take(a); ok || wait != failEvery/2 {
		t.Errorf("half-way: ok=%v wait=%s", ok, wait)
	}
	c.add(failEvery / 2)
	if ok, _, _ := l.take(a); !ok {
		t.Error("no try back after failEvery")
	}
	if ok, _, first := l.take(a); ok || !first {
		t.Errorf("after the try back: ok=%v first=%v; want a new run of refusals", ok, first)
	}
	// An accepted secret gives its try back.
	c.add(failEvery)
	if ok, _, _ := l.take(a); !ok {
		t.Fatal("no try back")
	}
	l.refund(a)
	if ok, _, _ := l.take(a); !ok {
		t.Error("a refunded try is still taken")
	}
	// Sources with all their tries back are forgotten.
	if n := l.tracked(); n != 2 {
		t.Fatalf("tracked %d sources, want 2", n)
	}
	c.add(failBurst * failEvery)
	l.take(netip.MustParseAddr("192.0.2.3"))
	if n := l.tracked(); n != 1 {
		t.Errorf("tracked %d sources after they were idle, want 1", n)
	}
}

// TestLimiterBounded: a flood of addresses neither grows the limiter past
// maxSources nor locks out a new address.
func TestLimiterBounded(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := newLimiter(c.now)
	for i := range 3 * maxSources {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		for range failBurst + 1 {
			l.take(a)
		}
	}
	if n := l.tracked(); n > maxSources {
		t.Fatalf("tracking %d sources, more than %d", n, maxSources)
	}
	if ok, _, _ := l.take(netip.MustParseAddr("192.0.2.9")); !ok {
		t.Error("a new address refused while the limiter is full")
	}
	c.add(failBurst * failEvery)
	c.add(sweepEvery)
	l.take(netip.MustParseAddr("192.0.2.9"))
	if n := l.tracked(); n != 1 {
		t.Errorf("tracking %d sources after all were idle, want 1", n)
	}
}

func TestSourceOf(t *testing.T) {
	for _, tt := range []struct{ remote, want string }{
		{"192.0.2.1:40000", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:40000", "192.0.2.1"},
		{"[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::"},
		{"[2001:db8:1:2:bbbb::7]:443", "2001:db8:1:2::"},
		{"[fe80::1%eth0]:443", "fe80::"},
		{"not an address", "invalid IP"},
	} {
		if got := sourceOf(tt.remote).String(); got != tt.want {
			t.Errorf("sourceOf(%q) = %s, want %s", tt.remote, got, tt.want)
		}
	}
}
