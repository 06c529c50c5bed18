package joinserver

import (
	"net/netip"
	"sync"
	"time"
)

// Limits on failed secret checks, per source address: a source may fail
// failBurst times in a row, then once per failEvery. A guess at a secret of
// 16 random characters then takes longer than the universe has existed;
// a machine that joins with a wrong token learns so at once, and a real
// join from another address never waits behind the guesses.
const (
	failBurst = 10
	failEvery = 6 * time.Second
	// maxSources bounds the addresses tracked at once (about 100 bytes each).
	maxSources = 10_000
	// sweepEvery is how often sources that have all their tries back are
	// forgotten.
	sweepEvery = time.Minute
)

// limiter counts the failed secret checks of each source address in a
// token bucket. A check takes a try before it starts, so that concurrent
// requests from one source cannot overdraw its bucket, and gives it back
// when the secret is accepted: only failures count.
type limiter struct {
	burst float64
	every time.Duration
	max   int
	now   func() time.Time

	mu      sync.Mutex
	sources map[netip.Addr]bucket
	swept   time.Time
}

type bucket struct {
	tries float64   // tries left at the time at
	at    time.Time // when tries was last changed
	// refusing: the source has been refused since its last allowed try,
	// so that a refusal is logged once per run of them.
	refusing bool
}

func newLimiter(now func() time.Time) *limiter {
	if now == nil {
		now = time.Now
	}
	return &limiter{burst: failBurst, every: failEvery, max: maxSources, now: now,
		sources: map[netip.Addr]bucket{}, swept: now()}
}

// refill returns b as it is at now.
func (l *limiter) refill(b bucket, now time.Time) bucket {
	if d := now.Sub(b.at); d > 0 {
		b.tries = min(l.burst, b.tries+float64(d)/float64(l.every))
		b.at = now
	}
	return b
}

// take takes a try of src. When src has none left it returns false, how
// long until it has one, and whether this is the first refusal of a run.
func (l *limiter) take(src netip.Addr) (ok bool, wait time.Duration, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.swept) >= sweepEvery {
		l.sweep(now)
	}
	b, found := l.sources[src]
	if !found {
		if len(l.sources) >= l.max && now.Sub(l.swept) >= l.every {
			l.sweep(now) // at most once per try earned, so that a flood stays cheap
		}
		if len(l.sources) >= l.max {
			// Still full of sources that failed lately: forget one of
			// them (map order is random), rather than refuse a source
			// never seen or grow without bound.
			for a := range l.sources {
				delete(l.sources, a)
				break
			}
		}
		b = bucket{tries: l.burst, at: now}
	}
	b = l.refill(b, now)
	if b.tries < 1 {
		first = !b.refusing
		b.refusing = true
		l.sources[src] = b
		return false, time.Duration((1 - b.tries) * float64(l.every)), first
	}
	b.tries--
	b.refusing = false
	l.sources[src] = b
	return true, 0, false
}

// refund gives back the try that a check of src took, when its secret
// was accepted.
func (l *limiter) refund(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.sources[src]
	if !ok {
		return // forgotten since: it has all its tries
	}
	b = l.refill(b, l.now())
	b.tries = min(l.burst, b.tries+1)
	if b.tries >= l.burst {
		delete(l.sources, src)
		return
	}
	l.sources[src] = b
}

// sweep forgets the sources that have all their tries back: they would
// start afresh anyway.
func (l *limiter) sweep(now time.Time) {
	for a, b := range l.sources {
		if l.refill(b, now).tries >= l.burst {
			delete(l.sources, a)
		}
	}
	l.swept = now
}

// tracked is the number of sources the limiter holds.
func (l *limiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sources)
}

// sourceOf is the address a request's tries are counted against: the TCP
// peer's, never a header the client writes (X-Forwarded-For). An IPv6
// source counts as its /64, which one machine usually holds whole.
func sourceOf(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{} // unknown sources share one bucket
	}
	a := ap.Addr().Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}
