package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/kasa-io/kasa/pkg/component"
)

// LoadBalancer is an agent's way to the API servers: a TCP proxy on a
// local port that forwards each connection to a server that answers,
// preferring the one that answered last. The node's clients (kubelet,
// kube-proxy, flannel) talk to it, so the list of servers can change under
// them. When no server answers it probes them with backoff and logs one
// line when that starts and one when a server answers again.
type LoadBalancer struct {
	// Addr is where it listens (127.0.0.1:6444).
	Addr string
	Log  *slog.Logger
	// DialTimeout bounds each attempt to reach a server; 3 s when zero.
	DialTimeout time.Duration

	mu        sync.Mutex
	servers   []string
	current   string    // the server that answered last
	down      bool      // no server answered the last attempt
	downSince time.Time // when down began
	wake      chan struct{}
}

var _ component.Component = (*LoadBalancer)(nil)

// Name implements component.Component.
func (lb *LoadBalancer) Name() string { return "load-balancer" }

// SetServers replaces the list of servers (host:port).
func (lb *LoadBalancer) SetServers(servers []string) {
	servers = slices.Clone(servers)
	slices.Sort(servers)
	servers = slices.Compact(servers)
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if !slices.Equal(servers, lb.servers) && lb.servers != nil {
		lb.Log.Info("servers changed", "servers", servers)
	}
	lb.servers = servers
}

// Servers returns the current list.
func (lb *LoadBalancer) Servers() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return slices.Clone(lb.servers)
}

// Run implements component.Component.
func (lb *LoadBalancer) Run(ctx context.Context, ready func()) error {
	l, err := net.Listen("tcp", lb.Addr)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && errno == syscall.EADDRINUSE {
			return fmt.Errorf("cannot listen on %s: it is in use; pick another port with --lb-server-port", lb.Addr)
		}
		return err
	}
	lb.mu.Lock()
	lb.wake = make(chan struct{}, 1)
	lb.mu.Unlock()
	ready()
	go lb.probe(ctx)
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lb.serve(ctx, c)
		}()
	}
}

func (lb *LoadBalancer) serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	up, err := lb.dial(ctx)
	if err != nil {
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}

// dial connects to a server: the one that answered last first, then the
// others in order.
func (lb *LoadBalancer) dial(ctx context.Context) (net.Conn, error) {
	lb.mu.Lock()
	order := slices.Clone(lb.servers)
	current := lb.current
	lb.mu.Unlock()
	if i := slices.Index(order, current); i > 0 {
		order = append([]string{current}, slices.Delete(order, i, i+1)...)
	}
	timeout := lb.DialTimeout
	if timeout == 0 {
		timeout = 3 * time.Second
	}
	d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	for _, s := range order {
		c, err := d.DialContext(ctx, "tcp", s)
		if err == nil {
			lb.answered(s)
			return c, nil
		}
	}
	lb.noAnswer()
	return nil, errors.New("no server answers")
}

func (lb *LoadBalancer) answered(server string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	switch {
	case lb.down:
		lb.Log.Info("server answers again", "server", server, "after", time.Since(lb.downSince).Round(time.Second))
	case lb.current != "" && lb.current != server:
		lb.Log.Info("switched server", "from", lb.current, "to", server)
	case lb.current == "":
		lb.Log.Info("server answers", "server", server)
	}
	lb.down = false
	lb.current = server
}

func (lb *LoadBalancer) noAnswer() {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.down {
		return
	}
	lb.down, lb.downSince = true, time.Now()
	lb.Log.Warn("no server answers; retrying with backoff", "servers", lb.servers)
	select {
	case lb.wake <- struct{}{}:
	default:
	}
}

// probe dials the servers while none answers, waiting 1 s, then twice as
// long after each failure up to 30 s, so that the return of a server is
// seen (and logged) even when no client is connecting.
func (lb *LoadBalancer) probe(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-lb.wake:
		}
		for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			c, err := lb.dial(ctx)
			if err == nil {
				c.Close()
				break
			}
		}
	}
}
