// Command benchscale measures one kasa server with --disable-agent under
// many simulated nodes and pods (kwok's controller, built by
// scripts/build-kwok.sh): for each node count it adds nodes and 30 pods per
// node made by Deployments, waits until every pod is Running, keeps the
// cluster at rest with its heartbeats for a while, and reads the API
// server's own request latencies (apiserver_request_duration_seconds),
// the server's memory and CPU and the SQLite file's size. make bench-scale
// runs it and it writes its table and plot into docs/benchmarks.md. A
// measurement, not a test: nothing here fails because the machine was slow.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/tests/harness"
)

func main() {
	steps := flag.String("nodes", "100,300,500", "node counts to measure, in rising order")
	perNode := flag.Int("pods-per-node", 30, "pods per node")
	rest := flag.Duration("steady", time.Minute, "how long the cluster runs at rest at each step before its figures are read")
	doc := flag.String("doc", "docs/benchmarks.md", "the file whose scale section gets the table ('' prints it only)")
	plot := flag.String("svg", "docs/bench-scale.svg", "where the plot goes ('' writes none)")
	flag.Var(&opts.serverArgs, "server-arg", "an extra flag for kasa server, such as --kube-controller-manager-arg=kube-api-qps=50 (repeatable)")
	flag.Var(&opts.env, "env", "an extra NAME=value in the server's environment, such as GOMEMLIMIT=1200MiB (repeatable)")
	flag.StringVar(&opts.profiles, "profile", "", "a folder for the server's CPU profile of 30 s in each ramp and its heap profile at the end of each step")
	flag.Parse()
	var counts []int
	for _, f := range strings.Split(*steps, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || len(counts) > 0 && n <= counts[len(counts)-1] {
			fmt.Fprintf(os.Stderr, "benchscale: -nodes %q: want rising positive counts, such as 100,300,500\n", *steps)
			os.Exit(2)
		}
		counts = append(counts, n)
	}
	results, err := run(counts, *perNode, *rest)
	if len(results) > 0 {
		if werr := write(results, *perNode, *rest, *doc, *plot); werr != nil {
			fmt.Fprintln(os.Stderr, "benchscale:", werr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchscale:", err)
		os.Exit(1)
	}
}

// options are the flags that change the server or what is recorded.
type options struct {
	serverArgs, env harness.Strings
	profiles        string
}

var opts options

// step is what one node count measured.
type step struct {
	Nodes, Pods      int
	Ramp             time.Duration // from the first create to every pod Running
	Get, List, Write latency
	RSSMiB, HWMMiB   float64
	CPU              float64 // cores, averaged over the step
	DBMiB            float64
	Requests         int
}

type latency struct{ P50, P99 float64 } // seconds

func run(counts []int, perNode int, rest time.Duration) ([]step, error) {
	bin, err := harness.Binary()
	if err != nil {
		return nil, err
	}
	kwokBin, stages, err := harness.KwokBinary()
	if err != nil {
		return nil, err
	}
	s, err := harness.NewServer(bin)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.ExtraArgs, s.Env = slices.Clone(opts.serverArgs), opts.env
	if opts.profiles != "" {
		// kasa's components share one process: the API server's
		// profiles are the whole server's.
		s.ExtraArgs = append(s.ExtraArgs, "--kube-apiserver-arg=profiling=true")
		if err := os.MkdirAll(opts.profiles, 0o755); err != nil {
			return nil, err
		}
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	if err := s.WaitReady(2 * time.Minute); err != nil {
		return nil, fmt.Errorf("server: %w\n%s", err, s.LogTail(30))
	}
	cfg, err := s.RESTConfig()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	k, err := harness.StartKwok(kwokBin, stages, s.Kubeconfig(), "10.128.0.0/12", filepath.Join(s.DataDir, "kwok.log"))
	if err != nil {
		return nil, err
	}
	defer k.Stop()
	logf("server %s, kwok's log %s", s.DataDir, k.Log)

	ctx := context.Background()
	var results []step
	prev := 0
	for _, n := range counts {
		st, err := measure(ctx, s, cs, k, prev, n, perNode, rest)
		if err != nil {
			return results, fmt.Errorf("%d nodes: %w", n, err)
		}
		results = append(results, st)
		logf("%d nodes, %d pods: ramp %.0f s; GET p99 %s, LIST p99 %s, mutating p99 %s; RSS %.0f MiB (peak %.0f), CPU %.2f cores, SQLite %.0f MiB",
			st.Nodes, st.Pods, st.Ramp.Seconds(), secs(st.Get.P99), secs(st.List.P99), secs(st.Write.P99), st.RSSMiB, st.HWMMiB, st.CPU, st.DBMiB)
		prev = n
	}
	return results, nil
}

// measure grows the cluster from prev to n nodes and reads the step's
// figures.
func measure(ctx context.Context, s *harness.Server, cs kubernetes.Interface, k *harness.Kwok, prev, n, perNode int, rest time.Duration) (step, error) {
	st := step{Nodes: n, Pods: n * perNode}
	before, err := read(ctx, s, cs)
	if err != nil {
		return st, err
	}
	probeCtx, stopProbe := context.WithCancel(ctx)
	probeDone := make(chan struct{})
	go func() { defer close(probeDone); probe(probeCtx, cs) }()
	defer func() { stopProbe(); <-probeDone }()

	if opts.profiles != "" {
		// The CPU profile covers 30 s from a minute into the ramp.
		go func() {
			select {
			case <-probeCtx.Done():
			case <-time.After(time.Minute):
				saveProfile(probeCtx, cs, "profile", "seconds=30", fmt.Sprintf("cpu-%d.pprof", n))
			}
		}()
	}
	if err := harness.CreateKwokNodes(ctx, cs, prev, n, 16); err != nil {
		return st, err
	}
	// A namespace per ten nodes (300 pods), a Deployment per node.
	for i := prev; i < n; i++ {
		ns := namespace(i)
		if i%10 == 0 || i == prev {
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return st, err
			}
		}
		d := harness.KwokDeployment(fmt.Sprintf("app-%04d", i), int32(perNode))
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return st, err
		}
	}
	// Every pod Running, counted from the Deployments' status (a list of
	// every pod at each poll would be most of the load).
	deadline := before.at.Add(20 * time.Minute)
	for {
		if !k.Running() {
			return st, fmt.Errorf("kwok ended (its log: %s)", k.Log)
		}
		ready, err := readyReplicas(ctx, cs)
		if err == nil && ready == st.Pods {
			break
		}
		if time.Now().After(deadline) {
			if err != nil {
				return st, fmt.Errorf("pods not all ready after 20 minutes: %w", err)
			}
			return st, fmt.Errorf("%d of %d pods ready after 20 minutes", ready, st.Pods)
		}
		time.Sleep(2 * time.Second)
	}
	st.Ramp = time.Since(before.at)
	// Once per step, the whole check: bound to a simulated node, Running.
	running, total, notYet, err := harness.KwokPods(ctx, cs, "")
	if err != nil {
		return st, err
	}
	if running != st.Pods || total != st.Pods {
		return st, fmt.Errorf("%d of %d pods Running on simulated nodes, want %d: %v", running, total, st.Pods, notYet)
	}
	time.Sleep(rest)
	after, err := read(ctx, s, cs)
	if err != nil {
		return st, err
	}
	st.CPU = (after.cpu - before.cpu) / after.at.Sub(before.at).Seconds()
	d := after.requests.minus(before.requests)
	st.Get, st.List, st.Write = d.quantiles(isGet), d.quantiles(isList), d.quantiles(isWrite)
	st.Requests = d.count(func(string) bool { return true })
	logf("%d nodes, the slowest mutating requests: %s", n, strings.Join(d.worst(isWrite, 6), "; "))
	logf("%d nodes, the slowest LISTs: %s", n, strings.Join(d.worst(isList, 4), "; "))
	if opts.profiles != "" {
		saveProfile(ctx, cs, "heap", "gc=1", fmt.Sprintf("heap-%d.pprof", n))
	}
	rss, err := harness.StatusKiB(s.PID(), "VmRSS")
	if err != nil {
		return st, err
	}
	hwm, err := harness.StatusKiB(s.PID(), "VmHWM")
	if err != nil {
		return st, err
	}
	st.RSSMiB, st.HWMMiB = float64(rss)/1024, float64(hwm)/1024
	st.DBMiB = dbSize(s.DataDir)
	return st, nil
}

// reading is the server's request histograms and CPU time at one moment.
type reading struct {
	at       time.Time
	requests histograms
	cpu      float64 // seconds of user and system time
}

func read(ctx context.Context, s *harness.Server, cs kubernetes.Interface) (reading, error) {
	r := reading{at: time.Now()}
	var err error
	if r.requests, err = scrape(ctx, cs); err != nil {
		return r, err
	}
	f, err := harness.ProcStat(s.PID())
	if err != nil {
		return r, fmt.Errorf("the server's CPU time: %w", err)
	}
	if len(f) < 13 {
		return r, fmt.Errorf("the server's CPU time: %d fields in its stat", len(f))
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	r.cpu = (utime + stime) / 100 // USER_HZ
	return r, nil
}

// saveProfile writes one of the server's pprof profiles into the profile
// folder; a failure is logged, not fatal (the figures still count).
func saveProfile(ctx context.Context, cs kubernetes.Interface, kind, query, name string) {
	param, value, _ := strings.Cut(query, "=")
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/"+kind).SetHeader("Accept", "application/octet-stream").
		Timeout(2*time.Minute).Param(param, value).DoRaw(ctx)
	if err == nil {
		err = os.WriteFile(filepath.Join(opts.profiles, name), raw, 0o644)
	}
	if err != nil {
		logf("profile %s: %v", name, err)
		return
	}
	logf("profile %s: %d bytes", name, len(raw))
}

func namespace(node int) string { return fmt.Sprintf("scale-%03d", node/10) }

// probe is a client of its own next to the controllers': it reads a node
// and one namespace's pods five times a second and lists every node once a
// second, so that GET and LIST have figures of a user's calls.
func probe(ctx context.Context, cs kubernetes.Interface) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		_, _ = cs.CoreV1().Nodes().Get(ctx, "kwok-0000", metav1.GetOptions{})
		_, _ = cs.CoreV1().Pods(namespace(0)).List(ctx, metav1.ListOptions{})
		if i%5 == 0 {
			_, _ = cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		}
	}
}

func readyReplicas(ctx context.Context, cs kubernetes.Interface) (int, error) {
	ds, err := cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range ds.Items {
		if strings.HasPrefix(d.Namespace, "scale-") {
			n += int(d.Status.ReadyReplicas)
		}
	}
	return n, nil
}

// dbSize is the SQLite datastore's size with its write-ahead log.
func dbSize(dataDir string) float64 {
	var total int64
	matches, _ := filepath.Glob(datadir.New(dataDir).Server().SQLite() + "*")
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil {
			total += fi.Size()
		}
	}
	return float64(total) / (1 << 20)
}

func secs(v float64) string {
	if v < 1 {
		return fmt.Sprintf("%.0f ms", v*1000)
	}
	return fmt.Sprintf("%.2f s", v)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format(time.TimeOnly), fmt.Sprintf(format, args...))
}

func machine() string {
	return fmt.Sprintf("%s, %d cores", runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU())
}
