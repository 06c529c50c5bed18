package datastore

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/k3s-io/kine/pkg/drivers"
	"github.com/k3s-io/kine/pkg/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// logBackend is a log of keys as kine keeps it: each write a new revision.
// failInserts makes Create behave as kine's does when its insert fails:
// nothing stored, the current revision returned, no error.
type logBackend struct {
	server.Backend
	rev         int64
	keys        map[string]*server.KeyValue
	failInserts bool
}

func (b *logBackend) Create(_ context.Context, key string, _ []byte, _ int64) (int64, error) {
	if b.failInserts {
		return b.rev, nil
	}
	b.rev++
	b.keys[key] = &server.KeyValue{Key: key, CreateRevision: b.rev, ModRevision: b.rev}
	return b.rev, nil
}

func (b *logBackend) Get(_ context.Context, key string, revision int64, _ bool) (int64, *server.KeyValue, error) {
	kv := b.keys[key]
	if kv == nil || kv.ModRevision > revision {
		return b.rev, nil, nil
	}
	return b.rev, kv, nil
}

func TestCheckedBackendCreate(t *testing.T) {
	ctx := context.Background()
	inner := &logBackend{keys: map[string]*server.KeyValue{}}
	b := checkedBackend{inner}

	rev, err := b.Create(ctx, "/registry/a", nil, 0)
	if err != nil || rev != 1 {
		t.Fatalf("a stored create: rev %d, %v", rev, err)
	}
	// A failed insert right after a stored key: the revision returned is
	// that key's, which a check of the revision alone would take.
	inner.failInserts = true
	if rev, err := b.Create(ctx, "/registry/b", nil, 0); status.Code(err) != codes.Unavailable {
		t.Fatalf("a lost create: rev %d, %v; want codes.Unavailable", rev, err)
	}
	inner.failInserts = false
	if rev, err := b.Create(ctx, "/registry/b", nil, 0); err != nil || rev != 2 {
		t.Fatalf("a stored create after a lost one: rev %d, %v", rev, err)
	}
}

// TestCheckCreates: the SQLite kasa opens comes out of kine's registry
// checked, and checked once however often kasa opens a datastore.
func TestCheckCreates(t *testing.T) {
	checkCreates()
	checkCreates()
	open, _ := drivers.Get("sqlite")
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); wg.Wait() }()
	_, backend, err := open(ctx, &wg, &drivers.Config{DataSourceName: filepath.Join(t.TempDir(), "state.db")})
	if err != nil {
		t.Fatal(err)
	}
	checked, ok := backend.(checkedBackend)
	if !ok {
		t.Fatalf("sqlite's backend is %T, not checked", backend)
	}
	if _, twice := checked.Backend.(checkedBackend); twice {
		t.Fatal("sqlite's backend is checked twice")
	}
	for _, scheme := range checkedSchemes {
		if _, ok := drivers.Get(scheme); !ok {
			t.Errorf("kine has no driver %s", scheme)
		}
	}
}
