package harness

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Churn is a load of workers that each create, update and delete a
// ConfigMap and a Secret, over and over, as fast as the server takes them.
type Churn struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ops    atomic.Int64
	errs   atomic.Int64
	mu     sync.Mutex
	last   error
}

// StartChurn starts workers in namespace default, on objects named
// prefix-<worker>, each holding 2 KiB.
func StartChurn(c kubernetes.Interface, workers int, prefix string) *Churn {
	ctx, cancel := context.WithCancel(context.Background())
	ch := &Churn{cancel: cancel}
	payload := strings.Repeat("x", 2048)
	for w := range workers {
		ch.wg.Add(1)
		go func() {
			defer ch.wg.Done()
			name := fmt.Sprintf("%s-%d", prefix, w)
			cms, secrets := c.CoreV1().ConfigMaps("default"), c.CoreV1().Secrets("default")
			for i := 0; ctx.Err() == nil; i++ {
				steps := []func() error{
					func() error {
						_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": payload}}, metav1.CreateOptions{})
						return err
					},
					func() error {
						_, err := cms.Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": payload, "i": fmt.Sprint(i)}}, metav1.UpdateOptions{})
						return err
					},
					func() error { return cms.Delete(ctx, name, metav1.DeleteOptions{}) },
					func() error {
						_, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"v": payload}}, metav1.CreateOptions{})
						return err
					},
					func() error {
						_, err := secrets.Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"v": payload, "i": fmt.Sprint(i)}}, metav1.UpdateOptions{})
						return err
					},
					func() error { return secrets.Delete(ctx, name, metav1.DeleteOptions{}) },
				}
				for _, step := range steps {
					if err := step(); err != nil {
						if ctx.Err() != nil {
							return
						}
						ch.errs.Add(1)
						ch.mu.Lock()
						ch.last = err
						ch.mu.Unlock()
						// Start the round again from a clean slate.
						_ = cms.Delete(ctx, name, metav1.DeleteOptions{})
						_ = secrets.Delete(ctx, name, metav1.DeleteOptions{})
						break
					}
					ch.ops.Add(1)
				}
			}
		}()
	}
	return ch
}

// Ops is the number of writes the server acknowledged so far.
func (ch *Churn) Ops() int64 { return ch.ops.Load() }

// Stop ends the load and returns the writes acknowledged, the ones that
// failed and the last failure.
func (ch *Churn) Stop() (ops, errs int64, last error) {
	ch.cancel()
	ch.wg.Wait()
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.ops.Load(), ch.errs.Load(), ch.last
}
