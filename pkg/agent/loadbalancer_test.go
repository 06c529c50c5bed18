package agent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// testBackend answers each connection with its name.
func testBackend(t *testing.T, name string) (addr string, stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, name)
			c.Close()
		}
	}()
	return l.Addr().String(), func() { l.Close() }
}

// syncBuffer is a log sink safe for the balancer's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLoadBalancer(t *testing.T) {
	a, stopA := testBackend(t, "a")
	b, stopB := testBackend(t, "b")
	defer stopB()
	free, stopFree := testBackend(t, "x")
	stopFree() // an address where nothing listens

	var logs syncBuffer
	lb := &LoadBalancer{Addr: "127.0.0.1:0", Log: slog.New(slog.NewTextHandler(&logs, nil)), DialTimeout: time.Second}
	lb.SetServers([]string{free, a})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Listen on a free port chosen here, then hand it to the balancer.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb.Addr = l.Addr().String()
	l.Close()
	readyc := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- lb.Run(ctx, func() { close(readyc) }) }()
	<-readyc

	get := func() string {
		c, err := net.Dial("tcp", lb.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		return string(b)
	}
	if got := get(); got != "a" {
		t.Fatalf("first connection reached %q, want a (the only one up)", got)
	}
	// a goes; b is added: the next connection goes to b.
	stopA()
	lb.SetServers([]string{free, a, b})
	if got := get(); got != "b" {
		t.Fatalf("after a stopped: %q, want b", got)
	}
	// None answers: the client's connection is closed, and one line says so.
	lb.SetServers([]string{free, a})
	for range 3 {
		if got := get(); got != "" {
			t.Fatalf("with no server: %q", got)
		}
	}
	if n := strings.Count(logs.String(), "no server answers"); n != 1 {
		t.Errorf("%d 'no server answers' lines for one outage:\n%s", n, logs.String())
	}
	// A server comes back: the probe sees it without any client.
	lb.SetServers([]string{free, b})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "server answers again") {
		if time.Now().After(deadline) {
			t.Fatalf("the probe did not see b come back:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := get(); got != "b" {
		t.Errorf("after the outage: %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestLoadBalancerPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lb := &LoadBalancer{Addr: l.Addr().String(), Log: slog.Default()}
	err = lb.Run(context.Background(), func() {})
	if err == nil || !strings.Contains(err.Error(), "--lb-server-port") {
		t.Errorf("Run on a taken port: %v", err)
	}
}
