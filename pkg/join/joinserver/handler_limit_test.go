package joinserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/join/joinserver"
	"github.com/kasa-io/kasa/pkg/join/jointest"
)

// limitedHandler is a join handler whose store counts the reads of the
// token hashes: each is followed by hashing.
func limitedHandler(t *testing.T) (*joinserver.Handler, http.Handler, *atomic.Int64, *bytes.Buffer) {
	t.Helper()
	cs := fake.NewClientset()
	var reads atomic.Int64
	cs.PrependReactor("get", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.GetAction).GetName() == joinserver.TokenSecret {
			reads.Add(1)
		}
		return false, nil, nil
	})
	s := &joinserver.Store{Client: cs}
	if _, err := s.EnsureTokens(context.Background(), "server-secret-0123456789", "agent-secret-0123456789"); err != nil {
		t.Fatal(err)
	}
	reads.Store(0)
	cas := jointest.NewCAs(t)
	var logs bytes.Buffer
	h := jointest.NewHandler(cas, s, slog.New(slog.NewTextHandler(&logs, nil)))
	return h, h.Wrap(http.NotFoundHandler()), &reads, &logs
}

// joinFrom posts a join of node from the source address remote with the
// short token secret, straight to the handler.
func joinFrom(t *testing.T, hh http.Handler, remote, node, secret string) *httptest.ResponseRecorder {
	t.Helper()
	req, _ := jointest.Request(t, node)
	return joinWith(hh, remote, secret, req)
}

func joinWith(hh http.Handler, remote, secret string, req join.Request) *httptest.ResponseRecorder {
	body, _ := json.Marshal(req)
	r := httptest.NewRequest(http.MethodPost, join.JoinPath, bytes.NewReader(body))
	r.RemoteAddr = remote
	r.SetBasicAuth("", secret)
	w := httptest.NewRecorder()
	hh.ServeHTTP(w, r)
	return w
}

// TestJoinRateLimit: wrong joins from one address are refused with 429
// once over the limit, before any hashing and without waiting for a
// check; other addresses join as before.
func TestJoinRateLimit(t *testing.T) {
	h, hh, reads, logs := limitedHandler(t)
	const attacker, other = "192.0.2.66:40000", "192.0.2.10:40000"
	for i := range joinserver.FailBurst {
		if w := joinFrom(t, hh, attacker, "n", "wrong-secret-0123456789"); w.Code != http.StatusUnauthorized {
			t.Fatalf("wrong join %d: %d %s", i+1, w.Code, w.Body)
		}
	}
	if n := reads.Load(); n != joinserver.FailBurst {
		t.Fatalf("%d checks for %d joins", n, joinserver.FailBurst)
	}
	for range 20 {
		w := joinFrom(t, hh, attacker, "n", "wrong-secret-0123456789")
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "6" || !strings.Contains(w.Body.String(), "too many failed joins from 192.0.2.66; try again in 6 s") {
			t.Fatalf("over the limit: %d, Retry-After %q, %s", w.Code, w.Header().Get("Retry-After"), w.Body)
		}
	}
	if n := reads.Load(); n != joinserver.FailBurst {
		t.Errorf("the refused joins were checked: %d checks", n)
	}
	if n := strings.Count(logs.String(), "too many failed attempts"); n != 1 {
		t.Errorf("%d log lines for one run of refusals, want 1:\n%s", n, logs)
	}
	// The right secret from the attacker's address is refused too: the
	// limit is per address.
	if w := joinFrom(t, hh, attacker, "n", "agent-secret-0123456789"); w.Code != http.StatusTooManyRequests {
		t.Errorf("the right secret from a limited address: %d", w.Code)
	}

	// A limited address is refused without waiting for a check, while
	// other addresses wait for their turn.
	joinserver.Checks(h) <- struct{}{}
	joinserver.Checks(h) <- struct{}{}
	done := make(chan int, 1)
	go func() { done <- joinFrom(t, hh, attacker, "n", "wrong-secret-0123456789").Code }()
	select {
	case code := <-done:
		if code != http.StatusTooManyRequests {
			t.Errorf("with the checks busy: %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a limited address waited for a check")
	}
	go func() { done <- joinFrom(t, hh, other, "n", "wrong-secret-0123456789").Code }()
	select {
	case code := <-done:
		t.Fatalf("a join was answered (%d) while both checks were taken", code)
	case <-time.After(200 * time.Millisecond):
	}
	<-joinserver.Checks(h)
	<-joinserver.Checks(h)
	if code := <-done; code != http.StatusUnauthorized {
		t.Errorf("the waiting join: %d", code)
	}

	// Many concurrent wrong joins from a new address cannot overdraw its
	// tries, and a real join from another address goes through meanwhile.
	const flood = "192.0.2.67:40000"
	var wg sync.WaitGroup
	var checked, limited atomic.Int64
	for range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch code := joinFrom(t, hh, flood, "n", "wrong-secret-0123456789").Code; code {
			case http.StatusUnauthorized:
				checked.Add(1)
			case http.StatusTooManyRequests:
				limited.Add(1)
			default:
				t.Errorf("flood: %d", code)
			}
		}()
	}
	start := time.Now()
	w := joinFrom(t, hh, other, "real-node", "agent-secret-0123456789")
	took := time.Since(start)
	wg.Wait()
	if w.Code != http.StatusOK {
		t.Fatalf("a real join during the flood: %d %s", w.Code, w.Body)
	}
	if checked.Load() > joinserver.FailBurst || limited.Load() < 300-joinserver.FailBurst {
		t.Errorf("flood of 300: %d checked, %d limited; want at most %d checked", checked.Load(), limited.Load(), joinserver.FailBurst)
	}
	t.Logf("flood of 300: %d checked, %d limited; a real join from elsewhere took %s", checked.Load(), limited.Load(), took.Round(time.Millisecond))

	// Accepted secrets give their tries back: an address that failed
	// joinserver.FailBurst-1 times and then joined can fail again.
	const agent = "192.0.2.20:40000"
	for range joinserver.FailBurst - 1 {
		joinFrom(t, hh, agent, "n", "wrong-secret-0123456789")
	}
	for i := range 3 {
		if w := joinFrom(t, hh, agent, fmt.Sprintf("agent-%d", i), "agent-secret-0123456789"); w.Code != http.StatusOK {
			t.Fatalf("join %d: %d %s", i, w.Code, w.Body)
		}
	}
	if w := joinFrom(t, hh, agent, "n", "wrong-secret-0123456789"); w.Code != http.StatusUnauthorized {
		t.Errorf("the last try: %d", w.Code)
	}
	if w := joinFrom(t, hh, agent, "n", "wrong-secret-0123456789"); w.Code != http.StatusTooManyRequests {
		t.Errorf("over the limit: %d", w.Code)
	}
	for _, s := range []string{"wrong-secret", "agent-secret", "server-secret"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("a secret in the log:\n%s", logs)
		}
	}
}

// TestNodePasswordCounts: a good token with a wrong node password counts
// as a failure.
func TestNodePasswordCounts(t *testing.T) {
	h, hh, _, _ := limitedHandler(t)
	const src = "192.0.2.30:40000"
	if w := joinFrom(t, hh, src, "taken", "agent-secret-0123456789"); w.Code != http.StatusOK {
		t.Fatalf("first join: %d %s", w.Code, w.Body)
	}
	if _, err := h.Store.Client.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "taken"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	req, _ := jointest.Request(t, "taken")
	req.Password = "pw-another-machine-0123456789"
	for i := range joinserver.FailBurst {
		if w := joinWith(hh, src, "agent-secret-0123456789", req); w.Code != http.StatusConflict {
			t.Fatalf("wrong password %d: %d %s", i+1, w.Code, w.Body)
		}
	}
	if w := joinWith(hh, src, "agent-secret-0123456789", req); w.Code != http.StatusTooManyRequests {
		t.Errorf("over the limit: %d %s", w.Code, w.Body)
	}
}
