//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kasa-io/kasa/tests/harness"
)

// privilegedPod is a pod that the baseline Pod Security Standard refuses.
func privilegedPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "kasa.test/none:1",
			SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
		}}},
	}
}

// auditEvent is what the test reads of an audit.k8s.io/v1 Event.
type auditEvent struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"responseStatus"`
	RequestObject  json.RawMessage   `json:"requestObject"`
	ResponseObject json.RawMessage   `json:"responseObject"`
	Annotations    map[string]string `json:"annotations"`
}

// auditEvents reads the server's audit log.
func auditEvents(t *testing.T, s *harness.Server) []auditEvent {
	t.Helper()
	f, err := os.Open(filepath.Join(s.DataDir, "server", "logs", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events []auditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var e auditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit log line %q: %v", sc.Text(), err)
		}
		events = append(events, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return events
}

// warnings collects the API server's warnings to one client.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

// TestIntegrationPodSecurityAudit: a fresh server enforces the baseline
// Pod Security Standard: a privileged pod in default is refused with Pod
// Security's message, and the audit log records the refused request (who,
// what, 403, the policy) without its body; a pod that baseline allows is
// created with restricted's warning; kube-system is exempt, and a
// namespace labelled privileged takes the pod. A Secret's create and read
// are recorded, its data never.
func TestIntegrationPodSecurityAudit(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	cfg, err := s.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	warned := &warnings{}
	cfg.WarningHandler = warned
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	// The ServiceAccount admission plugin wants the namespace's default
	// account, which the controller-manager makes.
	serviceAccount := func(ns string) {
		eventually(t, 30*time.Second, func() error {
			_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err
		})
	}
	serviceAccount("default")
	serviceAccount("kube-system")
	_, err = c.CoreV1().Pods("default").Create(ctx, privilegedPod("privileged-1"), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)`) {
		t.Fatalf("privileged pod in default: %v, want Pod Security's refusal", err)
	}
	t.Logf("refused: %v", err)

	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain-1"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "kasa.test/none:1"}}}}
	if _, err := c.CoreV1().Pods("default").Create(ctx, plain, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a pod that baseline allows: %v", err)
	}
	warned.mu.Lock()
	got := strings.Join(warned.list, "\n")
	warned.mu.Unlock()
	if !strings.Contains(got, `would violate PodSecurity "restricted:latest"`) {
		t.Errorf("warnings %q, want restricted's", got)
	}

	if _, err := c.CoreV1().Pods("kube-system").Create(ctx, privilegedPod("privileged-2"), metav1.CreateOptions{}); err != nil {
		t.Errorf("privileged pod in kube-system (exempt): %v", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "node-agents",
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}}}
	if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	serviceAccount("node-agents")
	if _, err := c.CoreV1().Pods("node-agents").Create(ctx, privilegedPod("privileged-3"), metav1.CreateOptions{}); err != nil {
		t.Errorf("privileged pod in a namespace labelled privileged: %v", err)
	}

	const secretValue = "audit-must-never-hold-this-4f1c2"
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "audited"}, StringData: map[string]string{"password": secretValue}}
	if _, err := c.CoreV1().Secrets("default").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Secrets("default").Get(ctx, "audited", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}

	logFile := filepath.Join(s.DataDir, "server", "logs", "audit.log")
	if fi, err := os.Stat(logFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, want mode 0600", logFile, err)
	}
	var refused, secretCreate, secretGet bool
	eventually(t, 10*time.Second, func() error {
		for _, e := range auditEvents(t, s) {
			if e.RequestObject != nil || e.ResponseObject != nil {
				t.Fatalf("an audit event holds a body: %s %s", e.Verb, e.RequestObject)
			}
			if e.ObjectRef == nil || e.ResponseStatus == nil || e.Stage != "ResponseComplete" {
				continue
			}
			ref := *e.ObjectRef
			switch {
			case ref.Resource == "pods" && ref.Namespace == "default" && ref.Name == "privileged-1" && e.Verb == "create":
				refused = e.ResponseStatus.Code == 403 &&
					e.Annotations["pod-security.kubernetes.io/enforce-policy"] == "baseline:latest" &&
					strings.Contains(e.ResponseStatus.Message, "violates PodSecurity") &&
					e.User.Username != ""
				if !refused {
					t.Errorf("the refused pod's audit event: %+v %+v", e.ResponseStatus, e.Annotations)
				}
			case ref.Resource == "secrets" && ref.Namespace == "default" && e.Verb == "create":
				secretCreate = true
			case ref.Resource == "secrets" && ref.Name == "audited" && e.Verb == "get":
				secretGet = true
			}
		}
		if !refused || !secretCreate || !secretGet {
			return fmt.Errorf("audit log: refused pod %v, secret created %v, read %v", refused, secretCreate, secretGet)
		}
		return nil
	})
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), secretValue) {
		t.Error("the audit log holds a Secret's data")
	}
}

// TestIntegrationTLSPorts: every TCP port the server's processes listen on
// (the API server with kasa's join endpoint, the controller-manager and
// the scheduler, and nothing else without a node) serves TLS 1.2 and 1.3
// and refuses TLS 1.0, 1.1 and weak suites.
func TestIntegrationTLSPorts(t *testing.T) {
	s := startServer(t)
	addrs, err := harness.ListeningTCP(s.PID())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{strconv.Itoa(s.Port): true, strconv.Itoa(s.ControllerPort): true, strconv.Itoa(s.SchedulerPort): true}
	seen := map[string]bool{}
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		if !want[port] {
			t.Errorf("the server listens on %s, which this test does not know", a)
			continue
		}
		seen[port] = true
		if ip := net.ParseIP(host); ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		if err := harness.CheckTLSPolicy(net.JoinHostPort(host, port)); err != nil {
			t.Errorf("%s: %v", a, err)
		} else {
			t.Logf("%s: TLS 1.2 (modern suites) and 1.3 only", a)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("listening on %v, want the ports %v", addrs, want)
	}
}
