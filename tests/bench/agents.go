package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/tests/harness"
	"github.com/kasa-io/kasa/tests/harness/hosts"
)

const (
	benchNetwork = hosts.Prefix + "bench-agents"
	benchSubnet  = "172.31.242.0/24"
	hostDataDir  = "/var/lib/kasa-host"
)

// benchAgents measures an agent on its own host (tests/harness/hosts): the
// time from its start to its node Ready, joining a server on another host,
// and its memory once idle (the kasa agent process and its containerd).
func benchAgents(bin string, idle time.Duration, add func(name, value, target string)) (err error) {
	ctx := context.Background()
	if err := hosts.Available(ctx); err != nil {
		return err
	}
	if err := hosts.Cleanup(benchNetwork); err != nil {
		return err
	}
	nw, err := hosts.NewNetwork(benchNetwork, benchSubnet)
	if err != nil {
		return err
	}
	var srv, ag *hosts.Host
	defer func() {
		// The agent first: the hosts share this machine's kernel, and the
		// server, started first, recorded its kernel settings as they were.
		for _, h := range []*hosts.Host{ag, srv} {
			if h != nil {
				_, _, _ = h.Exec(ctx, "kasa", "killall", "--data-dir", hostDataDir)
			}
		}
		err = errors.Join(err, nw.Close())
	}()
	files := map[string]string{"/usr/local/bin/kasa": bin}
	var wg sync.WaitGroup
	var srvErr, agErr error
	wg.Add(2)
	go func() { defer wg.Done(); srv, srvErr = nw.StartHost(ctx, "srv", hosts.HostOptions{Files: files}) }()
	go func() { defer wg.Done(); ag, agErr = nw.StartHost(ctx, "ag", hosts.HostOptions{Files: files}) }()
	wg.Wait()
	if err := errors.Join(srvErr, agErr); err != nil {
		return err
	}
	if _, stderr, err := srv.Exec(ctx, "systemd-run", "--unit", "kasa", "-p", "KillMode=process", "/usr/local/bin/kasa", "server",
		"--data-dir", hostDataDir, "--resolv-conf", hosts.PodResolvConf); err != nil {
		return fmt.Errorf("start the server: %w %s", err, stderr)
	}
	c, err := srv.Client(ctx, 2*time.Minute)
	if err != nil {
		return err
	}
	if _, err := until(3*time.Minute, func() error { return nodesReady(ctx, c, 1) }); err != nil {
		return err
	}
	tok, stderr, err := srv.Exec(ctx, "cat", hostDataDir+"/server/token")
	if err != nil {
		return fmt.Errorf("read the token: %w %s", err, stderr)
	}
	if err := ag.WriteFile(ctx, "/etc/kasa-token", []byte(tok), 0o600); err != nil {
		return err
	}
	started := time.Now()
	if _, stderr, err := ag.Exec(ctx, "systemd-run", "--unit", "kasa-agent", "-p", "KillMode=process", "/usr/local/bin/kasa", "agent",
		"--server", "https://"+srv.IP+":6443", "--token-file", "/etc/kasa-token",
		"--data-dir", hostDataDir, "--resolv-conf", hosts.PodResolvConf); err != nil {
		return fmt.Errorf("start the agent: %w %s", err, stderr)
	}
	ready, err := until(3*time.Minute, func() error { return nodesReady(ctx, c, 2) })
	if err != nil {
		return err
	}
	add("agent: start to node Ready, joining (bundle images imported)", secs(ready.Sub(started)), "< 15 s")
	if wait := idle - time.Since(started); wait > 0 {
		time.Sleep(wait)
	}
	out, stderr, err := ag.Exec(ctx, "ps", "-eo", "rss=,comm=")
	if err != nil {
		return fmt.Errorf("ps in the agent's host: %w %s", err, stderr)
	}
	kib := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		n, _ := strconv.Atoi(f[0])
		kib[f[1]] += n
	}
	// kasa's own split: the heap and stacks (anonymous) against the
	// executable's code paged back in (file).
	status, stderr, err := ag.Exec(ctx, "sh", "-c", "cat /proc/$(pidof -s kasa)/status")
	if err != nil {
		return fmt.Errorf("kasa's status in the agent's host: %w %s", err, stderr)
	}
	anon, err := harness.StatusFieldKiB(status, "RssAnon")
	if err != nil {
		return err
	}
	file, err := harness.StatusFieldKiB(status, "RssFile")
	if err != nil {
		return err
	}
	add(fmt.Sprintf("agent: idle RSS %s after start, kasa + containerd", idle),
		fmt.Sprintf("%d MiB (kasa %d: %d anon, %d file; containerd %d; shims %d)", (kib["kasa"]+kib["containerd"])/1024,
			kib["kasa"]/1024, anon/1024, file/1024, kib["containerd"]/1024, kib["containerd-shim"]/1024), "< 200 MiB")
	return nil
}

// nodesReady reports whether n nodes are there, all Ready.
func nodesReady(ctx context.Context, c kubernetes.Interface, n int) error {
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(nodes.Items) != n {
		return fmt.Errorf("%d nodes, want %d", len(nodes.Items), n)
	}
	for _, node := range nodes.Items {
		ok := false
		for _, cond := range node.Status.Conditions {
			ok = ok || cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue
		}
		if !ok {
			return fmt.Errorf("node %s not Ready", node.Name)
		}
	}
	return nil
}
