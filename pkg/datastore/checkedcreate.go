package datastore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/k3s-io/kine/pkg/drivers"
	"github.com/k3s-io/kine/pkg/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// kine's SQL backends (v0.17.5) answer a create whose insert failed (a
// lock wait timeout, a connection cut by a restarting database) by looking
// the key up; when it is still absent they return the current revision and
// no error, so the API server tells its client that an object is stored
// that is not. TestIntegrationDatastoreWriteFails shows it on MariaDB.
//
// checkedBackend reads each created key back at the revision the create
// returned: a key stored by the create is there with that very revision;
// anything else was not stored, and the client gets an error instead of a
// success. It costs one indexed read per create (updates and deletes,
// which kine reports correctly, cost nothing).
type checkedBackend struct {
	server.Backend
}

// errCreateLost is what a client of a lost create learns: codes.Unavailable,
// as for any datastore that failed a write, so that it tries again.
var errCreateLost = status.Error(codes.Unavailable, "the datastore failed to store the create; try again")

func (b checkedBackend) Create(ctx context.Context, key string, value []byte, lease int64) (int64, error) {
	rev, err := b.Backend.Create(ctx, key, value, lease)
	if err != nil {
		return rev, err
	}
	_, kv, err := b.Get(ctx, key, rev, true)
	switch {
	case err != nil:
		return 0, status.Error(codes.Unavailable, fmt.Sprintf("the datastore stored a create, but reading it back failed: %v", err))
	case kv == nil || kv.ModRevision != rev || kv.CreateRevision != rev:
		return 0, errCreateLost
	}
	return rev, nil
}

// checkedSchemes are kine's schemes whose backends are its SQL log: the
// ones kasa uses.
var checkedSchemes = []string{"sqlite", "mysql", "postgres", "postgresql"}

var checkCreatesOnce sync.Once

// checkCreates wraps the backends of checkedSchemes in checkedBackend, in
// kine's registry of drivers, once; before the first endpoint.Listen.
func checkCreates() {
	checkCreatesOnce.Do(func() {
		for _, scheme := range checkedSchemes {
			open, ok := drivers.Get(scheme)
			if !ok {
				panic(errors.New("kine has no driver " + scheme))
			}
			drivers.Register(scheme, checkedConstructor(open))
		}
	})
}

func checkedConstructor(open drivers.Constructor) drivers.Constructor {
	return func(ctx context.Context, wg *sync.WaitGroup, cfg *drivers.Config) (bool, server.Backend, error) {
		leaderElect, backend, err := open(ctx, wg, cfg)
		if err != nil || backend == nil {
			return leaderElect, backend, err
		}
		return leaderElect, checkedBackend{backend}, nil
	}
}
