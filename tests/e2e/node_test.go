//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kasa-io/kasa/tests/harness"
)

// startNode starts `kasa server` with its node in a temporary data dir. A
// node owns machine-wide things (the kubelet's ports, /run/kasa, cni0), so
// the machine must not run another kasa node. Cleanup runs `kasa killall`.
func startNode(t *testing.T, extraArgs ...string) *harness.Server {
	t.Helper()
	requireRoot(t)
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []string{"10250", "10256"} {
		l, err := net.Listen("tcp", ":"+port)
		if err != nil {
			t.Fatalf("port %s is taken: this suite needs a machine without a running kasa node", port)
		}
		l.Close()
	}
	s, err := harness.NewServer(bin)
	if err != nil {
		t.Fatal(err)
	}
	s.Node = true
	s.ExtraArgs = extraArgs
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log (tail):\n%s", s.LogTail(80))
		}
		s.Kill()
		if out, code, err := s.Run("killall", "--data-dir", s.DataDir); code != 0 || err != nil {
			t.Errorf("kasa killall at cleanup: %d %v\n%s", code, err, out)
		}
		os.RemoveAll(s.DataDir)
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	return s
}

// readyNode starts a node and waits until it is Ready.
func readyNode(t *testing.T, extraArgs ...string) (*harness.Server, *kubernetes.Clientset) {
	t.Helper()
	s := startNode(t, extraArgs...)
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "node Ready", func() error { return nodeReady(context.Background(), c) })
	return s, c
}

// startAgain starts a stopped node's server and waits for the node to be Ready.
func startAgain(t *testing.T, s *harness.Server) *kubernetes.Clientset {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "node Ready after a restart", func() error { return nodeReady(context.Background(), c) })
	return c
}

func waitFor(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	if err := harness.Eventually(timeout, f); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func nodeReady(ctx context.Context, c kubernetes.Interface) error {
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(nodes.Items) != 1 {
		return fmt.Errorf("%d nodes", len(nodes.Items))
	}
	for _, cond := range nodes.Items[0].Status.Conditions {
		if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
			return nil
		}
	}
	return fmt.Errorf("node %s not Ready", nodes.Items[0].Name)
}

func runningPods(ctx context.Context, c kubernetes.Interface, selector string, n int) (map[string]string, error) {
	pods, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	uids := map[string]string{}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			return nil, fmt.Errorf("pod %s is %s", p.Name, p.Status.Phase)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if !cs.Ready {
				return nil, fmt.Errorf("pod %s not ready", p.Name)
			}
		}
		uids[p.Name] = string(p.UID)
	}
	if len(uids) != n {
		return nil, fmt.Errorf("%d running pods, want %d", len(uids), n)
	}
	return uids, nil
}

// TestE2ENodeLifecycle: the node comes up Ready with nothing pulled, runs
// pods, keeps them through a SIGTERM and restart of kasa; `kasa killall`
// leaves the host clean, and the next start brings the pods back.
func TestE2ENodeLifecycle(t *testing.T) {
	// Every registry goes to a mirror on a closed loopback port, with no
	// fallback to the registries' own endpoints.
	registries := filepath.Join(t.TempDir(), "registries.yaml")
	closed, err := harness.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(registries, []byte(fmt.Sprintf("mirrors:\n  \"*\":\n    endpoint: [\"http://127.0.0.1:%d\"]\n", closed[0])), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startNode(t, "--private-registry", registries, "--disable-default-registry-endpoint")
	ctx := context.Background()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "node Ready", func() error { return nodeReady(ctx, c) })

	// An image that exists nowhere fails fast instead of hanging on the internet.
	created := time.Now()
	if _, err := c.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nowhere"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "registry.example.com/nothing/here:1"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "ErrImagePull", func() error {
		p, err := c.CoreV1().Pods("default").Get(ctx, "nowhere", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
				if !strings.Contains(w.Message, fmt.Sprint(closed[0])) {
					t.Errorf("the pull error does not name the mirror: %s", w.Message)
				}
				return nil
			}
		}
		return fmt.Errorf("pod not failing yet")
	})
	t.Logf("the pull failed %s after the pod was created", time.Since(created).Round(100*time.Millisecond))
	if err := c.CoreV1().Pods("default").Delete(ctx, "nowhere", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "sleeper"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "sleeper"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "pause", Image: "kasa.local/pause:3.10.2", ImagePullPolicy: corev1.PullNever,
				}}},
			},
		},
	}
	if _, err := c.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var before map[string]string
	waitFor(t, 90*time.Second, "2 pods running", func() (err error) {
		before, err = runningPods(ctx, c, "app=sleeper", 2)
		return err
	})

	// SIGTERM stops kasa's own processes; the pods keep running in their shims.
	if _, err := s.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n := countProcs("pause"); n < 4 { // 2 sandboxes + 2 containers
		t.Fatalf("%d pause processes after kasa stopped; the pods did not survive", n)
	}
	c = startAgain(t, s)
	after, err := runningPods(ctx, c, "app=sleeper", 2)
	if err != nil {
		t.Fatal(err)
	}
	for name, uid := range before {
		if after[name] != uid {
			t.Fatalf("pod %s was replaced across the restart", name)
		}
	}

	// kasa killall leaves the host clean, data in place.
	out, code, err := s.Run("killall", "--data-dir", s.DataDir)
	if err != nil || code != 0 {
		t.Fatalf("kasa killall: %d %v\n%s", code, err, out)
	}
	assertClean(t, s.DataDir)
	if _, err := os.Stat(filepath.Join(s.DataDir, "server/db/state.db")); err != nil {
		t.Fatalf("killall removed data: %v", err)
	}

	// Started again, the node brings the same pods back.
	c = startAgain(t, s)
	waitFor(t, 90*time.Second, "the pods back after killall", func() error {
		back, err := runningPods(ctx, c, "app=sleeper", 2)
		if err != nil {
			return err
		}
		for name, uid := range before {
			if back[name] != uid {
				return fmt.Errorf("pod %s was replaced", name)
			}
		}
		return nil
	})
}

// countProcs counts live (not zombie) processes named comm.
func countProcs(comm string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ...
		st := string(b)
		open, closing := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if open < 0 || closing < open || len(st) < closing+3 {
			continue
		}
		if st[open+1:closing] == comm && st[closing+2] != 'Z' {
			n++
		}
	}
	return n
}

// assertClean checks what issue 3 lists: no kasa, containerd or shim
// processes; no cni0, flannel.1 or pod veths; no KUBE-, FLANNEL- or CNI-
// chains; nothing mounted under the data dir or /run/kasa.
func assertClean(t *testing.T, dataDir string) {
	t.Helper()
	if pids := processesUnder(dataDir); len(pids) > 0 {
		t.Errorf("processes still run from the data dir: %v", pids)
	}
	if n := countProcs("pause"); n > 0 {
		t.Errorf("%d pause processes still run", n)
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (strings.HasPrefix(f[4], dataDir) || strings.HasPrefix(f[4], "/run/kasa") || strings.HasPrefix(f[4], "/run/netns/cni-")) {
			t.Errorf("still mounted: %s", f[4])
		}
	}
	links, _ := exec.Command("ip", "-o", "link").Output()
	for _, name := range []string{"cni0", "flannel.1", "veth"} {
		if strings.Contains(string(links), " "+name) {
			t.Errorf("interface %s* still exists", name)
		}
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(save).Output()
		if err != nil {
			t.Errorf("%s: %v", save, err)
			continue
		}
		for _, chain := range []string{"KUBE-", "FLANNEL", "CNI-"} {
			if strings.Contains(string(out), chain) {
				t.Errorf("%s still shows %s chains", save, chain)
			}
		}
	}
	if _, err := os.Stat("/run/kasa"); err == nil {
		t.Error("/run/kasa still exists")
	}
}

// TestE2EFlannelHostGW: with --flannel-backend host-gw the node comes up
// without a vxlan device, and CoreDNS, which reaches the API through its
// service address, becomes ready over the pod network.
func TestE2EFlannelHostGW(t *testing.T) {
	_, c := readyNode(t, "--flannel-backend", "host-gw")
	ctx := context.Background()
	waitFor(t, 120*time.Second, "CoreDNS available", func() error { return deploymentAvailable(ctx, c, "kube-system", "coredns") })
	links, _ := exec.Command("ip", "-o", "link").Output()
	if strings.Contains(string(links), "flannel.1") {
		t.Error("host-gw made a vxlan device")
	}
	node, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if bt := node.Items[0].Annotations["flannel.alpha.coreos.com/backend-type"]; bt != "host-gw" {
		t.Errorf("flannel's backend annotation is %q", bt)
	}
}

// TestE2EFlannelNone: with --flannel-backend none kasa brings no pod network
// (the user installs one): the node registers but stays NotReady, saying the
// network is not ready, and kasa makes no flannel or bridge device.
func TestE2EFlannelNone(t *testing.T) {
	s := startNode(t, "--flannel-backend", "none")
	ctx := context.Background()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "node NotReady for want of a network", func() error {
		nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(nodes.Items) != 1 {
			return fmt.Errorf("%d nodes", len(nodes.Items))
		}
		for _, cond := range nodes.Items[0].Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status != corev1.ConditionTrue && strings.Contains(strings.ToLower(cond.Message), "network") {
				return nil
			}
		}
		return errors.New("no NotReady condition about the network yet")
	})
	links, _ := exec.Command("ip", "-o", "link").Output()
	for _, dev := range []string{"flannel.1", "cni0"} {
		if strings.Contains(string(links), " "+dev+":") {
			t.Errorf("%s exists with --flannel-backend none", dev)
		}
	}
}
