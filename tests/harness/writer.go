package harness

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// writerLabel marks the ConfigMaps of a Writer.
const writerLabel = "kasa-test/writer"

// Writer creates ConfigMaps in the default namespace, one every interval,
// until Stop, and notes those that the API server acknowledged: a write
// lost later (a datastore gone and back) is an acknowledged name missing.
type Writer struct {
	c     kubernetes.Interface
	mu    sync.Mutex
	acked []string
	// failed holds the first and last write that failed, or -1.
	failed [2]int
	stop   chan struct{}
	done   chan struct{}
}

// StartWriter starts one through c; each create has 3 s.
func StartWriter(ctx context.Context, c kubernetes.Interface, interval time.Duration) *Writer {
	w := &Writer{c: c, stop: make(chan struct{}), done: make(chan struct{}), failed: [2]int{-1, -1}}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			name := fmt.Sprintf("written-%d", i)
			wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := c.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(wctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{writerLabel: "true"}},
			}, metav1.CreateOptions{})
			cancel()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, name)
			} else {
				if w.failed[0] < 0 {
					w.failed[0] = i
				}
				w.failed[1] = i
			}
			w.mu.Unlock()
			time.Sleep(interval)
		}
	}()
	return w
}

// Stop ends the writes and checks them: it returns how many were
// acknowledged, and an error naming those that are gone, or saying that
// fewer than atLeast were acknowledged (the writer hardly ran).
func (w *Writer) Stop(ctx context.Context, atLeast int) (acked int, err error) {
	close(w.stop)
	<-w.done
	listed, err := MissingConfigMaps(ctx, w.c, w.acked)
	if err != nil {
		return len(w.acked), err
	}
	var missing, stale []string
	for _, name := range listed {
		// A list is served from the API server's watch cache; a get of one
		// name reads the datastore. One that the get finds is stored but
		// missing from the cache.
		if _, err := w.c.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(ctx, name, metav1.GetOptions{}); err == nil {
			stale = append(stale, name)
		} else {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 || len(stale) > 0 {
		return len(w.acked), fmt.Errorf("of %d acknowledged ConfigMaps, %d are gone from the datastore %v and %d are stored but missing from the API server's list %v (writes from written-%d to written-%d failed)",
			len(w.acked), len(missing), missing, len(stale), stale, w.failed[0], w.failed[1])
	}
	if len(w.acked) < atLeast {
		return len(w.acked), fmt.Errorf("only %d writes acknowledged, want %d or more: the writer hardly ran", len(w.acked), atLeast)
	}
	return len(w.acked), nil
}

// MissingConfigMaps returns those of names that a list of the default
// namespace's ConfigMaps lacks.
func MissingConfigMaps(ctx context.Context, c kubernetes.Interface, names []string) ([]string, error) {
	list, err := c.CoreV1().ConfigMaps(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, cm := range list.Items {
		have[cm.Name] = true
	}
	var missing []string
	for _, name := range names {
		if !have[name] {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

// Load is clients creating ConfigMaps in the default namespace as fast as
// they can, until Stop; it notes when each create was acknowledged.
type Load struct {
	mu    sync.Mutex
	acked map[string]time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
}

// StartLoad starts clients writers through c, naming their ConfigMaps
// prefix-<client>-<n>; each create has 10 s.
func StartLoad(c kubernetes.Interface, clients int, prefix string) *Load {
	l := &Load{acked: map[string]time.Time{}, stop: make(chan struct{})}
	for w := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				name := fmt.Sprintf("%s-%d-%05d", prefix, w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
				cancel()
				if err == nil {
					l.mu.Lock()
					l.acked[name] = time.Now()
					l.mu.Unlock()
				}
			}
		}()
	}
	return l
}

// Stop ends the writes and returns the acknowledged names with the time
// of each acknowledgement.
func (l *Load) Stop() map[string]time.Time {
	close(l.stop)
	l.wg.Wait()
	return l.acked
}
