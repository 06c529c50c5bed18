package datastore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/drivers"
	// The drivers of the datastores kasa takes: SQLite (the default),
	// MySQL, PostgreSQL, and an etcd of the user's (remote). kine's endpoint
	// package, its usual entry, registers every driver kine has: NATS, with
	// a NATS server inside, and t4, with pebble and an S3 client, about
	// 15 MB of program that kasa would carry and never run.
	_ "github.com/k3s-io/kine/pkg/drivers/mysql"
	_ "github.com/k3s-io/kine/pkg/drivers/pgsql"
	_ "github.com/k3s-io/kine/pkg/drivers/remote"
	_ "github.com/k3s-io/kine/pkg/drivers/sqlite"
	"github.com/k3s-io/kine/pkg/server"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// gracefulStop bounds the wait for kine's open calls when it stops.
const gracefulStop = 2 * time.Second

// listen starts kine's backend for cfg.Endpoint and serves the etcd API
// over gRPC on the unix socket, the way kine's endpoint.Listen does, until
// ctx ends; wg counts its goroutines. It returns the etcd endpoints the API
// server is given: the socket's, or the endpoint itself when it is an etcd
// (kine then serves nothing).
func listen(ctx context.Context, socket string, cfg drivers.Config, notify time.Duration, etcdVersion string, wg *sync.WaitGroup) (_ []string, rerr error) {
	bctx, bcancel := context.WithCancel(context.Background())
	defer func() {
		if rerr != nil {
			bcancel()
		}
	}()
	_, backend, err := drivers.New(bctx, wg, &cfg)
	if errors.Is(err, drivers.ErrUnknownDriver) {
		// The scheme only: the rest of a DSN may hold a password.
		scheme, _, _ := strings.Cut(cfg.Endpoint, "://")
		return nil, fmt.Errorf("--datastore-endpoint: kasa does not know the scheme %q: give mysql://, postgres:// or an etcd's https://", scheme)
	}
	if err != nil {
		return nil, err
	}
	if backend == nil {
		bcancel()
		return strings.Split(cfg.Endpoint, ","), nil
	}
	// etcd's own limits and keepalive, as kine serves them.
	srv := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: embed.DefaultGRPCKeepAliveMinTime}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: embed.DefaultGRPCKeepAliveInterval, Timeout: embed.DefaultGRPCKeepAliveTimeout}),
		grpc.MaxConcurrentStreams(embed.DefaultMaxConcurrentStreams),
		grpc.MaxRecvMsgSize(int(embed.DefaultMaxRequestBytes)+512*1024),
		grpc.MaxSendMsgSize(math.MaxInt32),
	)
	go func() {
		<-ctx.Done()
		timer := time.AfterFunc(gracefulStop, srv.Stop)
		defer timer.Stop()
		srv.GracefulStop()
		bcancel()
	}()
	if err := backend.Start(bctx); err != nil {
		return nil, fmt.Errorf("start kine's backend: %w", err)
	}
	server.New(backend, "unix", notify, etcdVersion).Register(srv)
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	l, err := (&net.ListenConfig{}).Listen(bctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.Serve(l)
	}()
	return []string{"unix://" + socket}, nil
}
