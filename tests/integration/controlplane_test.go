//go:build integration

// Integration tests of the control plane: the real kasa binary, run as a
// server with --disable-agent in a temporary data dir on free ports.
package integration

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/kasa-io/kasa/tests/harness"
)

const readyTimeout = 90 * time.Second

// startServer starts a kasa server and stops it when the test ends.
func startServer(t *testing.T, extra ...string) *harness.Server {
	t.Helper()
	return startServerWith(t, func(s *harness.Server) { s.ExtraArgs = extra })
}

// startServerWith starts a kasa server that setup has set up (its
// arguments, environment or data dir) and stops it when the test ends.
func startServerWith(t *testing.T, setup func(*harness.Server)) *harness.Server {
	t.Helper()
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	s, err := harness.NewServer(bin)
	if err != nil {
		t.Fatal(err)
	}
	setup(s)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", s.LogTail(60))
		}
		s.Close()
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	return s
}

func client(t *testing.T, s *harness.Server) *kubernetes.Clientset {
	t.Helper()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func stopAndRestart(t *testing.T, s *harness.Server) {
	t.Helper()
	took, err := s.Stop(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped cleanly in %s", took.Round(time.Millisecond))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationControlPlane covers what a fresh server must offer: /readyz
// through kasa kubectl, the default namespaces, authentication and
// authorization, and running controllers and scheduler.
func TestIntegrationControlPlane(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()

	t.Run("kasa kubectl reads readyz with the admin kubeconfig", func(t *testing.T) {
		cmd := s.Command("kubectl", "get", "--raw", "/readyz")
		cmd.Env = append(cmd.Env, "KASA_KUBECONFIG_OUTPUT="+s.Kubeconfig())
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			t.Fatalf("kasa kubectl get --raw /readyz: %v: %s", err, out)
		}
	})

	t.Run("a kubectl link lists the default namespaces", func(t *testing.T) {
		link := filepath.Join(t.TempDir(), "kubectl")
		if err := os.Symlink(s.Bin, link); err != nil {
			t.Fatal(err)
		}
		out, err := exec(link, "--kubeconfig", s.Kubeconfig(), "get", "namespaces", "-o", "name")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
			if !strings.Contains(out, "namespace/"+ns+"\n") {
				t.Errorf("namespace %s missing from:\n%s", ns, out)
			}
		}
	})

	t.Run("version is the stamped upstream release", func(t *testing.T) {
		v, err := client(t, s).Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(v.GitVersion, "v1.37.") || v.Major != "1" || v.Minor != "37" {
			t.Fatalf("server version %+v", v)
		}
	})

	t.Run("anonymous requests get 401", func(t *testing.T) {
		for _, path := range []string{"/api/v1/namespaces", "/readyz", "/version"} {
			code, err := s.AnonymousGet(ctx, path)
			if err != nil || code != http.StatusUnauthorized {
				t.Errorf("anonymous GET %s: %d %v", path, code, err)
			}
		}
	})

	t.Run("the admin can do everything", func(t *testing.T) {
		r, err := client(t, s).AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "*", Group: "*", Resource: "*"}},
		}, metav1.CreateOptions{})
		if err != nil || !r.Status.Allowed {
			t.Fatalf("admin may not do everything: %v %+v", err, r)
		}
	})

	t.Run("a service account without a role cannot list secrets", func(t *testing.T) {
		c := client(t, s)
		sa, err := c.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := c.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := s.RESTConfig()
		if err != nil {
			t.Fatal(err)
		}
		anon := rest.AnonymousClientConfig(cfg)
		anon.BearerToken = tok.Status.Token
		sac := kubernetes.NewForConfigOrDie(anon)
		_, err = sac.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("want 403 Forbidden, got %v", err)
		}
		// The token itself is valid: the service account may ask about itself.
		if _, err := sac.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("the service account's token does not authenticate: %v", err)
		}
	})

	t.Run("controllers and scheduler run and hold their leases", func(t *testing.T) {
		c := client(t, s)
		if _, err := c.AppsV1().Deployments("default").Create(ctx, deploymentOf("web", 2), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, func() error {
			rs, err := c.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return err
			}
			if len(rs.Items) != 1 {
				return fmt.Errorf("%d replicasets, want 1", len(rs.Items))
			}
			pods, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return err
			}
			if len(pods.Items) != 2 {
				return fmt.Errorf("%d pods, want 2", len(pods.Items))
			}
			for _, p := range pods.Items {
				if p.Status.Phase != corev1.PodPending {
					return fmt.Errorf("pod %s is %s", p.Name, p.Status.Phase)
				}
				// With no node, the scheduler has looked at it and said so.
				if !hasCondition(p, corev1.PodScheduled, corev1.ConditionFalse) {
					return fmt.Errorf("pod %s not yet tried by the scheduler", p.Name)
				}
			}
			return nil
		})
		for _, name := range []string{"kube-scheduler", "kube-controller-manager"} {
			eventually(t, 60*time.Second, func() error {
				l, err := c.CoordinationV1().Leases("kube-system").Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
					return fmt.Errorf("lease %s has no holder", name)
				}
				if l.Spec.RenewTime == nil || time.Since(l.Spec.RenewTime.Time) > 30*time.Second {
					return fmt.Errorf("lease %s is not being renewed", name)
				}
				return nil
			})
		}
	})
}

func hasCondition(p corev1.Pod, typ corev1.PodConditionType, status corev1.ConditionStatus) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == typ && c.Status == status {
			return true
		}
	}
	return false
}

// TestIntegrationRestartKeepsObjects creates 1000 ConfigMaps, stops the
// server with SIGTERM and starts it again.
func TestIntegrationRestartKeepsObjects(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	c := client(t, s)
	const n = 1000
	createConfigMaps(t, c, "keep", n)
	caBefore, _ := os.ReadFile(filepath.Join(s.DataDir, "server/tls/ca.crt"))
	tokenBefore, _ := os.ReadFile(filepath.Join(s.DataDir, "server/token"))

	stopAndRestart(t, s)

	c = client(t, s)
	list, err := c.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{LabelSelector: "set=keep"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != n {
		t.Fatalf("after restart: %d of %d ConfigMaps", len(list.Items), n)
	}
	caAfter, _ := os.ReadFile(filepath.Join(s.DataDir, "server/tls/ca.crt"))
	tokenAfter, _ := os.ReadFile(filepath.Join(s.DataDir, "server/token"))
	if string(caBefore) != string(caAfter) || string(tokenBefore) != string(tokenAfter) {
		t.Fatal("the restart replaced the CA or the token")
	}
}

func createConfigMaps(t *testing.T, c kubernetes.Interface, set string, n int) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%04d", set, i), Labels: map[string]string{"set": set}},
				Data:       map[string]string{"i": fmt.Sprint(i)},
			}, metav1.CreateOptions{})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestIntegrationKillKeepsAcknowledgedWrites kills the server with SIGKILL
// while a client creates objects; every create that returned success must be
// there after a restart, and the SQLite file must pass an integrity check.
func TestIntegrationKillKeepsAcknowledgedWrites(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	c := client(t, s)

	load := harness.StartLoad(c, 4, "kill")
	time.Sleep(1500 * time.Millisecond)
	s.Kill()
	acked := slices.Collect(maps.Keys(load.Stop()))
	if len(acked) < 50 {
		t.Fatalf("only %d creates succeeded before the kill: the test did not load the server", len(acked))
	}
	t.Logf("%d creates acknowledged before SIGKILL", len(acked))

	db, err := sql.Open("sqlite3", filepath.Join(s.DataDir, "server/db/state.db"))
	if err != nil {
		t.Fatal(err)
	}
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check after SIGKILL: %q %v", check, err)
	}
	db.Close()

	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	c = client(t, s)
	missing, err := harness.MissingConfigMaps(ctx, c, acked)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged creates lost after SIGKILL, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	if err := harness.Eventually(timeout, f); err != nil {
		t.Fatal(err)
	}
}

// exec runs a program and returns its combined output.
func exec(bin string, args ...string) (string, error) {
	out, err := osexec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// deploymentOf is a Deployment of replicas pods labelled app=name, whose
// image no registry serves: the control-plane tests have no node to run
// them, only controllers and a scheduler to act on them.
func deploymentOf(name string, replicas int32) *appsv1.Deployment {
	return harness.Deployment(name, replicas, corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "example.invalid/" + name + ":1"}}})
}
