package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// Simulated nodes and pods: kwok's controller (sigs.k8s.io/kwok, built by
// scripts/build-kwok.sh) plays the kubelet of every node that carries
// KwokAnnotation: it posts the node's status, renews its lease every 10 s
// (the kubelet's rate) and moves the pods bound to it to Running.
const (
	KwokAnnotation = "kwok.x-k8s.io/node"
	// KwokLabel selects the simulated nodes, and KwokTaint keeps every
	// other pod off them.
	KwokLabel = "type"
	kwokValue = "kwok"
)

// KwokTaint keeps pods that do not tolerate it off the simulated nodes.
var KwokTaint = corev1.Taint{Key: KwokAnnotation, Value: "fake", Effect: corev1.TaintEffectNoSchedule}

// KwokBinary returns $KASA_KWOK, kwok's program, and its stages file
// beside it (kwok-stages.yaml), which the Makefile builds and sets.
func KwokBinary() (bin, stages string, err error) {
	bin = os.Getenv("KASA_KWOK")
	if bin == "" {
		return "", "", errors.New("KASA_KWOK is not set: run through make (make integration builds kwok with scripts/build-kwok.sh)")
	}
	stages = filepath.Join(filepath.Dir(bin), "kwok-stages.yaml")
	for _, f := range []string{bin, stages} {
		if _, err := os.Stat(f); err != nil {
			return "", "", fmt.Errorf("KASA_KWOK: %w (scripts/build-kwok.sh builds it)", err)
		}
	}
	return bin, stages, nil
}

// Kwok is one kwok controller process.
type Kwok struct {
	cmd    *exec.Cmd
	exited chan struct{}
	Log    string
}

// StartKwok starts kwok's controller against the cluster of kubeconfig,
// for the nodes that carry KwokAnnotation=fake; its output goes to logFile.
// Simulated pods get addresses of podCIDR when their node has none.
func StartKwok(bin, stages, kubeconfig, podCIDR, logFile string) (*Kwok, error) {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin,
		"--kubeconfig", kubeconfig,
		"--config", stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector", KwokAnnotation+"=fake",
		"--node-lease-duration-seconds", "40",
		"--cidr", podCIDR)
	// kwok reads ~/.kwok/kwok.yaml too unless HOME points elsewhere.
	cmd.Env = append(HermeticEnv(), "HOME="+filepath.Dir(logFile))
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	k := &Kwok{cmd: cmd, exited: make(chan struct{}), Log: logFile}
	go func() { _ = cmd.Wait(); close(k.exited) }()
	return k, nil
}

// Running says whether the controller is still running.
func (k *Kwok) Running() bool {
	select {
	case <-k.exited:
		return false
	default:
		return true
	}
}

// PID is the controller's process id.
func (k *Kwok) PID() int { return k.cmd.Process.Pid }

// Stop ends the controller and waits for it.
func (k *Kwok) Stop() {
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
		<-k.exited
	}
}

// KwokNode is a simulated node named name: the annotation that kwok
// manages, the label the scale pods select and the taint that keeps other
// pods away, and a kubelet's capacity for 110 pods.
func KwokNode(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{KwokAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels: map[string]string{KwokLabel: kwokValue, "kubernetes.io/hostname": name,
				"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/role": "agent"},
		},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{KwokTaint}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
				corev1.ResourcePods: resource.MustParse("110"),
			},
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
				corev1.ResourcePods: resource.MustParse("110"),
			},
		},
	}
}

// CreateKwokNodes creates the simulated nodes kwok-<from> to kwok-<to-1>,
// with workers clients at once.
func CreateKwokNodes(ctx context.Context, cs kubernetes.Interface, from, to, workers int) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for i := from; i < to; i++ {
		g.Go(func() error {
			_, err := cs.CoreV1().Nodes().Create(ctx, KwokNode(fmt.Sprintf("kwok-%04d", i)), metav1.CreateOptions{})
			return err
		})
	}
	return g.Wait()
}

// KwokDeployment is a Deployment of replicas pods that only the simulated
// nodes take: each needs a little CPU and memory, as real pods do, so the
// scheduler scores them.
func KwokDeployment(name string, replicas int32) *appsv1.Deployment {
	return Deployment(name, replicas, corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65534),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		NodeSelector: map[string]string{KwokLabel: kwokValue},
		Tolerations:  []corev1.Toleration{{Key: KwokTaint.Key, Operator: corev1.TolerationOpExists, Effect: KwokTaint.Effect}},
		Containers: []corev1.Container{{
			Name: "app", Image: "kwok-pod:1", // never pulled: kwok runs no container
			SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
			}},
		}},
	})
}

// Deployment is a Deployment of replicas pods of pod, labelled app=name.
func Deployment(name string, replicas int32, pod corev1.PodSpec) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod},
		},
	}
}

// KwokPods counts, in namespace ns (every namespace if empty), the pods
// that are bound to a simulated node and Running, and returns the first
// few that are not.
func KwokPods(ctx context.Context, cs kubernetes.Interface, ns string) (running, total int, notYet []string, err error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: KwokLabel + "=" + kwokValue})
	if err != nil {
		return 0, 0, nil, err
	}
	simulated := map[string]bool{}
	for _, n := range nodes.Items {
		simulated[n.Name] = true
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
		LabelSelector: "app", FieldSelector: fields.OneTermNotEqualSelector("status.phase", "Succeeded").String()})
	if err != nil {
		return 0, 0, nil, err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		total++
		if simulated[p.Spec.NodeName] && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
			running++
		} else if len(notYet) < 5 {
			notYet = append(notYet, fmt.Sprintf("%s/%s on %q: %s", p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase))
		}
	}
	return running, total, notYet, nil
}

// KwokNodesReady returns the simulated nodes that are not Ready, or whose
// lease was not renewed since since.
func KwokNodesReady(ctx context.Context, cs kubernetes.Interface, since time.Time) ([]string, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: KwokLabel + "=" + kwokValue})
	if err != nil {
		return nil, err
	}
	leases, err := cs.CoordinationV1().Leases("kube-node-lease").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	renewed := map[string]time.Time{}
	for _, l := range leases.Items {
		if l.Spec.RenewTime != nil {
			renewed[l.Name] = l.Spec.RenewTime.Time
		}
	}
	var bad []string
	for _, n := range nodes.Items {
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
		}
		switch {
		case !ready:
			bad = append(bad, n.Name+": not Ready")
		case !renewed[n.Name].After(since):
			bad = append(bad, fmt.Sprintf("%s: lease renewed %s, not after %s", n.Name, renewed[n.Name].Format(time.TimeOnly), since.Format(time.TimeOnly)))
		}
	}
	return bad, nil
}
