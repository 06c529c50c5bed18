package datastore

import (
	"context"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// KV reads and writes kasa's own keys (the bootstrap data) in the
// datastore, through kine's etcd API.
type KV struct{ c *clientv3.Client }

// NewKV connects to kine's endpoints.
func NewKV(endpoints []string) (*KV, error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, err
	}
	return &KV{c: c}, nil
}

// Get returns the value of key, and false when there is none.
func (k *KV) Get(ctx context.Context, key string) ([]byte, bool, error) {
	r, err := k.c.Get(ctx, key)
	if err != nil {
		return nil, false, err
	}
	if len(r.Kvs) == 0 {
		return nil, false, nil
	}
	return r.Kvs[0].Value, true, nil
}

// Create stores value under key unless the key exists (false then): the
// transaction kine takes for a create.
func (k *KV) Create(ctx context.Context, key string, value []byte) (bool, error) {
	r, err := k.c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(value))).
		Commit()
	if err != nil {
		return false, err
	}
	return r.Succeeded, nil
}

// GetRevision returns the value of key and the revision it was last
// written at; false when there is none.
func (k *KV) GetRevision(ctx context.Context, key string) ([]byte, int64, bool, error) {
	r, err := k.c.Get(ctx, key)
	if err != nil {
		return nil, 0, false, err
	}
	if len(r.Kvs) == 0 {
		return nil, 0, false, nil
	}
	return r.Kvs[0].Value, r.Kvs[0].ModRevision, true, nil
}

// Update replaces the value of key if it was last written at rev (false
// when another write came since): the transaction kine takes for an
// update.
func (k *KV) Update(ctx context.Context, key string, value []byte, rev int64) (bool, error) {
	r, err := k.c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(value))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return false, err
	}
	return r.Succeeded, nil
}

// Put writes value under key, whatever is there, by a create or an
// update (kine takes no plain put).
func (k *KV) Put(ctx context.Context, key string, value []byte) error {
	for range 5 {
		_, rev, ok, err := k.GetRevision(ctx, key)
		if err != nil {
			return err
		}
		var done bool
		if ok {
			done, err = k.Update(ctx, key, value, rev)
		} else {
			done, err = k.Create(ctx, key, value)
		}
		if err != nil || done {
			return err
		}
	}
	return errors.New("the key kept changing while it was written: " + key)
}

// Close ends the connection.
func (k *KV) Close() error { return k.c.Close() }

// List returns every key under prefix with its value.
func (k *KV) List(ctx context.Context, prefix string) (map[string][]byte, error) {
	r, err := k.c.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	values := make(map[string][]byte, len(r.Kvs))
	for _, kv := range r.Kvs {
		values[string(kv.Key)] = kv.Value
	}
	return values, nil
}
