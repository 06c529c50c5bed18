package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
)

// broker is a running stand-in: kfake serving the client listener, the
// controller listeners open, the log directory locked.
type broker struct {
	cluster     *kfake.Cluster
	client      *clientListener
	controllers []net.Listener
	dir         *logDir
	wg          sync.WaitGroup
}

// start formats or checks the log directory, opens the listeners and starts
// kfake on them.
func start(s *settings, log *slog.Logger) (_ *broker, err error) {
	b := &broker{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.dir, err = openLogDir(s.logDir, s.clusterID, s.nodeID); err != nil {
		return nil, err
	}
	if b.dir.formatted {
		log.Info("formatted the log directory", "dir", s.logDir, "cluster.id", s.clusterID, "node.id", s.nodeID)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(s.client.host, s.client.port))
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", s.client, err)
	}
	adv := s.advertised
	if adv.port == "0" {
		_, adv.port, _ = net.SplitHostPort(ln.Addr().String())
	}
	b.client = &clientListener{Listener: ln, addr: advertisedAddr(net.JoinHostPort(adv.host, adv.port)),
		open: make(chan struct{}), closed: make(chan struct{})}
	for _, c := range s.controllers {
		cl, err := net.Listen("tcp", net.JoinHostPort(c.host, c.port))
		if err != nil {
			b.client.Close()
			return nil, fmt.Errorf("listener %s: %w", c, err)
		}
		b.controllers = append(b.controllers, cl)
		b.wg.Add(1)
		go b.refuse(cl)
	}

	// kfake numbers its brokers from 0 and makes the last one the
	// controller: node.id N is N placeholders, then the real broker, then
	// the placeholders removed. The client listener hands out connections
	// only after that, so no client ever sees a placeholder.
	calls := 0
	listen := func(string, string) (net.Listener, error) {
		calls++
		if calls <= int(s.nodeID) {
			return newPlaceholder(), nil
		}
		return b.client, nil
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(int(s.nodeID) + 1),
		kfake.ListenFn(listen),
		kfake.ClusterID(s.clusterID),
		kfake.DataDir(b.dir.state()),
		kfake.DefaultNumPartitions(s.numPartitions),
		kfake.GroupMaxSessionTimeout(kafkaMaxSessionTimeout),
		kfake.BrokerConfigs(s.brokerConfigs),
		kfake.WithLogger(kfakeLogger{log.With("component", "kfake")}),
	}
	if s.autoCreate {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	if s.syncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	if b.cluster, err = kfake.NewCluster(opts...); err != nil {
		b.client.Close()
		return nil, fmt.Errorf("start kfake on %s: %w", b.dir.state(), err)
	}
	for id := range s.nodeID {
		if err := b.cluster.RemoveNode(id); err != nil {
			return nil, fmt.Errorf("remove placeholder broker %d: %w", id, err)
		}
	}
	close(b.client.open)
	return b, nil
}

// refuse accepts and at once closes every connection to a controller
// listener: there is no KRaft quorum behind it.
func (b *broker) refuse(ln net.Listener) {
	defer b.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// close stops kfake (which saves its state), closes the listeners and
// unlocks the log directory.
func (b *broker) close() {
	if b.cluster != nil {
		b.cluster.Close()
	}
	for _, l := range b.controllers {
		l.Close()
	}
	b.wg.Wait()
	if b.dir != nil {
		b.dir.close()
	}
}

// clientListener is the client listener as kfake sees it: it names itself by
// the advertised address, which kfake puts into metadata, and hands out
// connections once open is closed.
type clientListener struct {
	net.Listener
	addr   advertisedAddr
	open   chan struct{}
	closed chan struct{}
	once   sync.Once
}

func (l *clientListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case <-l.open:
		return c, nil
	case <-l.closed:
		c.Close()
		return nil, net.ErrClosed
	}
}

func (l *clientListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *clientListener) Addr() net.Addr { return l.addr }

// bound is the address the listener really has.
func (l *clientListener) bound() string { return l.Listener.Addr().String() }

type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// placeholder is a listener that never accepts: the socket of a broker that
// only exists while the cluster starts.
type placeholder struct {
	closed chan struct{}
	once   sync.Once
}

func newPlaceholder() *placeholder { return &placeholder{closed: make(chan struct{})} }

func (p *placeholder) Accept() (net.Conn, error) {
	<-p.closed
	return nil, net.ErrClosed
}

func (p *placeholder) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

func (p *placeholder) Addr() net.Addr { return advertisedAddr("127.0.0.1:0") }

// kfakeLogger sends kfake's lines to slog. kfake logs each request at its
// info level, which is Kafka's DEBUG: its info and debug go to slog's
// debug levels.
type kfakeLogger struct{ log *slog.Logger }

func (k kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	l := slog.LevelDebug - 4
	switch level {
	case kfake.LogLevelError:
		l = slog.LevelError
	case kfake.LogLevelWarn:
		l = slog.LevelWarn
	case kfake.LogLevelInfo:
		l = slog.LevelDebug
	}
	ctx := context.Background()
	if k.log.Enabled(ctx, l) {
		k.log.Log(ctx, l, fmt.Sprintf(format, args...))
	}
}

var (
	_ net.Listener = (*clientListener)(nil)
	_ net.Listener = (*placeholder)(nil)
	_ kfake.Logger = kfakeLogger{}
)
