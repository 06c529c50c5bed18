package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/tests/harness"
)

// memoryCgroup is a v1 memory cgroup that the bench puts the server in, so
// that kasa, containerd and the shims (but not the pods, which the kubelet
// puts in kubepods) are counted together.
const memoryCgroup = "/sys/fs/cgroup/memory/kasa-bench"

// benchNode measures a node: cold start to node Ready and CoreDNS ready,
// warm restart to node Ready, idle memory, and pod start latency.
func benchNode(bin string, idle time.Duration, pods int, add func(name, value, target string)) error {
	s, err := harness.NewServer(bin)
	if err != nil {
		return err
	}
	s.Node = true
	defer func() {
		s.Kill()
		_, _, _ = s.Run("killall", "--data-dir", s.DataDir)
		_ = os.RemoveAll(s.DataDir)
		_ = os.Remove(memoryCgroup)
	}()
	ctx := context.Background()
	cgroup := os.MkdirAll(memoryCgroup, 0o755) == nil

	start := func() (*kubernetes.Clientset, error) {
		if err := s.Start(); err != nil {
			return nil, err
		}
		if cgroup {
			_ = os.WriteFile(filepath.Join(memoryCgroup, "cgroup.procs"), []byte(strconv.Itoa(s.PID())), 0o644)
		}
		if err := s.WaitReady(2 * time.Minute); err != nil {
			return nil, err
		}
		return s.Client()
	}
	c, err := start()
	if err != nil {
		return err
	}
	ready, err := until(2*time.Minute, func() error { return readySince(ctx, c, s.Started) })
	if err != nil {
		return err
	}
	add("node: cold start to node Ready (fresh data dir)", secs(ready.Sub(s.Started)), "< 15 s")
	dns, err := until(3*time.Minute, func() error { return available(ctx, c, "kube-system", "coredns") })
	if err != nil {
		return err
	}
	add("node: cold start to CoreDNS Ready", secs(dns.Sub(s.Started)), "< 25 s")
	addons := dns
	for _, d := range []string{"traefik", "metrics-server"} {
		t, err := until(3*time.Minute, func() error { return available(ctx, c, "kube-system", d) })
		if err != nil {
			return err
		}
		addons = later(addons, t)
	}
	add("node: cold start to every default add-on Ready (CoreDNS, Traefik, metrics-server)", secs(addons.Sub(s.Started)), "< 40 s (k3s about 50 s)")
	top, err := until(3*time.Minute, func() error { _, err := podMemory(ctx, c); return err })
	if err != nil {
		return err
	}
	add("node: cold start to kubectl top answering", secs(top.Sub(s.Started)), "< 90 s")

	if _, err := s.Stop(20 * time.Second); err != nil {
		return err
	}
	if c, err = start(); err != nil {
		return err
	}
	// The Ready condition from before the stop is still in the API: wait
	// for one that the restarted kubelet posted.
	warm, err := until(2*time.Minute, func() error { return readySince(ctx, c, s.Started) })
	if err != nil {
		return err
	}
	add("node: warm restart to node Ready (posted by the restarted kubelet)", secs(warm.Sub(s.Started)), "")

	if wait := idle - time.Since(s.Started); wait > 0 {
		time.Sleep(wait)
	}
	rss, names, err := rssOf(s.PID(), s.DataDir)
	if err != nil {
		return err
	}
	add(fmt.Sprintf("node: idle memory %s after the warm restart, sum of RSS (%s)", idle, names), fmt.Sprintf("%d MiB", rss/1024), "< 600 MiB")
	if cgroup {
		if b, err := os.ReadFile(filepath.Join(memoryCgroup, "memory.usage_in_bytes")); err == nil {
			n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			add("node: idle memory, cgroup total of kasa + containerd + shims (page cache included)", fmt.Sprintf("%d MiB", n>>20), "")
		}
	}
	var podMem map[string]int64
	if _, err := until(2*time.Minute, func() error { podMem, err = podMemory(ctx, c); return err }); err != nil {
		return err
	}
	var sum int64
	var parts []string
	for name, b := range podMem {
		sum += b
		parts = append(parts, fmt.Sprintf("%s %d", name, b>>20))
	}
	slices.Sort(parts)
	add(fmt.Sprintf("node: idle memory of the add-on pods, working set (MiB: %s)", strings.Join(parts, ", ")), fmt.Sprintf("%d MiB", sum>>20), "")
	add("node: idle memory with the add-ons, kasa processes' RSS + add-on pods", fmt.Sprintf("%d MiB", rss/1024+int(sum>>20)), "")

	archive := filepath.Join(s.DataDir, "web.tar")
	if err := harness.BuildTestImage(archive); err != nil {
		return err
	}
	if err := s.DropImage(archive); err != nil {
		return err
	}
	if err := waitImage(ctx, c); err != nil {
		return err
	}
	p50, p99, err := podStartLatency(ctx, c, pods, 1)
	if err != nil {
		return err
	}
	add(fmt.Sprintf("node: pod start, create to Running, %d pods one after another", pods), fmt.Sprintf("p50 %s, p99 %s", secs(p50), secs(p99)), "p99 < 2 s")
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("the bench's node: %w", err)
	}
	if len(nodes.Items) != 1 {
		return fmt.Errorf("the bench's node: %d nodes, want 1", len(nodes.Items))
	}
	node := nodes.Items[0].Name
	stagesBefore, err := readStageTimes(ctx, c, node)
	if err != nil {
		return err
	}
	p50, p99, err = podStartLatency(ctx, c, pods, pods)
	if err != nil {
		return err
	}
	add(fmt.Sprintf("node: pod start, create to Running, %d pods created at once", pods), fmt.Sprintf("p50 %s, p99 %s", secs(p50), secs(p99)), "p99 < 4 s")
	stagesAfter, err := readStageTimes(ctx, c, node)
	if err != nil {
		return err
	}
	stages, err := stagesAfter.since(stagesBefore)
	if err != nil {
		return err
	}
	add(fmt.Sprintf("node: %d pods at once, where the time goes (the kubelet's metrics, mean per call, count)", pods), stages, "")
	if err := benchNetpol(s, c, idle, add); err != nil {
		return fmt.Errorf("network policy: %w", err)
	}
	if skipCatalog {
		return nil
	}
	return benchCatalog(s, add)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// until polls f every 100 ms and returns when it first succeeded.
func until(timeout time.Duration, f func() error) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("not within %s: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readySince reports whether the one node is Ready by a status its
// kubelet posted after t (harness.ReadyPostedAfter).
func readySince(ctx context.Context, c kubernetes.Interface, t time.Time) error {
	node, err := harness.OnlyNode(ctx, c)
	if err != nil {
		return err
	}
	return harness.ReadyPostedAfter(ctx, c, node, t)
}

func available(ctx context.Context, c kubernetes.Interface, ns, name string) error {
	d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if d.Status.AvailableReplicas < 1 {
		return fmt.Errorf("%s/%s not available", ns, name)
	}
	return nil
}

// rssOf sums VmRSS of the server and every process run from its data dir.
func rssOf(pid int, dataDir string) (int, string, error) {
	total, err := rssKiB(pid)
	if err != nil {
		return 0, "", err
	}
	counts := map[string]int{"kasa": 1}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || !strings.HasPrefix(exe, dataDir+"/") {
			continue
		}
		p, _ := strconv.Atoi(e.Name())
		if kib, err := rssKiB(p); err == nil {
			total += kib
			counts[filepath.Base(exe)]++
		}
	}
	var parts []string
	for k, v := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", v, k))
	}
	slices.Sort(parts)
	return total, strings.Join(parts, ", "), nil
}

func waitImage(ctx context.Context, c kubernetes.Interface) error {
	_, err := until(time.Minute, func() error {
		nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, n := range nodes.Items {
			for _, img := range n.Status.Images {
				if slices.Contains(img.Names, harness.TestImage) {
					return nil
				}
			}
		}
		return errors.New("test image not on the node yet")
	})
	return err
}

// podStartLatency creates n pods, at most inFlight of them not yet Running
// at a time, and times each from its create call to the watch event that
// shows it Running.
func podStartLatency(ctx context.Context, c kubernetes.Interface, n, inFlight int) (time.Duration, time.Duration, error) {
	w, err := c.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "bench=podstart"})
	if err != nil {
		return 0, 0, err
	}
	defer w.Stop()
	var mu sync.Mutex
	created := map[string]time.Time{}
	slots := make(chan struct{}, inFlight)
	go func() {
		for i := range n {
			slots <- struct{}{}
			name := fmt.Sprintf("podstart-%03d", i)
			mu.Lock()
			created[name] = time.Now()
			mu.Unlock()
			_, err := c.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench": "podstart"}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: new(int64),
					Containers: []corev1.Container{{Name: "web", Image: harness.TestImage,
						ImagePullPolicy: corev1.PullNever, Args: []string{"serve", ":8080"}}},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				fmt.Fprintln(os.Stderr, "create:", err)
			}
		}
	}()
	var lat []time.Duration
	seen := map[string]bool{}
	timeout := time.After(5 * time.Minute)
	for len(lat) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return 0, 0, errors.New("watch closed")
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted || seen[p.Name] || p.Status.Phase != corev1.PodRunning {
				continue
			}
			seen[p.Name] = true
			mu.Lock()
			lat = append(lat, time.Since(created[p.Name]))
			mu.Unlock()
			<-slots
		case <-timeout:
			return 0, 0, fmt.Errorf("only %d of %d pods Running after 5 minutes", len(lat), n)
		}
	}
	slices.Sort(lat)
	if err := c.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{LabelSelector: "bench=podstart"}); err != nil {
		return 0, 0, err
	}
	// Wait for them to be gone, so that the next run starts from an idle node.
	if _, err := until(2*time.Minute, func() error {
		l, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "bench=podstart"})
		if err == nil && len(l.Items) > 0 {
			err = fmt.Errorf("%d pods left", len(l.Items))
		}
		return err
	}); err != nil {
		return 0, 0, err
	}
	return lat[len(lat)/2], lat[len(lat)*99/100], nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// podMemory reads the working set of kube-system's pods from the metrics
// API (what kubectl top shows), by the pod's app name.
func podMemory(ctx context.Context, c kubernetes.Interface) (map[string]int64, error) {
	raw, err := c.Discovery().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/namespaces/kube-system/pods").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Containers []struct {
				Usage map[string]resource.Quantity `json:"usage"`
			} `json:"containers"`
		} `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	if len(list.Items) == 0 {
		return nil, errors.New("no pod metrics yet")
	}
	out := map[string]int64{}
	for _, p := range list.Items {
		// A Deployment's pod: name-<replica set hash>-<pod suffix>.
		name := p.Metadata.Name
		if parts := strings.Split(name, "-"); len(parts) > 2 {
			name = strings.Join(parts[:len(parts)-2], "-")
		}
		for _, ct := range p.Containers {
			m := ct.Usage["memory"]
			out[name] += m.Value()
		}
	}
	return out, nil
}
