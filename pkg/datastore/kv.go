package datastore

import (
	"context"
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
