//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
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

// startAgain starts a stopped node's server and waits until its node is
// Ready by what the restarted kubelet wrote: its lease renewed and a Ready
// status posted after this start. (The Ready condition left in the API
// from before the stop would pass a plain look at once.)
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
	ctx := context.Background()
	node, err := harness.OnlyNode(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "node Ready by the restarted kubelet", func() error {
		return errors.Join(harness.LeaseRenewedAfter(ctx, c, node, s.Started), harness.ReadyPostedAfter(ctx, c, node, s.Started))
	})
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

// podState is what containerd and the API say about a running pod of one
// container. Containerd is asked after each start through `kasa crictl`,
// so its answer is never left over from before a stop; the pause process
// is looked at in /proc.
type podState struct {
	uid string
	// From containerd: the pod's ready sandbox, its pause process and the
	// sandbox's running container.
	sandbox          string
	sandboxCreated   time.Time
	pausePID         int
	pauseStart       string // the process's start time in /proc/PID/stat, which tells a reused pid
	container        string
	containerStarted time.Time
	// From the API: the container's status.
	statusContainer string
	restarts        int32
	statusStarted   time.Time
}

// podStates returns the state of the n running pods of selector, by name.
// It fails while the API's status names another container than the one
// containerd runs.
func podStates(ctx context.Context, s *harness.Server, c kubernetes.Interface, selector string, n int) (map[string]podState, error) {
	pods, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	var sandboxes struct {
		Items []struct {
			ID       string `json:"id"`
			Metadata struct {
				UID string `json:"uid"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := crictlJSON(s, &sandboxes, "pods", "--state", "ready", "-o", "json"); err != nil {
		return nil, err
	}
	var containers struct {
		Containers []struct {
			ID      string `json:"id"`
			Sandbox string `json:"podSandboxId"`
		} `json:"containers"`
	}
	if err := crictlJSON(s, &containers, "ps", "--state", "running", "-o", "json"); err != nil {
		return nil, err
	}
	out := map[string]podState{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		st := podState{uid: string(p.UID)}
		if len(p.Status.ContainerStatuses) != 1 {
			return nil, fmt.Errorf("pod %s: %d container statuses", p.Name, len(p.Status.ContainerStatuses))
		}
		cs := p.Status.ContainerStatuses[0]
		st.statusContainer, st.restarts = strings.TrimPrefix(cs.ContainerID, "containerd://"), cs.RestartCount
		if cs.State.Running == nil {
			return nil, fmt.Errorf("pod %s: the API says its container is not running", p.Name)
		}
		st.statusStarted = cs.State.Running.StartedAt.Time
		for _, sb := range sandboxes.Items {
			if sb.Metadata.UID != st.uid {
				continue
			}
			if st.sandbox != "" {
				return nil, fmt.Errorf("pod %s: two ready sandboxes", p.Name)
			}
			st.sandbox = sb.ID
		}
		if st.sandbox == "" {
			return nil, fmt.Errorf("pod %s: containerd has no ready sandbox for it", p.Name)
		}
		for _, ct := range containers.Containers {
			if ct.Sandbox == st.sandbox {
				st.container = ct.ID
			}
		}
		if st.container == "" {
			return nil, fmt.Errorf("pod %s: containerd runs no container in its sandbox %.12s", p.Name, st.sandbox)
		}
		if st.statusContainer != st.container {
			return nil, fmt.Errorf("pod %s: the API's status names container %.12s, containerd runs %.12s", p.Name, st.statusContainer, st.container)
		}
		var sb struct {
			Status struct {
				CreatedAt time.Time `json:"createdAt"`
			} `json:"status"`
			Info struct {
				PID int `json:"pid"`
			} `json:"info"`
		}
		if err := crictlJSON(s, &sb, "inspectp", "-o", "json", st.sandbox); err != nil {
			return nil, err
		}
		st.sandboxCreated, st.pausePID = sb.Status.CreatedAt, sb.Info.PID
		if st.pauseStart, err = procStart(st.pausePID); err != nil {
			return nil, fmt.Errorf("pod %s: the pause process of its sandbox: %w", p.Name, err)
		}
		var ct struct {
			Status struct {
				StartedAt time.Time `json:"startedAt"`
			} `json:"status"`
		}
		if err := crictlJSON(s, &ct, "inspect", "-o", "json", st.container); err != nil {
			return nil, err
		}
		st.containerStarted = ct.Status.StartedAt
		out[p.Name] = st
	}
	if len(out) != n {
		return nil, fmt.Errorf("%d pods, want %d", len(out), n)
	}
	return out, nil
}

// crictlJSON runs `kasa crictl args` on the node of s and decodes its output into v.
func crictlJSON(s *harness.Server, v any, args ...string) error {
	cmd := s.Command(append([]string{"crictl"}, args...)...)
	cmd.Env = append(cmd.Env, "KASA_DATA_DIR="+s.DataDir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("kasa crictl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("kasa crictl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// procStart returns a live process's start time (field 22 of its stat, in
// clock ticks since boot), or an error if no such process runs.
func procStart(pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("no pid (%d)", pid)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", fmt.Errorf("process %d: %w", pid, err)
	}
	// pid (comm) state ppid ... : field 3 is the first after the comm.
	st := string(b)
	f := strings.Fields(st[strings.LastIndexByte(st, ')')+1:])
	if len(f) < 20 || f[0] == "Z" {
		return "", fmt.Errorf("process %d is not alive (%s)", pid, strings.TrimSpace(st))
	}
	return f[19], nil
}

// TestE2ENodeLifecycle: the node comes up Ready with nothing pulled, runs
// pods, keeps them through a SIGTERM and restart of kasa (the same
// sandboxes, pause processes and containers); `kasa killall` leaves the
// host clean, and the next start brings the same pods back in new
// sandboxes. After each restart, what the test trusts was written after
// it: the node's lease and Ready heartbeat, containerd's answers, the
// containers' start times.
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
	var before map[string]podState
	waitFor(t, 90*time.Second, "2 pods running", func() (err error) {
		if _, err = runningPods(ctx, c, "app=sleeper", 2); err != nil {
			return err
		}
		before, err = podStates(ctx, s, c, "app=sleeper", 2)
		return err
	})

	// SIGTERM stops kasa's own processes; the pods keep running in their
	// shims, and the next start takes them over as they are: the same
	// sandboxes and pause processes, the same containers, not restarted.
	if _, err := s.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	for name, p := range before {
		if start, err := procStart(p.pausePID); err != nil || start != p.pauseStart {
			t.Fatalf("pod %s: its sandbox's pause process %d did not outlive kasa (%v)", name, p.pausePID, err)
		}
	}
	c = startAgain(t, s)
	var after map[string]podState
	waitFor(t, 30*time.Second, "containerd and the API on the pods after the restart", func() (err error) {
		after, err = podStates(ctx, s, c, "app=sleeper", 2)
		return err
	})
	if err := keptAcrossRestart(before, after); err != nil {
		t.Fatal(err)
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

	// Started again, the node brings the same pods back, in new sandboxes
	// with new containers: killall killed the old ones.
	c = startAgain(t, s)
	waitFor(t, 90*time.Second, "the pods back in new sandboxes after killall", func() error {
		back, err := podStates(ctx, s, c, "app=sleeper", 2)
		if err != nil {
			return err
		}
		return startedAnew(after, back, s.Started)
	})
}

// keptAcrossRestart returns nil if every pod of before runs on in after as
// it was: the same sandbox and pause process, the same container, started
// at the same time, and the API counts no restart. Else it lists what
// changed.
func keptAcrossRestart(before, after map[string]podState) error {
	var errs []error
	for name, p := range before {
		q, ok := after[name]
		if !ok || q.uid != p.uid {
			errs = append(errs, fmt.Errorf("pod %s was replaced across the restart", name))
			continue
		}
		if q.sandbox != p.sandbox || q.pausePID != p.pausePID || q.pauseStart != p.pauseStart {
			errs = append(errs, fmt.Errorf("pod %s: sandbox %.12s (pause pid %d) before the restart, %.12s (pid %d) after",
				name, p.sandbox, p.pausePID, q.sandbox, q.pausePID))
		}
		if q.container != p.container || !q.containerStarted.Equal(p.containerStarted) {
			errs = append(errs, fmt.Errorf("pod %s: container %.12s started at %s before the restart, %.12s started at %s after",
				name, p.container, p.containerStarted.Format(time.RFC3339Nano), q.container, q.containerStarted.Format(time.RFC3339Nano)))
		}
		if q.restarts != p.restarts || !q.statusStarted.Equal(p.statusStarted) {
			errs = append(errs, fmt.Errorf("pod %s: the API says %d restarts, started at %s before the restart; %d, started at %s after",
				name, p.restarts, p.statusStarted.Format(time.RFC3339), q.restarts, q.statusStarted.Format(time.RFC3339)))
		}
	}
	return errors.Join(errs...)
}

// startedAnew returns nil if every pod of before runs in after as the
// same pod (its UID) in a new sandbox with a new pause process and a new
// container, made and started after started, which the API shows with
// one restart more. Else it lists what is not new.
func startedAnew(before, after map[string]podState, started time.Time) error {
	var errs []error
	for name, p := range before {
		q, ok := after[name]
		if !ok || q.uid != p.uid {
			errs = append(errs, fmt.Errorf("pod %s was replaced", name))
			continue
		}
		if q.sandbox == p.sandbox || q.pausePID == p.pausePID {
			errs = append(errs, fmt.Errorf("pod %s: containerd shows sandbox %.12s (pause pid %d), the one from before", name, q.sandbox, q.pausePID))
		}
		if !q.sandboxCreated.After(started) {
			errs = append(errs, fmt.Errorf("pod %s: sandbox %.12s made at %s, before this start", name, q.sandbox, q.sandboxCreated.Format(time.RFC3339Nano)))
		}
		if q.container == p.container || !q.containerStarted.After(started) {
			errs = append(errs, fmt.Errorf("pod %s: container %.12s started at %s, before this start", name, q.container, q.containerStarted.Format(time.RFC3339Nano)))
		}
		if !q.statusStarted.After(started) {
			errs = append(errs, fmt.Errorf("pod %s: the API says its container started at %s, before this start", name, q.statusStarted.Format(time.RFC3339)))
		}
		// The kubelet counts the old sandbox's exited container, which
		// containerd still lists, as a restart.
		if q.restarts != p.restarts+1 {
			errs = append(errs, fmt.Errorf("pod %s: the API says %d restarts, %d before: want one more", name, q.restarts, p.restarts))
		}
	}
	return errors.Join(errs...)
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
// chains; nothing mounted under the data dir or /run/kasa; and (issue 17)
// no ipset of the network policy controller, nor the guard's table and
// route.
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
	if out, err := exec.Command("ipset", "list", "-n").Output(); err != nil || strings.Contains(string(out), "KUBE-") {
		t.Errorf("ipsets of the network policy controller left (%v): %s", err, lineWith(string(out), "KUBE-"))
	}
	if err := exec.Command("nft", "list", "table", "ip", "kasa").Run(); err == nil {
		t.Error("the nftables table ip kasa is still there")
	}
	if out, err := exec.Command("ip", "route", "show", "proto", "107").Output(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("the guard's route is still there (%v): %s", err, out)
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
