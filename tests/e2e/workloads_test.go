//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kasa-io/kasa/tests/harness"
)

const testImage = harness.TestImage

func deploymentAvailable(ctx context.Context, c kubernetes.Interface, ns, name string) error {
	d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if d.Spec.Replicas == nil || d.Status.AvailableReplicas != *d.Spec.Replicas {
		return fmt.Errorf("%s/%s: %d of %d available", ns, name, d.Status.AvailableReplicas, ptr.Deref(d.Spec.Replicas, 0))
	}
	return nil
}

// TestE2EWorkloads: CoreDNS comes up from the bundled image; a test image
// built from source and dropped into the images folder is imported while the
// node runs; a Deployment of it is reached through its Service's name from
// another pod and through a NodePort from the host; logs, exec and
// port-forward work.
func TestE2EWorkloads(t *testing.T) {
	s := startNode(t)
	ctx := context.Background()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "node Ready", func() error { return nodeReady(ctx, c) })
	waitFor(t, 120*time.Second, "CoreDNS available", func() error { return deploymentAvailable(ctx, c, "kube-system", "coredns") })

	imagesDir := filepath.Join(s.DataDir, "agent/images")
	dropped := importTestImage(t, s)

	labels := map[string]string{"app": "web"}
	_, err = c.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: testImage, ImagePullPolicy: corev1.PullNever,
					Args:           []string{"serve", ":8080"},
					Ports:          []corev1.ContainerPort{{ContainerPort: 8080}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
				}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{Selector: labels,
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "web-np"}, Spec: corev1.ServiceSpec{Selector: labels, Type: corev1.ServiceTypeNodePort,
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}},
	} {
		if _, err := c.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 90*time.Second, "web available", func() error { return deploymentAvailable(ctx, c, "default", "web") })
	t.Logf("2 pods of the test image ready %s after the archive was dropped", time.Since(dropped).Round(time.Second))

	t.Run("a corrupt archive is reported by name and harms nothing", func(t *testing.T) {
		broken := filepath.Join(imagesDir, "broken.tar.gz")
		if err := os.WriteFile(broken, []byte("this is not an image archive"), 0o600); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "the corrupt archive reported", func() error {
			if log := s.LogTail(400); !strings.Contains(log, "image archive not imported") || !strings.Contains(log, "broken.tar.gz") {
				return fmt.Errorf("no report yet")
			}
			return nil
		})
		if err := nodeReady(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := deploymentAvailable(ctx, c, "default", "web"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a second server on this machine is refused and harms nothing", func(t *testing.T) {
		second, err := harness.NewServer(s.Bin)
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		second.Node = true
		out, code, err := second.Run(second.Args()...)
		if err != nil || code == 0 {
			t.Fatalf("second server: code %d %v\n%s", code, err, out)
		}
		msg := strings.TrimSpace(out)
		if !strings.Contains(msg, "a kasa node already runs on this machine") || strings.Contains(msg, "\n") {
			t.Fatalf("want one line naming the running node, got:\n%s", msg)
		}
		if err := nodeReady(ctx, c); err != nil {
			t.Fatal(err)
		}
		if _, err := runningPods(ctx, c, "app=web", 2); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a missing kernel feature is named by check-config and harms nothing", func(t *testing.T) {
		// Simulated: in a mount namespace of its own, /proc/filesystems lacks overlay.
		fake := filepath.Join(t.TempDir(), "filesystems")
		if err := os.WriteFile(fake, []byte("nodev\tsysfs\nnodev\tproc\n\text4\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount --bind "$1" /proc/filesystems && exec "$2" check-config`, "sh", fake, s.Bin)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("check-config passed without overlay:\n%s", out)
		}
		for _, want := range []string{"FAIL     overlayfs", "modprobe overlay", "kasa: this host cannot run a kasa node: overlayfs"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if err := nodeReady(ctx, c); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("service name from another pod", func(t *testing.T) {
		_, err := c.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "client"},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{
				Name: "get", Image: testImage, ImagePullPolicy: corev1.PullNever,
				Args: []string{"get", "http://web.default.svc.cluster.local/"},
			}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "client pod done", func() error {
			p, err := c.CoreV1().Pods("default").Get(ctx, "client", metav1.GetOptions{})
			if err != nil {
				return err
			}
			switch p.Status.Phase {
			case corev1.PodSucceeded:
				return nil
			case corev1.PodFailed:
				t.Fatalf("client pod failed: %s", podLogs(ctx, c, "client"))
			}
			return fmt.Errorf("client pod %s", p.Status.Phase)
		})
		if out := podLogs(ctx, c, "client"); !strings.Contains(out, "hello from web-") {
			t.Fatalf("client got %q", out)
		}
	})

	t.Run("NodePort from the host", func(t *testing.T) {
		svc, err := c.CoreV1().Services("default").Get(ctx, "web-np", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		node, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ip := ""
		for _, a := range node.Items[0].Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ip = a.Address
			}
		}
		url := fmt.Sprintf("http://%s:%d/", ip, svc.Spec.Ports[0].NodePort)
		waitFor(t, 30*time.Second, "NodePort answers", func() error {
			body, err := httpGet(url)
			if err == nil && !strings.Contains(body, "hello from web-") {
				err = fmt.Errorf("body %q", body)
			}
			return err
		})
	})

	t.Run("kasa crictl and kasa ctr see the node's containers and images", func(t *testing.T) {
		run := func(args ...string) string {
			cmd := s.Command(args...)
			cmd.Env = append(cmd.Env, "KASA_DATA_DIR="+s.DataDir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kasa %v: %v\n%s", args, err, out)
			}
			return string(out)
		}
		if out := run("crictl", "ps", "--name", "web", "-q"); len(strings.Fields(out)) != 2 {
			t.Errorf("kasa crictl ps found %q, want the 2 web containers", out)
		}
		if out := run("ctr", "images", "ls", "-q"); !strings.Contains(out, testImage) {
			t.Errorf("kasa ctr images ls lacks %s:\n%s", testImage, out)
		}
	})

	t.Run("local-path volumes", func(t *testing.T) {
		pvc := func(name string, mode corev1.PersistentVolumeAccessMode) *corev1.PersistentVolumeClaim {
			return &corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{mode},
					Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
				},
			}
		}
		pod := func(name, claim string, args ...string) *corev1.Pod {
			return &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "c", Image: testImage, ImagePullPolicy: corev1.PullNever, Args: args,
						VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
					Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}},
				},
			}
		}
		succeeded := func(name string) func() error {
			return func() error {
				p, err := c.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if p.Status.Phase == corev1.PodFailed {
					t.Fatalf("pod %s failed: %s", name, podLogs(ctx, c, name))
				}
				if p.Status.Phase != corev1.PodSucceeded {
					return fmt.Errorf("pod %s is %s", name, p.Status.Phase)
				}
				return nil
			}
		}
		if _, err := c.CoreV1().PersistentVolumeClaims("default").Create(ctx, pvc("data", corev1.ReadWriteOnce), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// WaitForFirstConsumer: nothing is bound before a pod uses the claim.
		time.Sleep(2 * time.Second)
		if p, _ := c.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{}); p.Status.Phase != corev1.ClaimPending {
			t.Fatalf("claim is %s before any pod uses it", p.Status.Phase)
		}
		if _, err := c.CoreV1().Pods("default").Create(ctx, pod("writer", "data", "write", "/data/hello", "kept by kasa"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "writer done", succeeded("writer"))
		claim, err := c.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
		if err != nil || claim.Status.Phase != corev1.ClaimBound {
			t.Fatalf("claim: %v %v", err, claim.Status.Phase)
		}
		pv, err := c.CoreV1().PersistentVolumes().Get(ctx, claim.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dir := pv.Spec.HostPath.Path
		if !strings.HasPrefix(dir, filepath.Join(s.DataDir, "storage")+"/") || pv.Spec.NodeAffinity == nil {
			t.Fatalf("volume at %s, node affinity %v", dir, pv.Spec.NodeAffinity)
		}
		if err := c.CoreV1().Pods("default").Delete(ctx, "writer", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CoreV1().Pods("default").Create(ctx, pod("reader", "data", "cat", "/data/hello"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "reader done", succeeded("reader"))
		if out := podLogs(ctx, c, "reader"); out != "kept by kasa" {
			t.Fatalf("reader read %q", out)
		}
		if err := c.CoreV1().Pods("default").Delete(ctx, "reader", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		if err := c.CoreV1().PersistentVolumeClaims("default").Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "the volume's folder removed", func() error {
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				return fmt.Errorf("%s still there (stat: %w)", dir, err)
			}
			return nil
		})

		// ReadWriteMany cannot be a local folder: a clear provisioning error.
		if _, err := c.CoreV1().PersistentVolumeClaims("default").Create(ctx, pvc("shared", corev1.ReadWriteMany), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CoreV1().Pods("default").Create(ctx, pod("sharer", "shared", "cat", "/data/x"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "a ProvisioningFailed event", func() error {
			evs, err := c.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=shared"})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.Reason == "ProvisioningFailed" && strings.Contains(e.Message, "ask for ReadWriteOnce") {
					return nil
				}
			}
			return errors.New("no such event yet")
		})
	})

	t.Run("kubectl logs, exec and port-forward", func(t *testing.T) {
		kubectl := func(args ...string) (string, error) {
			out, _, err := s.Run(append([]string{"kubectl", "--kubeconfig", s.Kubeconfig()}, args...)...)
			return out, err
		}
		out, err := kubectl("logs", "deployment/web")
		if err != nil || !strings.Contains(out, "serving on :8080") {
			t.Fatalf("kubectl logs: %v\n%s", err, out)
		}
		out, err = kubectl("exec", "deployment/web", "--", "/testimage", "get", "http://127.0.0.1:8080/")
		if err != nil || !strings.Contains(out, "hello from web-") {
			t.Fatalf("kubectl exec: %v\n%s", err, out)
		}
		ports, err := harness.FreePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		pf := s.Command("kubectl", "--kubeconfig", s.Kubeconfig(), "port-forward", "deployment/web", fmt.Sprintf("%d:8080", ports[0]))
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
		waitFor(t, 20*time.Second, "port-forward answers", func() error {
			body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", ports[0]))
			if err == nil && !strings.Contains(body, "hello from web-") {
				err = fmt.Errorf("body %q", body)
			}
			return err
		})
	})
}

func podLogs(ctx context.Context, c kubernetes.Interface, name string) string {
	b, err := c.CoreV1().Pods("default").GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s", resp.Status)
	}
	return string(b), err
}

// importTestImage builds the test image, drops it into the running node's
// images folder compressed with zstd (one of the forms the folder takes),
// waits until containerd has it, and returns when it was dropped.
func importTestImage(t *testing.T, s *harness.Server) time.Time {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "web.tar")
	if err := harness.BuildTestImage(archive); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("zstd", "-q", "--rm", archive).CombinedOutput(); err != nil {
		t.Fatalf("zstd: %v\n%s", err, out)
	}
	if err := s.DropImage(archive + ".zst"); err != nil {
		t.Fatal(err)
	}
	dropped := time.Now()
	waitFor(t, 60*time.Second, "the dropped archive imported", func() error { return s.ImagesImported(testImage) })
	t.Logf("the dropped archive was imported %s after it appeared (the folder is scanned every 5 s)", time.Since(dropped).Round(100*time.Millisecond))
	return dropped
}
