//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/tests/harness"
)

// catalogApp says how to reach an app's data with its own client.
type catalogApp struct {
	name string
	// secretKey holds the password the client uses, passed through env.
	secretKey, passwordEnv string
	// write stores 42; read prints it back.
	write, read string
}

var databases = []catalogApp{
	{"mysql", "mysql-root-password", "MYSQL_PWD",
		"mysql -h mysql -uroot -e 'CREATE DATABASE IF NOT EXISTS e2e; CREATE TABLE e2e.t (a INT); INSERT INTO e2e.t VALUES (42)'",
		"mysql -h mysql -uroot -N -e 'SELECT a FROM e2e.t'"},
	{"mariadb", "mariadb-root-password", "MYSQL_PWD",
		"mariadb -h mariadb -uroot -e 'CREATE DATABASE IF NOT EXISTS e2e; CREATE TABLE e2e.t (a INT); INSERT INTO e2e.t VALUES (42)'",
		"mariadb -h mariadb -uroot -N -e 'SELECT a FROM e2e.t'"},
	{"postgresql", "postgres-password", "PGPASSWORD",
		"psql -h postgresql -U postgres -c 'CREATE TABLE t (a int); INSERT INTO t VALUES (42)'",
		"psql -h postgresql -U postgres -tA -c 'SELECT a FROM t'"},
	{"redis", "redis-password", "REDISCLI_AUTH",
		"redis-cli -h redis SET e2e 42",
		"redis-cli -h redis GET e2e"},
}

// TestE2ECatalog: the app catalog on a real node, with stand-ins of the
// official images built from Debian packages (tests/images) imported under
// the official references, so the charts run as shipped.
func TestE2ECatalog(t *testing.T) {
	s, c := readyNode(t, "--disable", "metrics-server")
	ctx := context.Background()
	archives, err := harness.AppImages()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range archives {
		if err := s.DropImage(a); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Minute, "the app images imported", func() error {
		return s.ImagesImported("docker.io/library/mysql:8.4", "docker.io/library/mariadb:11.4", "docker.io/library/postgres:17",
			"docker.io/library/redis:7.4", "docker.io/library/nginx:1.27", "docker.io/library/tomcat:10.1", "docker.io/library/wordpress:6.7-apache",
			"docker.io/apache/kafka:3.9.1")
	})
	waitAddons(t, c, "traefik")
	ip := nodeIP(t, c)
	kasa := func(args ...string) (string, error) {
		cmd := exec.Command(s.Bin, args...)
		cmd.Env = append(harness.HermeticEnv(), "KUBECONFIG="+s.Kubeconfig())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	mustKasa := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := kasa(args...)
		if err != nil {
			t.Fatalf("kasa %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	t.Run("mysql: install, connect, persist, upgrade, uninstall", func(t *testing.T) {
		t.Cleanup(func() { kasa("uninstall", "mysql", "--purge") }) //nolint:errcheck // whatever the outcome
		start := time.Now()
		out := mustKasa(t, "install", "mysql")
		t.Logf("kasa install mysql returned in %s", time.Since(start).Round(100*time.Millisecond))
		for _, want := range []string{"mysql is ready", "mysql-root-password: ", "kubectl get secret"} {
			if !strings.Contains(out, want) {
				t.Errorf("install output has no %q:\n%s", want, out)
			}
		}
		secret := secretData(t, c, "mysql-auth")
		checkPersists(t, c, databases[0])

		mustKasa(t, "upgrade", "mysql", "--set", "resources.requests.memory=300Mi")
		waitFor(t, 3*time.Minute, "the upgraded StatefulSet", func() error {
			sts, err := c.AppsV1().StatefulSets("default").Get(ctx, "mysql", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if got := sts.Spec.Template.Spec.Containers[0].Resources.Requests.Memory().String(); got != "300Mi" {
				return fmt.Errorf("memory request %s", got)
			}
			if sts.Status.ReadyReplicas != 1 || sts.Status.UpdateRevision != sts.Status.CurrentRevision {
				return fmt.Errorf("not rolled out")
			}
			return nil
		})
		if after := secretData(t, c, "mysql-auth"); fmt.Sprint(after) != fmt.Sprint(secret) {
			t.Error("the upgrade changed the generated credentials")
		}
		out = runClientReachable(t, c, databases[0], databases[0].read)
		if !strings.Contains(out, "42") {
			t.Errorf("after the upgrade the row is gone: %q", out)
		}

		mustKasa(t, "uninstall", "mysql")
		waitFor(t, 60*time.Second, "mysql's objects removed", func() error {
			if _, err := c.AppsV1().StatefulSets("default").Get(ctx, "mysql", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("StatefulSet still there (%w)", err)
			}
			if _, err := c.CoreV1().Services("default").Get(ctx, "mysql", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("Service still there (%w)", err)
			}
			return nil
		})
		// The volume and the credentials that match it are kept.
		if pvcs := claims(t, c, "mysql"); len(pvcs) != 1 {
			t.Fatalf("after uninstall without --purge: claims %v, want the one kept", pvcs)
		}
		if kept := secretData(t, c, "mysql-auth"); fmt.Sprint(kept) != fmt.Sprint(secret) {
			t.Error("the kept credentials differ")
		}
		// Installed again, it finds its data with the same credentials.
		mustKasa(t, "install", "mysql")
		if out := runClientReachable(t, c, databases[0], databases[0].read); !strings.Contains(out, "42") {
			t.Errorf("a new install on the kept volume does not see the row: %q", out)
		}
		mustKasa(t, "uninstall", "mysql", "--purge")
		waitFor(t, 60*time.Second, "the claim and the credentials purged", func() error {
			if n := claims(t, c, "mysql"); len(n) != 0 {
				return fmt.Errorf("claims %v", n)
			}
			if _, err := c.CoreV1().Secrets("default").Get(ctx, "mysql-auth", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("Secret still there (%w)", err)
			}
			return nil
		})
	})

	for _, app := range databases[1:] {
		t.Run(app.name+": install, connect, persist", func(t *testing.T) {
			t.Cleanup(func() { kasa("uninstall", app.name, "--purge") }) //nolint:errcheck // whatever the outcome
			mustKasa(t, "install", app.name)
			checkPersists(t, c, app)
		})
	}

	for _, web := range []struct{ app, want string }{
		{"nginx", "Welcome to nginx!"},
		{"tomcat", "Apache Tomcat"},
		{"wordpress", ""},
	} {
		t.Run(web.app+" answers through --ingress-host on port 80", func(t *testing.T) {
			host := web.app + ".kasa.test"
			t.Cleanup(func() { kasa("uninstall", web.app, "--purge") }) //nolint:errcheck // whatever the outcome
			mustKasa(t, "install", web.app, "--ingress-host", host)
			waitFor(t, 60*time.Second, web.app+" through the ingress", func() error {
				code, body, loc, err := request("http://"+ip+"/", host)
				if err != nil {
					return err
				}
				switch {
				case web.app == "wordpress" && (code == 200 || code == 302 && strings.Contains(loc, "install.php")):
					return nil
				case web.want != "" && strings.Contains(body, web.want) && code != http.StatusBadGateway:
					return nil
				}
				return fmt.Errorf("%d %s %.200q", code, loc, body)
			})
		})
	}

	t.Run("kafka: dry run, install, produce and consume through the Service, persist, uninstall", func(t *testing.T) {
		out := mustKasa(t, "install", "kafka", "--dry-run")
		for _, want := range []string{"kind: StatefulSet", "objects checked by the API server"} {
			if !strings.Contains(out, want) {
				t.Errorf("dry run output has no %q:\n%s", want, tail(out, 20))
			}
		}
		if _, err := c.AppsV1().StatefulSets("default").Get(ctx, "kafka", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("the dry run created kafka's StatefulSet (%v)", err)
		}

		t.Cleanup(func() { kasa("uninstall", "kafka", "--purge") }) //nolint:errcheck // whatever the outcome
		start := time.Now()
		mustKasa(t, "install", "kafka")
		t.Logf("kasa install kafka returned in %s", time.Since(start).Round(100*time.Millisecond))
		checkKafka(t, c)
		mustKasa(t, "uninstall", "kafka", "--purge")
		waitFor(t, 60*time.Second, "kafka's StatefulSet, claim and cluster id removed", func() error {
			if _, err := c.AppsV1().StatefulSets("default").Get(ctx, "kafka", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("StatefulSet still there (%w)", err)
			}
			if n := claims(t, c, "kafka"); len(n) != 0 {
				return fmt.Errorf("claims %v", n)
			}
			if _, err := c.CoreV1().Secrets("default").Get(ctx, "kafka-auth", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("Secret still there (%w)", err)
			}
			return nil
		})
	})

	t.Run("the kubectl plugin, any chart, and the helm CLI", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Symlink(s.Bin, filepath.Join(dir, "kubectl-install")); err != nil {
			t.Fatal(err)
		}
		// The machine's own kubectl finds the plugin on PATH.
		cmd := exec.Command("kubectl", "install", "nginx", "plugged", "--no-wait")
		cmd.Env = append(harness.HermeticEnv(), "KUBECONFIG="+s.Kubeconfig(), "PATH="+dir+":"+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl install: %v\n%s", err, out)
		}
		chartDir := filepath.Join(dir, "some-chart")
		writeFiles(t, chartDir, map[string]string{
			"Chart.yaml":               "apiVersion: v2\nname: some-chart\nversion: 1.2.3\n",
			"templates/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  a: b\n",
		})
		mustKasa(t, "install", "chart", chartDir, "mine", "-n", "charts")
		if _, err := c.CoreV1().ConfigMaps("charts").Get(ctx, "mine", metav1.GetOptions{}); err != nil {
			t.Errorf("the chart's ConfigMap: %v", err)
		}
		helm := filepath.Join(dir, "helm")
		build := exec.Command("go", "build", "-o", helm, "helm.sh/helm/v3/cmd/helm")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build the helm CLI: %v\n%s", err, out)
		}
		hcmd := exec.Command(helm, "list", "-A")
		hcmd.Env = append(harness.HermeticEnv(), "KUBECONFIG="+s.Kubeconfig(), "HOME="+dir)
		out, err := hcmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helm list: %v\n%s", err, out)
		}
		for _, want := range []string{"plugged", "mine", "traefik"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("helm list -A does not show %s:\n%s", want, out)
			}
		}
		list := mustKasa(t, "list")
		for _, want := range []string{"plugged", "mine"} {
			if !strings.Contains(list, want) {
				t.Errorf("kasa list does not show %s:\n%s", want, list)
			}
		}
		mustKasa(t, "uninstall", "plugged")
		mustKasa(t, "uninstall", "mine", "-n", "charts")
	})

	t.Run("bad input gets a clear message and leaves nothing half-made", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"install", "mysq"}, "did you mean mysql"},
			{[]string{"install", "redis", "badvals", "--set", "persistence.size=5"}, "/persistence/size: got number, want string"},
			{[]string{"install", "redis", "badvals", "--set", "no.such.value=1"}, "additional properties 'no' not allowed"},
			{[]string{"install", "redis", "badvals", "--kubeconfig", unreachableKubeconfig(t)}, "does not answer"},
		} {
			out, err := kasa(tc.args...)
			if err == nil || !strings.Contains(out, tc.want) || !strings.HasPrefix(out, "kasa: ") {
				t.Errorf("kasa %s: %v, want one kasa: line with %q:\n%s", strings.Join(tc.args, " "), err, tc.want, out)
			}
		}
		if rels := mustKasa(t, "list"); strings.Contains(rels, "badvals") {
			t.Errorf("a refused install left a release:\n%s", rels)
		}

		// A namespace that does not exist is created; a second install
		// under the same name is refused with the way to change it.
		mustKasa(t, "install", "redis", "-n", "fresh-ns", "--no-wait")
		out, err := kasa("install", "redis", "-n", "fresh-ns")
		if err == nil || !strings.Contains(out, "kasa upgrade redis") {
			t.Errorf("a second install under a used name: %v\n%s", err, out)
		}

		// A timeout names the stuck pod and why, and leaves the release.
		out, err = kasa("install", "nginx", "stuck", "--set", "image.tag=no-such-tag", "--timeout", "20s")
		if err == nil || !strings.Contains(out, "not ready after 20s") || !strings.Contains(out, "stuck-") || !strings.Contains(out, "kasa status stuck") {
			t.Errorf("a timeout: %v\n%s", err, out)
		}
		if st := mustKasa(t, "status", "stuck"); !strings.Contains(st, "READY:") {
			t.Errorf("kasa status after a timeout:\n%s", st)
		}
		mustKasa(t, "uninstall", "stuck")
		mustKasa(t, "uninstall", "redis", "-n", "fresh-ns", "--purge")
	})
}

// recreatePod deletes a StatefulSet's pod and waits until a new one (another
// UID) is ready.
func recreatePod(t *testing.T, c kubernetes.Interface, pod string) {
	t.Helper()
	ctx := context.Background()
	old, err := c.CoreV1().Pods("default").Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CoreV1().Pods("default").Delete(ctx, pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, pod+" back and ready", func() error {
		p, err := c.CoreV1().Pods("default").Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.UID == old.UID {
			return fmt.Errorf("the old pod is still there")
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not ready")
	})
}

// checkPersists writes through a client pod, deletes the app's pod, and
// reads the value back once the app is ready again.
func checkPersists(t *testing.T, c kubernetes.Interface, app catalogApp) {
	t.Helper()
	if out := runClientReachable(t, c, app, app.write); strings.Contains(strings.ToLower(out), "error") {
		t.Fatalf("write: %s", out)
	}
	recreatePod(t, c, app.name+"-0")
	// The Service reaches the new pod once its endpoint is published and
	// kube-proxy has synced, a moment after the pod is ready.
	var out string
	for range 10 {
		if out = runClientOutput(t, c, app, app.read); strings.Contains(out, "42") {
			return
		}
		time.Sleep(2 * time.Second)
	}
	t.Errorf("%s: after the pod was replaced the value is gone: %q", app.name, out)
}

// runClientReachable runs a command in a pod of the app's own image, with
// the password from the app's Secret in the environment (never in
// arguments), and fails the test if the command keeps failing. It is for
// the first connection after the app's pod started: kasa install waits for
// the Service's endpoint, and kube-proxy programs it a moment later, so a
// command that fails is tried again for a while.
func runClientReachable(t *testing.T, c kubernetes.Interface, app catalogApp, script string) string {
	t.Helper()
	for try := 1; ; try++ {
		out, ok := clientPod(t, c, app, script)
		if ok {
			return out
		}
		if try == 10 {
			t.Fatalf("client %q failed %d times; the last time: %s", script, try, out)
		}
		t.Logf("client %q failed, trying again: %s", script, strings.TrimSpace(out))
		time.Sleep(2 * time.Second)
	}
}

// runClientOutput runs the command once and returns its output, failed or not.
func runClientOutput(t *testing.T, c kubernetes.Interface, app catalogApp, script string) string {
	t.Helper()
	out, _ := clientPod(t, c, app, script)
	return out
}

func clientPod(t *testing.T, c kubernetes.Interface, app catalogApp, script string) (string, bool) {
	t.Helper()
	ctx := context.Background()
	sts, err := c.AppsV1().StatefulSets("default").Get(ctx, app.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%s-client-%d", app.name, time.Now().UnixNano()%100000)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "client", Image: sts.Spec.Template.Spec.Containers[0].Image, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", script},
				Env: []corev1.EnvVar{{Name: app.passwordEnv, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: app.name + "-auth"}, Key: app.secretKey,
				}}}},
			}},
		},
	}
	if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer c.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}) //nolint:errcheck // best effort
	var phase corev1.PodPhase
	waitFor(t, 2*time.Minute, "client pod "+name+" done", func() error {
		p, err := c.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		phase = p.Status.Phase
		if phase != corev1.PodSucceeded && phase != corev1.PodFailed {
			return fmt.Errorf("phase %s", phase)
		}
		return nil
	})
	return podLogs(ctx, c, name), phase == corev1.PodSucceeded
}

func secretData(t *testing.T, c kubernetes.Interface, name string) map[string][]byte {
	t.Helper()
	s, err := c.CoreV1().Secrets("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Data
}

func claims(t *testing.T, c kubernetes.Interface, release string) []string {
	t.Helper()
	l, err := c.CoreV1().PersistentVolumeClaims("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range l.Items {
		names = append(names, p.Name)
	}
	return names
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// unreachableKubeconfig names an API server that does not exist.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	kc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
