//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

var (
	helmChartGVR  = schema.GroupVersionResource{Group: "helm.cattle.io", Version: "v1", Resource: "helmcharts"}
	helmConfigGVR = schema.GroupVersionResource{Group: "helm.cattle.io", Version: "v1", Resource: "helmchartconfigs"}
	apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
)

// TestE2EAddons: a node with every default add-on. Traefik routes an
// Ingress on the node's ports 80 and 443, ServiceLB gives LoadBalancer
// services the node's address, kubectl top shows figures, HelmCharts are
// installed, upgraded, reconfigured and uninstalled, a broken chart is
// reported and retried with backoff, the manifests folder is applied, and
// --disable removes each add-on across restarts until it is enabled again.
func TestE2EAddons(t *testing.T) {
	start := time.Now()
	s := startNode(t)
	ctx := context.Background()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := s.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "node Ready", func() error { return nodeReady(ctx, c) })
	waitAddons(t, c, "coredns", "traefik", "metrics-server")
	t.Logf("every default add-on available %s after the server started", time.Since(start).Round(100*time.Millisecond))
	ip := nodeIP(t, c)

	importTestImage(t, s)
	labels := map[string]string{"app": "web"}
	if _, err := c.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: testImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve", ":8080"},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
				}}},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "web available", func() error { return deploymentAvailable(ctx, c, "default", "web") })

	t.Run("an Ingress answers on the node's ports 80 and 443", func(t *testing.T) {
		prefix := networkingv1.PathTypePrefix
		backend := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
		paths := func(p string) *networkingv1.HTTPIngressRuleValue {
			return &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: p, PathType: &prefix, Backend: backend}}}
		}
		// No class named: the default IngressClass, traefik, takes it.
		if _, err := c.NetworkingV1().Ingresses("default").Create(ctx, &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
				{Host: "web.kasa.test", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: paths("/")}},
				{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: paths("/app")}},
			}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ing, err := c.NetworkingV1().Ingresses("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ptr.Deref(ing.Spec.IngressClassName, "") != "traefik" {
			t.Errorf("ingressClassName %q, want the default class traefik", ptr.Deref(ing.Spec.IngressClassName, ""))
		}
		for _, r := range []struct {
			url, host string
			code      int
		}{
			{"http://" + ip + "/", "web.kasa.test", 200},
			{"http://" + ip + "/app", "", 200},
			{"https://" + ip + "/", "web.kasa.test", 200},
			{"http://" + ip + "/", "other.kasa.test", 404},
		} {
			waitFor(t, 60*time.Second, fmt.Sprintf("%s with Host %q answers %d", r.url, r.host, r.code), func() error {
				code, body, _, err := request(r.url, r.host)
				if err != nil {
					return err
				}
				if code != r.code || code == 200 && !strings.Contains(body, "hello from web-") {
					return fmt.Errorf("%d %q", code, body)
				}
				return nil
			})
		}
		waitFor(t, 30*time.Second, "the Ingress shows the node's address", func() error {
			ing, err := c.NetworkingV1().Ingresses("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if lb := ing.Status.LoadBalancer.Ingress; len(lb) == 0 || lb[0].IP != ip {
				return fmt.Errorf("status %+v", lb)
			}
			return nil
		})
	})

	t.Run("a LoadBalancer Service gets the node's address and answers on it", func(t *testing.T) {
		for _, svc := range []struct {
			name string
			port int32
		}{{"web-lb", 8081}, {"web-lb-80", 80}} {
			if _, err := c.CoreV1().Services("default").Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: svc.name},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: labels,
					Ports: []corev1.ServicePort{{Port: svc.port, TargetPort: intstr.FromInt32(8080)}}},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 30*time.Second, "web-lb has the node's address", func() error { return lbAddress(ctx, c, "web-lb", ip) })
		waitFor(t, 30*time.Second, "web-lb answers", func() error {
			code, body, _, err := request(fmt.Sprintf("http://%s:8081/", ip), "")
			if err == nil && (code != 200 || !strings.Contains(body, "hello from web-")) {
				err = fmt.Errorf("%d %q", code, body)
			}
			return err
		})
		// Port 80 is Traefik's: the second service waits, and says why.
		waitFor(t, 30*time.Second, "web-lb-80 told that port 80 is taken", func() error {
			return hasEvent(ctx, c, "default", "web-lb-80", "PortInUse", "kube-system/traefik")
		})
		svc, err := c.CoreV1().Services("default").Get(ctx, "web-lb-80", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(svc.Status.LoadBalancer.Ingress) != 0 {
			t.Errorf("web-lb-80 got %v though Traefik holds port 80", svc.Status.LoadBalancer.Ingress)
		}
		if err := c.CoreV1().Services("default").Delete(ctx, "web-lb-80", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("kubectl top shows figures within 90 s of the start", func(t *testing.T) {
		deadline := 90*time.Second - time.Since(start)
		if deadline < 10*time.Second {
			deadline = 10 * time.Second
		}
		for _, args := range [][]string{{"top", "nodes"}, {"top", "pods", "-A"}} {
			waitFor(t, deadline, "kubectl "+strings.Join(args, " "), func() error {
				out, code, err := s.Run(append([]string{"kubectl", "--kubeconfig", s.Kubeconfig()}, args...)...)
				if err != nil || code != 0 {
					return fmt.Errorf("exit %d %w: %s", code, err, out)
				}
				if !strings.Contains(out, "MEMORY") || !strings.Contains(out, "Mi") {
					return fmt.Errorf("no figures: %s", out)
				}
				if args[1] == "pods" && !strings.Contains(out, "traefik-") {
					return fmt.Errorf("traefik's pod not listed: %s", out)
				}
				return nil
			})
		}
		t.Logf("kubectl top answered %s after the server started", time.Since(start).Round(100*time.Millisecond))
	})

	t.Run("a HelmChart is installed, upgraded, reconfigured and uninstalled", func(t *testing.T) {
		charts := dyn.Resource(helmChartGVR).Namespace("default")
		hc := helmChart("hello", helloChart(t, "{{ .Values.greeting }}"), "greeting: hello\n")
		hc.Object["spec"].(map[string]any)["targetNamespace"] = "hello-ns"
		hc.Object["spec"].(map[string]any)["createNamespace"] = true
		if _, err := charts.Create(ctx, hc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGreeting(t, c, dyn, "hello", 1)

		got, err := charts.Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedField(got.Object, "greeting: bye\n", "spec", "valuesContent"); err != nil {
			t.Fatal(err)
		}
		if _, err := charts.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGreeting(t, c, dyn, "bye", 2)

		if _, err := dyn.Resource(helmConfigGVR).Namespace("default").Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "helm.cattle.io/v1", "kind": "HelmChartConfig",
			"metadata": map[string]any{"name": "hello"},
			"spec":     map[string]any{"valuesContent": "greeting: configured\n"},
		}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGreeting(t, c, dyn, "configured", 3)
		if err := hasEvent(ctx, c, "default", "hello", "Upgraded", "revision 3"); err != nil {
			t.Error(err)
		}

		if err := charts.Delete(ctx, "hello", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "the release uninstalled", func() error {
			if _, err := charts.Get(ctx, "hello", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the HelmChart is still there (%w)", err)
			}
			if _, err := c.CoreV1().ConfigMaps("hello-ns").Get(ctx, "hello", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the release's ConfigMap is still there (%w)", err)
			}
			secrets, err := c.CoreV1().Secrets("hello-ns").List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=hello"})
			if err != nil {
				return err
			}
			if len(secrets.Items) != 0 {
				return fmt.Errorf("%d release records left", len(secrets.Items))
			}
			return nil
		})
		if err := dyn.Resource(helmConfigGVR).Namespace("default").Delete(ctx, "hello", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a HelmChart from a chart repository", func(t *testing.T) {
		// A chart repository on this machine, as a user's own would be.
		content := helloChart(t, "from a repository")
		tgz, err := base64.StdEncoding.DecodeString(content)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(tgz)
		index := "apiVersion: v1\nentries:\n  hello:\n  - apiVersion: v2\n    name: hello\n    version: 0.1.0\n" +
			"    urls: [charts/hello-0.1.0.tgz]\n    digest: " + hex.EncodeToString(sum[:]) + "\n"
		mux := http.NewServeMux()
		mux.HandleFunc("/index.yaml", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, index) })
		mux.HandleFunc("/charts/hello-0.1.0.tgz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(tgz) })
		repo := httptest.NewServer(mux)
		defer repo.Close()

		charts := dyn.Resource(helmChartGVR).Namespace("default")
		hc := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart",
			"metadata": map[string]any{"name": "hello"},
			"spec": map[string]any{"repo": repo.URL, "chart": "hello", "version": "0.1.0",
				"targetNamespace": "hello-ns", "createNamespace": true},
		}}
		if _, err := charts.Create(ctx, hc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGreeting(t, c, dyn, "from a repository", 1)
		if err := charts.Delete(ctx, "hello", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "the release uninstalled", func() error {
			if _, err := c.CoreV1().ConfigMaps("hello-ns").Get(ctx, "hello", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the release's ConfigMap is still there (%w)", err)
			}
			return nil
		})
	})

	t.Run("a chart that cannot render is reported and retried with backoff", func(t *testing.T) {
		charts := dyn.Resource(helmChartGVR).Namespace("default")
		if _, err := charts.Create(ctx, helmChart("broken", helloChart(t, "{{ .Values.greeting | nosuchfunction }}"), ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		created := time.Now()
		waitFor(t, 30*time.Second, "the failure in the status", func() error {
			msg, err := condition(ctx, dyn, "broken", "Failed", "True")
			if err == nil && !strings.Contains(msg, "nosuchfunction") {
				err = fmt.Errorf("message %q does not carry Helm's error", msg)
			}
			return err
		})
		waitFor(t, 30*time.Second, "the failure as an event", func() error {
			return hasEvent(ctx, c, "default", "broken", "InstallFailed", "nosuchfunction")
		})
		// Backoff from 5 s, doubling: about 4 attempts in 30 s; a hot loop
		// would make hundreds.
		time.Sleep(30*time.Second - time.Since(created))
		attempts := eventCount(ctx, c, "default", "broken", "InstallFailed")
		t.Logf("%d attempts in %s", attempts, time.Since(created).Round(time.Second))
		if attempts < 2 || attempts > 6 {
			t.Errorf("%d attempts in 30 s: want a retry with backoff (2 to 6)", attempts)
		}
		// Fixed, it installs at once, whatever the backoff had reached.
		got, err := charts.Get(ctx, "broken", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedField(got.Object, helloChart(t, "fixed"), "spec", "chartContent"); err != nil {
			t.Fatal(err)
		}
		if _, err := charts.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, "the fixed chart installed", func() error {
			_, err := condition(ctx, dyn, "broken", "Ready", "True")
			return err
		})
		if err := charts.Delete(ctx, "broken", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a file in the manifests folder is applied; a .skip file is not", func(t *testing.T) {
		dir := filepath.Join(s.DataDir, "server/manifests")
		cm := func(name string) []byte {
			return []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: default\ndata:\n  a: b\n")
		}
		if err := os.WriteFile(filepath.Join(dir, "e2e-skipped.yaml.skip"), cm("e2e-skipped"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "e2e-extra.yaml"), cm("e2e-extra"), 0o600); err != nil {
			t.Fatal(err)
		}
		written := time.Now()
		waitFor(t, 10*time.Second, "the dropped manifest applied", func() error {
			_, err := c.CoreV1().ConfigMaps("default").Get(ctx, "e2e-extra", metav1.GetOptions{})
			return err
		})
		t.Logf("applied %s after it was written", time.Since(written).Round(100*time.Millisecond))
		time.Sleep(6 * time.Second) // one more pass of the folder
		if _, err := c.CoreV1().ConfigMaps("default").Get(ctx, "e2e-skipped", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the .skip file was applied (%v)", err)
		}
	})

	t.Run("--disable removes each add-on across restarts; enabling brings it back", func(t *testing.T) {
		restart := func(args ...string) *kubernetes.Clientset {
			if _, err := s.Stop(30 * time.Second); err != nil {
				t.Fatal(err)
			}
			s.ExtraArgs = args
			return startAgain(t, s)
		}
		c := restart("--disable", "traefik,metrics-server,servicelb,coredns,local-storage")
		gone := func() error {
			for _, d := range []string{"traefik", "metrics-server", "coredns"} {
				if _, err := c.AppsV1().Deployments("kube-system").Get(ctx, d, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("deployment %s is still there (%w)", d, err)
				}
			}
			if _, err := dyn.Resource(helmChartGVR).Namespace("kube-system").Get(ctx, "traefik", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("HelmChart traefik is still there (%w)", err)
			}
			if _, err := c.CoreV1().Services("kube-system").Get(ctx, "traefik", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("service traefik is still there (%w)", err)
			}
			if _, err := dyn.Resource(apiServiceGVR).Get(ctx, "v1beta1.metrics.k8s.io", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the metrics APIService is still there (%w)", err)
			}
			if _, err := c.StorageV1().StorageClasses().Get(ctx, "local-path", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("StorageClass local-path is still there (%w)", err)
			}
			return nil
		}
		waitFor(t, 60*time.Second, "the disabled add-ons removed", gone)
		if _, err := c.CoreV1().Services("default").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web-lb-2"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: labels,
				Ports: []corev1.ServicePort{{Port: 8082, TargetPort: intstr.FromInt32(8080)}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}

		// The same flags again: still gone after a restart.
		c = restart("--disable", "traefik,metrics-server,servicelb,coredns,local-storage")
		time.Sleep(10 * time.Second) // two passes of the manifests folder
		if err := gone(); err != nil {
			t.Error(err)
		}
		if err := lbAddress(ctx, c, "web-lb-2", ip); err == nil {
			t.Error("web-lb-2 got an address with servicelb disabled")
		}

		c = restart()
		waitAddons(t, c, "coredns", "traefik", "metrics-server")
		waitFor(t, 30*time.Second, "web-lb-2 has the node's address", func() error { return lbAddress(ctx, c, "web-lb-2", ip) })
		waitFor(t, 30*time.Second, "StorageClass local-path back", func() error {
			_, err := c.StorageV1().StorageClasses().Get(ctx, "local-path", metav1.GetOptions{})
			return err
		})
		waitFor(t, 60*time.Second, "the Ingress answers again", func() error {
			code, _, _, err := request("http://"+ip+"/app", "")
			if err == nil && code != 200 {
				err = fmt.Errorf("%d", code)
			}
			return err
		})
	})
}

// waitAddons waits for the add-ons' Deployments in kube-system.
func waitAddons(t *testing.T, c kubernetes.Interface, names ...string) {
	t.Helper()
	for _, d := range names {
		waitFor(t, 3*time.Minute, d+" available", func() error { return deploymentAvailable(context.Background(), c, "kube-system", d) })
	}
}

func nodeIP(t *testing.T, c kubernetes.Interface) string {
	t.Helper()
	nodes, err := c.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range nodes.Items[0].Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	t.Fatal("the node has no InternalIP")
	return ""
}

// request GETs url with that Host header (and TLS server name), trusting
// any certificate (Traefik's default one is self-signed) and not following
// redirects: it returns the status, the body and the Location header.
func request(url, host string) (int, string, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", "", err
	}
	req.Host = host
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: host}} //nolint:gosec // Traefik's default certificate
	defer tr.CloseIdleConnections()
	cl := &http.Client{Timeout: 10 * time.Second, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Location"), err
}

func lbAddress(ctx context.Context, c kubernetes.Interface, name, ip string) error {
	svc, err := c.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP == ip {
			return nil
		}
	}
	return fmt.Errorf("%s: ingress %+v", name, svc.Status.LoadBalancer.Ingress)
}

// hasEvent finds an event about the named object with that reason whose
// message contains text.
func hasEvent(ctx context.Context, c kubernetes.Interface, ns, name, reason, text string) error {
	events, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err
	}
	var seen []string
	for _, e := range events.Items {
		if e.Reason == reason && strings.Contains(e.Message, text) {
			return nil
		}
		seen = append(seen, e.Reason+": "+e.Message)
	}
	return fmt.Errorf("no %s event with %q about %s (events: %q)", reason, text, name, seen)
}

func eventCount(ctx context.Context, c kubernetes.Interface, ns, name, reason string) int {
	events, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range events.Items {
		if e.Reason == reason {
			n += int(max(e.Count, 1))
		}
	}
	return n
}

// helloChart is a chart archive, base64-encoded, whose ConfigMap hello
// holds the greeting template.
func helloChart(t *testing.T, greeting string) string {
	t.Helper()
	files := map[string]string{
		"hello/Chart.yaml":               "apiVersion: v2\nname: hello\nversion: 0.1.0\n",
		"hello/values.yaml":              "greeting: hi\n",
		"hello/templates/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\ndata:\n  greeting: \"" + greeting + "\"\n",
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func helmChart(name, content, values string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"chartContent": content, "valuesContent": values},
	}}
}

// condition returns the message of a HelmChart's condition once it has
// that status.
func condition(ctx context.Context, dyn dynamic.Interface, name, typ, status string) (string, error) {
	hc, err := dyn.Resource(helmChartGVR).Namespace("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	conds, _, _ := unstructured.NestedSlice(hc.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			if m["status"] != status {
				return "", fmt.Errorf("%s is %v: %v", typ, m["status"], m["message"])
			}
			msg, _ := m["message"].(string)
			return msg, nil
		}
	}
	return "", fmt.Errorf("no %s condition yet", typ)
}

// waitGreeting waits for the hello release's ConfigMap to carry the
// greeting, and for the HelmChart to report that revision.
func waitGreeting(t *testing.T, c kubernetes.Interface, dyn dynamic.Interface, greeting string, revision int64) {
	t.Helper()
	ctx := context.Background()
	waitFor(t, 60*time.Second, "greeting "+greeting, func() error {
		cm, err := c.CoreV1().ConfigMaps("hello-ns").Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data["greeting"] != greeting {
			return fmt.Errorf("greeting %q", cm.Data["greeting"])
		}
		if _, err := condition(ctx, dyn, "hello", "Ready", "True"); err != nil {
			return err
		}
		hc, err := dyn.Resource(helmChartGVR).Namespace("default").Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if rev, _, _ := unstructured.NestedInt64(hc.Object, "status", "releaseRevision"); rev != revision {
			return fmt.Errorf("revision %d, want %d", rev, revision)
		}
		return nil
	})
}
