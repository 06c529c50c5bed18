// Command bench measures kasa and prints the figures that docs/benchmarks.md
// records: start-up times, idle memory and API throughput. It runs the real
// binary ($KASA_BIN) in temporary data dirs on free ports. Benchmarks are
// measurements, not tests: nothing here fails because the machine was slow.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kasa-io/kasa/tests/harness"
	"github.com/kasa-io/kasa/tests/harness/hosts"
)

func main() {
	idle := flag.Duration("idle", time.Minute, "how long after start to read idle memory")
	starts := flag.Int("starts", 3, "cold and warm starts to take the median of")
	creates := flag.Int("creates", 2000, "ConfigMaps to create per throughput run")
	profile := flag.String("cpuprofile", "", "write the server's CPU profile during the 8-client load to this file")
	controlPlane := flag.Bool("control-plane", true, "measure the control plane alone (start times, idle memory, creates)")
	node := flag.Bool("node", os.Geteuid() == 0, "also measure a node (needs root and a machine without a kasa node)")
	agents := flag.Bool("agents", os.Geteuid() == 0, "also measure an agent joining a server, on test hosts (needs root and Docker: make host-image)")
	up := flag.Bool("up", os.Geteuid() == 0, "also measure kasa up to three test hosts (needs root and Docker: make host-image)")
	pods := flag.Int("pods", 50, "pods for the pod start latency")
	churn := flag.Duration("churn", 10*time.Minute, "how long the day-two figures' churn runs (0: no snapshot and churn figures)")
	catalog := flag.Bool("catalog", true, "with -node, also measure the app catalog on the node")
	release := flag.String("release", "", "also measure this release folder (dist/VERSION, as make release writes it): its sizes and a cold start from it")
	servers := flag.Bool("servers", true, "also measure the control plane on MariaDB (scripts/install-deps.sh installs it) and three servers on it")
	var env harness.Strings
	flag.Var(&env, "env", "NAME=VALUE for the server's environment, for experiments (repeatable)")
	flag.Var(&serverArgs, "server-arg", "an extra flag for the control plane's kasa server, such as --kube-apiserver-arg=audit-log-mode=batch, for experiments (repeatable)")
	flag.Parse()
	skipCatalog = !*catalog
	measureUp = *up
	if err := run(*idle, *starts, *creates, *profile, env, *controlPlane, *node, *agents, *pods, *servers, *churn, *release); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type row struct{ name, value, target string }

// skipCatalog leaves the app catalog's figures out of the node's (-catalog=false).
var skipCatalog bool

// measureUp runs benchUp (-up).
var measureUp bool

// serverArgs are extra flags for the control plane's servers (-server-arg).
var serverArgs harness.Strings

func run(idle time.Duration, starts, creates int, profile string, env []string, controlPlane, node, agents bool, pods int, servers bool, churn time.Duration, release string) error {
	bin, err := harness.Binary()
	if err != nil {
		return err
	}
	var rows []row
	add := func(name, value, target string) {
		rows = append(rows, row{name, value, target})
		fmt.Fprintf(os.Stderr, "%-58s %s\n", name, value)
	}

	if controlPlane {
		if err := benchControlPlane(bin, idle, starts, creates, profile, env, add); err != nil {
			return fmt.Errorf("control plane: %w", err)
		}
	}
	if release != "" {
		if err := benchRelease(bin, release, starts, node, add); err != nil {
			return fmt.Errorf("release: %w", err)
		}
	}
	if churn > 0 {
		if err := benchDayTwo(bin, churn, add); err != nil {
			return fmt.Errorf("day two: %w", err)
		}
	}
	if servers {
		if err := benchServers(bin, starts, creates, add); err != nil {
			return fmt.Errorf("servers: %w", err)
		}
	}
	if node {
		if err := benchNode(bin, idle, pods, add); err != nil {
			return fmt.Errorf("node: %w", err)
		}
	}
	if agents || measureUp {
		// The test hosts share this machine's kernel; what their nodes
		// change there is put back (and said) if their clean-up missed it.
		before := hosts.ReadSysctls()
		defer func() {
			for _, line := range hosts.RestoreSysctls(before) {
				fmt.Fprintln(os.Stderr, "bench: "+line)
			}
		}()
	}
	if agents {
		if err := benchAgents(bin, idle, add); err != nil {
			return fmt.Errorf("agents: %w", err)
		}
	}
	if measureUp {
		if err := benchUp(bin, release, add); err != nil {
			return fmt.Errorf("kasa up: %w", err)
		}
	}

	fmt.Printf("Measured %s on %s, %d cores, with `make bench` (tests/bench, %d starts each, median).\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), starts)
	fmt.Println("| figure | value | target |")
	fmt.Println("| --- | --- | --- |")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s |\n", r.name, r.value, r.target)
	}
	return nil
}

// benchControlPlane measures the control plane alone (kasa server
// --disable-agent): cold and warm starts to /readyz, the one process's idle
// RSS, and ConfigMap creates from 1 and 8 clients.
func benchControlPlane(bin string, idle time.Duration, starts, creates int, profile string, env []string, add func(name, value, target string)) error {
	// Cold starts: a fresh data dir each time, certificates included.
	var cold, warm []time.Duration
	var s *harness.Server
	for i := range starts {
		srv, err := harness.NewServer(bin)
		if err != nil {
			return err
		}
		srv.Env = env
		srv.ExtraArgs = slices.Clone(serverArgs)
		if profile != "" {
			srv.ExtraArgs = append(srv.ExtraArgs, "--kube-apiserver-arg", "profiling=true")
		}
		d, err := timeStart(srv)
		if err != nil {
			srv.Close()
			return err
		}
		cold = append(cold, d)
		if i < starts-1 {
			srv.Close()
		} else {
			s = srv
		}
	}
	defer s.Close()
	add("control plane: cold start to /readyz (with certificates)", median(cold), "< 3 s")

	// Warm starts: the same data dir, stopped with SIGTERM.
	for range starts {
		if _, err := s.Stop(20 * time.Second); err != nil {
			return err
		}
		d, err := timeStart(s)
		if err != nil {
			return err
		}
		warm = append(warm, d)
	}
	add("control plane: warm start to /readyz", median(warm), "< 1.5 s")

	if wait := idle - time.Since(s.Started); wait > 0 {
		time.Sleep(wait)
	}
	rss, err := rssKiB(s.PID())
	if err != nil {
		return err
	}
	add(fmt.Sprintf("control plane: idle RSS %s after a warm start", idle), fmt.Sprintf("%d MiB", rss/1024), "< 350 MiB")

	c, err := s.Client()
	if err != nil {
		return err
	}
	for _, clients := range []int{1, 8} {
		var prof chan error
		if profile != "" && clients == 8 {
			prof = make(chan error, 1)
			go func() { prof <- cpuProfile(s, profile, 4) }()
		}
		rate, p50, p99, err := createLoad(c, fmt.Sprintf("c%d", clients), creates, clients)
		if err != nil {
			return err
		}
		if prof != nil {
			if err := <-prof; err != nil {
				return err
			}
		}
		target := ""
		if clients == 8 {
			target = "> 1200/s, p99 < 20 ms"
		}
		add(fmt.Sprintf("ConfigMap creates, %d client(s), %d objects", clients, creates),
			fmt.Sprintf("%.0f/s, p50 %s, p99 %s", rate, ms(p50), ms(p99)), target)
	}
	return nil
}

func timeStart(s *harness.Server) (time.Duration, error) {
	if err := s.Start(); err != nil {
		return 0, err
	}
	if err := s.WaitReady(2 * time.Minute); err != nil {
		return 0, err
	}
	return time.Since(s.Started), nil
}

func median(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("%.2f s", s[len(s)/2].Seconds())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// rssKiB reads a process's resident set size.
func rssKiB(pid int) (int, error) { return harness.StatusKiB(pid, "VmRSS") }

// createLoad creates n ConfigMaps from the given number of concurrent
// clients and returns the rate and the latency percentiles.
func createLoad(c kubernetes.Interface, prefix string, n, clients int) (float64, time.Duration, time.Duration, error) {
	ctx := context.Background()
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan int)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				_, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%05d", prefix, i)},
					Data:       map[string]string{"k": "v"},
				}, metav1.CreateOptions{})
				lat[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, 0, 0, firstErr
	}
	slices.Sort(lat)
	return float64(n) / elapsed.Seconds(), lat[n/2], lat[n*99/100], nil
}

// cpuProfile saves the server process's CPU profile over the next seconds
// (the API server serves it when started with profiling=true).
func cpuProfile(s *harness.Server, file string, seconds int) error {
	cfg, err := s.RESTConfig()
	if err != nil {
		return err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	resp, err := hc.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", cfg.Host, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
