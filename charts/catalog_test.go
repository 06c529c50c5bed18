package charts

import (
	"encoding/base64"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/yaml"
)

// catalogApp is what the issue asks of one app of the catalog. The tests
// hold the charts to this table, not to their own values files.
type catalogApp struct {
	name  string
	image string // the default image reference
	kind  string // of the workload named after the release
	// keys of the Secret <release>-auth; none: the app has no Secret.
	keys []string
	// given maps a password's value path to the Secret key it lands in.
	given map[string]string
	// volume is the name of the workload's volume claim template; "": none.
	volume string
	http   bool
	// wrongTypes are values of the wrong type, beyond the common ones.
	wrongTypes []map[string]any
}

var catalogApps = []catalogApp{
	{
		name: "kafka", image: "docker.io/apache/kafka:3.9.1", kind: "StatefulSet",
		keys: []string{"kafka-cluster-id"}, volume: "data",
		wrongTypes: []map[string]any{{"config": map[string]any{"log.retention.hours": []any{72}}}, {"clusterId": "not-22-characters"}},
	},
	{
		name: "mariadb", image: "docker.io/library/mariadb:11.4", kind: "StatefulSet",
		keys:   []string{"mariadb-password", "mariadb-root-password"},
		given:  map[string]string{"auth.rootPassword": "mariadb-root-password", "auth.password": "mariadb-password"},
		volume: "data",
		wrongTypes: []map[string]any{
			{"auth": map[string]any{"password": 1234}},
			{"auth": map[string]any{"username": "root"}},
		},
	},
	{
		name: "mysql", image: "docker.io/library/mysql:8.4", kind: "StatefulSet",
		keys:   []string{"mysql-password", "mysql-root-password"},
		given:  map[string]string{"auth.rootPassword": "mysql-root-password", "auth.password": "mysql-password"},
		volume: "data",
		wrongTypes: []map[string]any{
			{"auth": map[string]any{"rootPassword": true}},
			{"auth": map[string]any{"database": "my app"}},
		},
	},
	{
		name: "nginx", image: "docker.io/library/nginx:1.27", kind: "Deployment", http: true,
		wrongTypes: []map[string]any{{"replicas": "two"}, {"replicas": -1}, {"html": map[string]any{"index.html": 5}}},
	},
	{
		name: "postgresql", image: "docker.io/library/postgres:17", kind: "StatefulSet",
		keys:   []string{"password", "postgres-password"},
		given:  map[string]string{"auth.postgresPassword": "postgres-password", "auth.password": "password"},
		volume: "data",
		wrongTypes: []map[string]any{
			{"auth": map[string]any{"password": 1234}},
			{"auth": map[string]any{"username": "postgres"}},
		},
	},
	{
		name: "redis", image: "docker.io/library/redis:7.4", kind: "StatefulSet",
		keys:       []string{"redis-password"},
		given:      map[string]string{"auth.password": "redis-password"},
		volume:     "data",
		wrongTypes: []map[string]any{{"auth": map[string]any{"password": 1234}}},
	},
	{
		name: "tomcat", image: "docker.io/library/tomcat:10.1", kind: "Deployment", http: true,
		wrongTypes: []map[string]any{{"replicas": "two"}, {"javaOpts": []any{"-Xmx1g"}}},
	},
	{
		name: "wordpress", image: "docker.io/library/wordpress:6.7-apache", kind: "StatefulSet",
		keys:   []string{"wordpress-password"},
		given:  map[string]string{"auth.adminPassword": "wordpress-password"},
		volume: "wp-content", http: true,
		wrongTypes: []map[string]any{
			{"auth": map[string]any{"adminPassword": 1234}},
			// The mysql chart's schema checks the values under mysql.
			{"mysql": map[string]any{"persistence": map[string]any{"size": 5}}},
			{"mysql": map[string]any{"bogus": true}},
		},
	},
}

const (
	testRelease   = "shop"
	testNamespace = "apps"
)

// install renders an app as the release shop in the namespace apps.
func install(t *testing.T, app string, vals map[string]any) rendered {
	t.Helper()
	out, err := renderRelease(app, release{name: testRelease, namespace: testNamespace}, vals)
	if err != nil {
		t.Fatalf("render %s: %v", app, err)
	}
	return parse(t, out)
}

// object is one rendered manifest.
type object struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	template string // the template it came from
	doc      []byte
}

// rendered is a chart's render: its objects and its notes.
type rendered struct {
	objects []object
	notes   string
	// files are the rendered templates, for searches.
	files map[string]string
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

func parse(t *testing.T, out map[string]string) rendered {
	t.Helper()
	r := rendered{files: out}
	for _, name := range slices.Sorted(maps.Keys(out)) {
		if strings.HasSuffix(name, "NOTES.txt") {
			// Helm shows the notes of the top chart only.
			if !strings.Contains(name, "/charts/") {
				r.notes = out[name]
			}
			continue
		}
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range docSeparator.Split(out[name], -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var o metav1.PartialObjectMetadata
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			r.objects = append(r.objects, object{TypeMeta: o.TypeMeta, ObjectMeta: o.ObjectMeta, template: name, doc: []byte(doc)})
		}
	}
	for _, o := range r.objects {
		if _, err := typed(o); err != nil {
			t.Errorf("%s %s (%s): %v", o.Kind, o.Name, o.template, err)
		}
	}
	return r
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// typed decodes an object into its API type, refusing unknown fields, so
// that a misspelt field fails here rather than being dropped by the API
// server.
func typed(o object) (runtime.Object, error) {
	var obj runtime.Object
	switch o.APIVersion + "/" + o.Kind {
	case "apps/v1/StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "apps/v1/Deployment":
		obj = &appsv1.Deployment{}
	case "v1/Service":
		obj = &corev1.Service{}
	case "v1/Secret":
		obj = &corev1.Secret{}
	case "v1/ConfigMap":
		obj = &corev1.ConfigMap{}
	case "networking.k8s.io/v1/Ingress":
		obj = &networkingv1.Ingress{}
	default:
		return nil, fmt.Errorf("a kind the tests do not know: %s %s", o.APIVersion, o.Kind)
	}
	if err := yaml.UnmarshalStrict(o.doc, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

func (r rendered) find(kind, name string) (object, bool) {
	for _, o := range r.objects {
		if o.Kind == kind && o.Name == name {
			return o, true
		}
	}
	return object{}, false
}

func (r rendered) kinds(kind string) []object {
	var out []object
	for _, o := range r.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func mustGet[T runtime.Object](t *testing.T, r rendered, kind, name string) T {
	t.Helper()
	o, ok := r.find(kind, name)
	if !ok {
		var names []string
		for _, o := range r.kinds(kind) {
			names = append(names, o.Name)
		}
		t.Fatalf("no %s %s rendered (there are: %v)", kind, name, names)
	}
	obj, err := typed(o)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(T)
}

// workload is the pod template and volume claims of a StatefulSet or a
// Deployment.
type workload struct {
	kind, name string
	selector   *metav1.LabelSelector
	pod        corev1.PodTemplateSpec
	claims     []corev1.PersistentVolumeClaim
}

func (r rendered) workloads(t *testing.T) []workload {
	t.Helper()
	var out []workload
	for _, o := range r.objects {
		switch o.Kind {
		case "StatefulSet":
			s := mustGet[*appsv1.StatefulSet](t, r, o.Kind, o.Name)
			out = append(out, workload{o.Kind, o.Name, s.Spec.Selector, s.Spec.Template, s.Spec.VolumeClaimTemplates})
		case "Deployment":
			d := mustGet[*appsv1.Deployment](t, r, o.Kind, o.Name)
			out = append(out, workload{o.Kind, o.Name, d.Spec.Selector, d.Spec.Template, nil})
		}
	}
	return out
}

func (r rendered) workload(t *testing.T, kind, name string) workload {
	t.Helper()
	for _, w := range r.workloads(t) {
		if w.kind == kind && w.name == name {
			return w
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return workload{}
}

// secretData is the decoded data of a rendered Secret.
func secretData(t *testing.T, r rendered, name string) map[string]string {
	t.Helper()
	s := mustGet[*corev1.Secret](t, r, "Secret", name)
	if len(s.StringData) > 0 {
		t.Errorf("Secret %s uses stringData; the charts keep to data", name)
	}
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	return out
}

func labelsOf(app catalogApp, o object) map[string]string {
	name := app.name
	if strings.Contains(o.template, "/charts/mysql/") {
		name = "mysql"
	}
	return map[string]string{
		"app.kubernetes.io/name":       name,
		"app.kubernetes.io/instance":   testRelease,
		"app.kubernetes.io/managed-by": "Helm",
		"helm.sh/chart":                name + "-0.1.0",
	}
}

var generated = regexp.MustCompile(`^[A-Za-z0-9]{20}$`)

func TestCatalogDefaults(t *testing.T) {
	for _, app := range catalogApps {
		t.Run(app.name, func(t *testing.T) {
			r := install(t, app.name, nil)

			for _, o := range r.objects {
				for k, v := range labelsOf(app, o) {
					if o.Labels[k] != v {
						t.Errorf("%s %s: label %s = %q, want %q", o.Kind, o.Name, k, o.Labels[k], v)
					}
				}
				if o.Namespace != testNamespace {
					t.Errorf("%s %s: namespace %q", o.Kind, o.Name, o.Namespace)
				}
				if o.Name != testRelease && !strings.HasPrefix(o.Name, testRelease+"-") {
					t.Errorf("%s %s is not named after the release", o.Kind, o.Name)
				}
			}

			w := r.workload(t, app.kind, testRelease)
			checkPod(t, app, w)
			checkService(t, r, w)
			checkSecretRefs(t, r)

			creds := 0
			for _, o := range r.kinds("Secret") {
				if o.Labels[CredentialsLabel] == "true" && o.Labels["app.kubernetes.io/name"] == app.name {
					creds++
				}
			}
			if len(app.keys) == 0 {
				if creds != 0 {
					t.Errorf("%s has %d credentials Secrets, want none", app.name, creds)
				}
			} else {
				if creds != 1 {
					t.Errorf("%s has %d credentials Secrets, want one", app.name, creds)
				}
				checkCredentials(t, app, r)
			}

			if app.volume == "" {
				if len(w.claims) != 0 {
					t.Errorf("%s has volume claims", app.name)
				}
			} else {
				checkClaim(t, app, w, "8Gi", "")
			}
			if len(r.kinds("Ingress")) != 0 {
				t.Error("an Ingress though ingress.host is not set")
			}
			checkNotes(t, app, r)
		})
	}
}

func checkPod(t *testing.T, app catalogApp, w workload) {
	t.Helper()
	pod := w.pod.Spec
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil || sel.Empty() {
		t.Fatalf("%s: selector %v (%v)", w.name, w.selector, err)
	}
	if !sel.Matches(labels.Set(w.pod.Labels)) {
		t.Errorf("%s: the selector %s does not match the pod's labels %v", w.name, sel, w.pod.Labels)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: no RuntimeDefault seccomp profile", w.name)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: the service account token is mounted; no app needs it", w.name)
	}
	if sc := pod.SecurityContext; sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && (sc.RunAsUser == nil || *sc.RunAsUser == 0) {
		t.Errorf("%s: runAsNonRoot without a numeric non-root runAsUser: the kubelet cannot check an image's user name", w.name)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers", w.name, len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != app.image {
		t.Errorf("%s: image %q, want %q", w.name, c.Image, app.image)
	}
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("%s: pull policy %q", w.name, c.ImagePullPolicy)
	}
	for what, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil {
			t.Errorf("%s: no %s probe", w.name, what)
			continue
		}
		checkProbe(t, w.name+" "+what, p, c)
	}
	if c.StartupProbe != nil {
		checkProbe(t, w.name+" startup", c.StartupProbe, c)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[res]; !ok || q.IsZero() {
			t.Errorf("%s: no %s request", w.name, res)
		}
	}
	if c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("%s: privilege escalation is not turned off", w.name)
	}
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounted[m.Name] = true
	}
	declared := map[string]bool{}
	for _, v := range pod.Volumes {
		declared[v.Name] = true
	}
	for _, pvc := range w.claims {
		declared[pvc.Name] = true
	}
	for name := range mounted {
		if !declared[name] {
			t.Errorf("%s mounts the volume %s, which is not declared", w.name, name)
		}
	}
	for name := range declared {
		if !mounted[name] {
			t.Errorf("%s declares the volume %s and mounts it nowhere", w.name, name)
		}
	}
}

// checkProbe checks that a probe reaches a port the container has, and
// that a password an exec probe needs comes from the environment.
func checkProbe(t *testing.T, what string, p *corev1.Probe, c corev1.Container) {
	t.Helper()
	var port *intOrName
	switch {
	case p.HTTPGet != nil:
		port = &intOrName{p.HTTPGet.Port.String()}
		if !strings.HasPrefix(p.HTTPGet.Path, "/") {
			t.Errorf("%s probe: path %q", what, p.HTTPGet.Path)
		}
	case p.TCPSocket != nil:
		port = &intOrName{p.TCPSocket.Port.String()}
	case p.Exec != nil:
		cmd := strings.Join(p.Exec.Command, " ")
		for _, ref := range regexp.MustCompile(`\$\{?([A-Z_]+)`).FindAllStringSubmatch(cmd, -1) {
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == ref[1] }) {
				t.Errorf("%s probe uses $%s, which the container does not have", what, ref[1])
			}
		}
	default:
		t.Errorf("%s probe has no handler", what)
	}
	if port != nil && !port.in(c.Ports) {
		t.Errorf("%s probe: port %s is not one of the container's", what, port.s)
	}
}

type intOrName struct{ s string }

func (p intOrName) in(ports []corev1.ContainerPort) bool {
	return slices.ContainsFunc(ports, func(cp corev1.ContainerPort) bool {
		return cp.Name == p.s || strconv.Itoa(int(cp.ContainerPort)) == p.s
	})
}

// checkService checks that the Service named after the release sends its
// ports to the workload's pods and their ports.
func checkService(t *testing.T, r rendered, w workload) {
	t.Helper()
	svc := mustGet[*corev1.Service](t, r, "Service", w.name)
	if len(svc.Spec.Selector) == 0 {
		t.Fatalf("Service %s selects nothing", svc.Name)
	}
	for k, v := range svc.Spec.Selector {
		if w.pod.Labels[k] != v {
			t.Errorf("Service %s selects %s=%s, which the pods of %s do not carry", svc.Name, k, v, w.name)
		}
	}
	if len(svc.Spec.Ports) == 0 {
		t.Errorf("Service %s has no port", svc.Name)
	}
	for _, p := range svc.Spec.Ports {
		if !(intOrName{p.TargetPort.String()}).in(w.pod.Spec.Containers[0].Ports) {
			t.Errorf("Service %s: target port %s is not one of %s's", svc.Name, p.TargetPort.String(), w.name)
		}
	}
}

// checkSecretRefs checks that each Secret and ConfigMap the pods use is
// rendered, with the keys they read.
func checkSecretRefs(t *testing.T, r rendered) {
	t.Helper()
	for _, w := range r.workloads(t) {
		for _, c := range w.pod.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				if _, ok := r.find("Secret", ref.Name); !ok {
					t.Errorf("%s: %s reads the Secret %s, which is not rendered", w.name, e.Name, ref.Name)
					continue
				}
				if _, ok := secretData(t, r, ref.Name)[ref.Key]; !ok {
					t.Errorf("%s: %s reads the key %s, which the Secret %s does not have", w.name, e.Name, ref.Key, ref.Name)
				}
			}
			for _, from := range c.EnvFrom {
				if from.SecretRef != nil {
					if _, ok := r.find("Secret", from.SecretRef.Name); !ok {
						t.Errorf("%s reads the Secret %s, which is not rendered", w.name, from.SecretRef.Name)
					}
				}
			}
		}
		for _, v := range w.pod.Spec.Volumes {
			if v.ConfigMap != nil {
				if _, ok := r.find("ConfigMap", v.ConfigMap.Name); !ok {
					t.Errorf("%s mounts the ConfigMap %s, which is not rendered", w.name, v.ConfigMap.Name)
				}
			}
		}
	}
}

func checkCredentials(t *testing.T, app catalogApp, r rendered) {
	t.Helper()
	name := testRelease + "-auth"
	s := mustGet[*corev1.Secret](t, r, "Secret", name)
	if s.Type != corev1.SecretTypeOpaque {
		t.Errorf("Secret %s: type %q", name, s.Type)
	}
	if s.Labels[CredentialsLabel] != "true" {
		t.Errorf("Secret %s is not labelled %s", name, CredentialsLabel)
	}
	data := secretData(t, r, name)
	if got := slices.Sorted(maps.Keys(data)); !slices.Equal(got, app.keys) {
		t.Errorf("Secret %s has the keys %v, want %v", name, got, app.keys)
	}
	for k, v := range data {
		if k == "kafka-cluster-id" {
			checkClusterID(t, v)
			continue
		}
		if !generated.MatchString(v) {
			t.Errorf("%s: generated %q, want 20 letters and digits", k, v)
		}
	}
}

// checkClusterID checks a value is what Kafka takes for a cluster ID: a
// UUID, 16 bytes, in unpadded base64url.
func checkClusterID(t *testing.T, id string) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(b) != 16 {
		t.Errorf("cluster ID %q is not 16 bytes of unpadded base64url (%v)", id, err)
	}
}

func checkClaim(t *testing.T, app catalogApp, w workload, size, class string) {
	t.Helper()
	if len(w.claims) != 1 {
		t.Fatalf("%s: %d volume claim templates, want 1", w.name, len(w.claims))
	}
	pvc := w.claims[0]
	if pvc.Name != app.volume {
		t.Errorf("%s: volume claim template %q, want %q", w.name, pvc.Name, app.volume)
	}
	for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance"} {
		if pvc.Labels[k] != w.pod.Labels[k] || pvc.Labels[k] == "" {
			t.Errorf("%s: the volume claim template's label %s = %q, want %q", w.name, k, pvc.Labels[k], w.pod.Labels[k])
		}
	}
	if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != size {
		t.Errorf("%s: volume size %s, want %s", w.name, q.String(), size)
	}
	got := ""
	if pvc.Spec.StorageClassName != nil {
		got = *pvc.Spec.StorageClassName
		if got == "" {
			t.Errorf("%s: storageClassName \"\" turns dynamic provisioning off; leave it out for the default class", w.name)
		}
	}
	if got != class {
		t.Errorf("%s: storage class %q, want %q", w.name, got, class)
	}
	if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOnce) {
		t.Errorf("%s: access modes %v", w.name, pvc.Spec.AccessModes)
	}
}

func checkNotes(t *testing.T, app catalogApp, r rendered) {
	t.Helper()
	if r.notes == "" {
		t.Fatal("no NOTES.txt")
	}
	if dns := testRelease + "." + testNamespace + ".svc"; !strings.Contains(r.notes, dns) {
		t.Errorf("the notes do not name %s:\n%s", dns, r.notes)
	}
	if !strings.Contains(r.notes, "kubectl run") && !strings.Contains(r.notes, "kubectl port-forward") {
		t.Errorf("the notes show no client command:\n%s", r.notes)
	}
	for _, key := range app.keys {
		want := fmt.Sprintf("kubectl get secret -n %s %s-auth -o jsonpath='{.data.%s}' | base64 -d", testNamespace, testRelease, key)
		if !strings.Contains(r.notes, want) {
			t.Errorf("the notes do not show how to read %s: %q", key, want)
		}
	}
	if strings.Contains(r.notes, "<no value>") {
		t.Errorf("the notes use a value that does not exist:\n%s", r.notes)
	}
}

func TestCatalogPersistence(t *testing.T) {
	for _, app := range catalogApps {
		if app.volume == "" {
			continue
		}
		t.Run(app.name, func(t *testing.T) {
			r := install(t, app.name, map[string]any{"persistence": map[string]any{"size": "20Gi", "storageClass": "fast"}})
			checkClaim(t, app, r.workload(t, app.kind, testRelease), "20Gi", "fast")

			r = install(t, app.name, map[string]any{"persistence": map[string]any{"enabled": false}})
			w := r.workload(t, app.kind, testRelease)
			if len(w.claims) != 0 {
				t.Errorf("persistence.enabled=false, yet %d volume claim templates", len(w.claims))
			}
			i := slices.IndexFunc(w.pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == app.volume })
			if i < 0 || w.pod.Spec.Volumes[i].EmptyDir == nil {
				t.Errorf("persistence.enabled=false: the volume %s is not an emptyDir", app.volume)
			}
			checkPod(t, app, w)
		})
	}
}

func TestCatalogSchemas(t *testing.T) {
	for _, app := range catalogApps {
		t.Run(app.name, func(t *testing.T) {
			ch, err := Load(app.name)
			if err != nil {
				t.Fatal(err)
			}
			if ch.Schema == nil {
				t.Fatal("no values.schema.json")
			}
			defaults, err := chartutil.CoalesceValues(ch, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := chartutil.ValidateAgainstSchema(ch, defaults); err != nil {
				t.Errorf("the schema refuses the defaults: %v", err)
			}

			wrong := []map[string]any{
				{"bogus": true},
				{"image": map[string]any{"tag": "8.4", "bogus": true}},
				{"image": map[string]any{"tag": 8.4}},
				{"image": map[string]any{"pullPolicy": "Sometimes"}},
				{"service": map[string]any{"port": "3306"}},
				{"service": map[string]any{"port": 0}},
				{"service": map[string]any{"type": "Internal"}},
				{"resources": map[string]any{"requests": map[string]any{"memory": "lots"}}},
				{"resources": map[string]any{"request": map[string]any{"memory": "1Gi"}}},
			}
			if app.volume != "" {
				wrong = append(wrong,
					map[string]any{"persistence": map[string]any{"size": 5}},
					map[string]any{"persistence": map[string]any{"size": "5 GB"}},
					map[string]any{"persistence": map[string]any{"enabled": "yes"}},
					map[string]any{"persistence": map[string]any{"sizes": "5Gi"}},
				)
			} else {
				wrong = append(wrong, map[string]any{"persistence": map[string]any{"enabled": true}})
			}
			if app.http {
				wrong = append(wrong,
					map[string]any{"ingress": map[string]any{"host": "Shop Example"}},
					map[string]any{"ingress": map[string]any{"host": true}},
					map[string]any{"ingress": map[string]any{"hosts": []any{"shop.example"}}},
				)
			} else {
				wrong = append(wrong, map[string]any{"ingress": map[string]any{"host": "shop.example"}})
			}
			if len(app.keys) == 0 {
				wrong = append(wrong, map[string]any{"auth": map[string]any{"password": "x"}})
			}
			wrong = append(wrong, app.wrongTypes...)

			for _, vals := range wrong {
				// As Helm checks them before it creates anything.
				_, err := renderRelease(app.name, release{name: testRelease, namespace: testNamespace}, vals)
				if err == nil || !strings.Contains(err.Error(), "schema") {
					t.Errorf("values %v: got %v, want a schema error", vals, err)
				}
			}
		})
	}
}

func TestCatalogIngress(t *testing.T) {
	for _, app := range catalogApps {
		if !app.http {
			continue
		}
		t.Run(app.name, func(t *testing.T) {
			r := install(t, app.name, map[string]any{"ingress": map[string]any{"host": "shop.example"}})
			ing := mustGet[*networkingv1.Ingress](t, r, "Ingress", testRelease)
			if ing.Spec.IngressClassName != nil {
				t.Errorf("ingressClassName %q, want none (the cluster's default)", *ing.Spec.IngressClassName)
			}
			if len(ing.Spec.TLS) != 0 {
				t.Error("TLS without ingress.tlsSecret")
			}
			if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host != "shop.example" || ing.Spec.Rules[0].HTTP == nil || len(ing.Spec.Rules[0].HTTP.Paths) != 1 {
				t.Fatalf("rules %+v, want one for shop.example", ing.Spec.Rules)
			}
			p := ing.Spec.Rules[0].HTTP.Paths[0]
			if p.Path != "/" || p.PathType == nil || *p.PathType != networkingv1.PathTypePrefix {
				t.Errorf("path %q (%v), want / as a prefix", p.Path, p.PathType)
			}
			backend := p.Backend.Service
			if backend == nil || backend.Name != testRelease {
				t.Fatalf("backend %+v, want the Service %s", p.Backend, testRelease)
			}
			svc := mustGet[*corev1.Service](t, r, "Service", backend.Name)
			if !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
				return (backend.Port.Name != "" && sp.Name == backend.Port.Name) || (backend.Port.Number != 0 && sp.Port == backend.Port.Number)
			}) {
				t.Errorf("the backend's port %+v is not one of the Service's", backend.Port)
			}
			if !strings.Contains(r.notes, "http://shop.example/") {
				t.Errorf("the notes do not give the URL http://shop.example/:\n%s", r.notes)
			}

			r = install(t, app.name, map[string]any{"ingress": map[string]any{
				"host": "shop.example", "className": "traefik", "tlsSecret": "shop-tls",
				"annotations": map[string]any{"example.com/note": "kept"},
			}})
			ing = mustGet[*networkingv1.Ingress](t, r, "Ingress", testRelease)
			if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "traefik" {
				t.Errorf("ingressClassName %v, want traefik", ing.Spec.IngressClassName)
			}
			if len(ing.Spec.TLS) != 1 || ing.Spec.TLS[0].SecretName != "shop-tls" || !slices.Equal(ing.Spec.TLS[0].Hosts, []string{"shop.example"}) {
				t.Errorf("tls %+v, want shop-tls for shop.example", ing.Spec.TLS)
			}
			if ing.Annotations["example.com/note"] != "kept" {
				t.Errorf("annotations %v", ing.Annotations)
			}
			if !strings.Contains(r.notes, "https://shop.example/") {
				t.Errorf("with TLS, the notes do not give the URL https://shop.example/:\n%s", r.notes)
			}
		})
	}
}

// set returns values with the dotted path set to v.
func set(vals map[string]any, path string, v any) map[string]any {
	keys := strings.Split(path, ".")
	m := vals
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[keys[len(keys)-1]] = v
	return vals
}

func TestCatalogGivenPasswords(t *testing.T) {
	for _, app := range catalogApps {
		if len(app.given) == 0 {
			continue
		}
		t.Run(app.name, func(t *testing.T) {
			for path, key := range app.given {
				// One given, the others generated.
				given := "given-" + strings.ReplaceAll(path, ".", "-") + "!$ '\"x"
				r := install(t, app.name, set(map[string]any{}, path, given))
				data := secretData(t, r, testRelease+"-auth")
				if data[key] != given {
					t.Errorf("%s=%q: the Secret holds %q under %s", path, given, data[key], key)
				}
				for k, v := range data {
					if k != key && !generated.MatchString(v) {
						t.Errorf("%s: %q, want a generated value", k, v)
					}
				}
				for name, text := range r.files {
					if strings.Contains(text, given) {
						t.Errorf("%s shows the password given in %s", name, path)
					}
				}
				for k, v := range data {
					for name, text := range r.files {
						if strings.Contains(text, v) {
							t.Errorf("%s shows the password %s", name, k)
						}
					}
				}
			}

			a := secretData(t, install(t, app.name, nil), testRelease+"-auth")
			b := secretData(t, install(t, app.name, nil), testRelease+"-auth")
			for k := range a {
				if a[k] == b[k] {
					t.Errorf("%s: two installs generated the same %q", k, a[k])
				}
			}
		})
	}
}

// cluster answers the templates' lookups from a fixed set of objects.
type cluster []runtime.Object

func (c cluster) GetClientFor(apiVersion, kind string) (dynamic.NamespaceableResourceInterface, bool, error) {
	if apiVersion != "v1" || kind != "Secret" {
		return nil, false, fmt.Errorf("the charts look up only Secrets, not %s %s", apiVersion, kind)
	}
	return dynamicfake.NewSimpleDynamicClient(runtime.NewScheme(), c...).Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}), true, nil
}

func secret(name string, data map[string]string) *unstructured.Unstructured {
	enc := map[string]any{}
	for k, v := range data {
		enc[k] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": name, "namespace": testNamespace},
		"data":     enc,
	}}
}

func TestCatalogUpgradeKeepsCredentials(t *testing.T) {
	for _, app := range catalogApps {
		if len(app.keys) == 0 {
			continue
		}
		t.Run(app.name, func(t *testing.T) {
			// Every Secret of a first install, as the cluster then holds them.
			first := install(t, app.name, nil)
			var existing cluster
			kept := map[string]map[string]string{}
			for _, o := range first.kinds("Secret") {
				kept[o.Name] = secretData(t, first, o.Name)
				existing = append(existing, secret(o.Name, kept[o.Name]))
			}
			before := kept[testRelease+"-auth"]
			upgrade := release{name: testRelease, namespace: testNamespace, upgrade: true, cluster: existing}

			out, err := renderRelease(app.name, upgrade, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := parse(t, out)
			for name, data := range kept {
				if after := secretData(t, r, name); !maps.Equal(after, data) {
					t.Errorf("the upgrade changed the Secret %s: %v, then %v", name, data, after)
				}
			}

			// A value given at the upgrade wins over the kept one.
			for path, key := range app.given {
				out, err := renderRelease(app.name, upgrade, set(map[string]any{}, path, "changed"))
				if err != nil {
					t.Fatal(err)
				}
				after := secretData(t, parse(t, out), testRelease+"-auth")
				for k := range before {
					want := before[k]
					if k == key {
						want = "changed"
					}
					if after[k] != want {
						t.Errorf("%s=changed: %s is %q, want %q", path, k, after[k], want)
					}
				}
			}
		})
	}
}

func TestCatalogInfo(t *testing.T) {
	apps, err := Catalog()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	var want []string
	for _, a := range catalogApps {
		want = append(want, a.name)
	}
	if !slices.Equal(names, want) {
		t.Fatalf("Catalog() lists %v, want %v (sorted, no system chart)", names, want)
	}
	for i, a := range apps {
		app := catalogApps[i]
		_, tag, _ := strings.Cut(strings.TrimPrefix(app.image, "docker.io/"), ":")
		if a.Version != "0.1.0" || a.AppVersion != tag || a.HTTP != app.http {
			t.Errorf("%s: %+v, want version 0.1.0, appVersion %s, HTTP %v", a.Name, a, tag, app.http)
		}
		if a.Description == "" || strings.Contains(a.Description, "\n") {
			t.Errorf("%s: description %q, want one line", a.Name, a.Description)
		}
		ch, err := Load(a.Name)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Metadata.APIVersion != chart.APIVersionV2 || ch.Metadata.Name != a.Name {
			t.Errorf("%s: Chart.yaml apiVersion %s, name %s", a.Name, ch.Metadata.APIVersion, ch.Metadata.Name)
		}
		if err := ch.Validate(); err != nil {
			t.Errorf("%s: %v", a.Name, err)
		}
	}
}

func TestWordpressUsesTheCatalogsMysql(t *testing.T) {
	ch, err := Load("wordpress")
	if err != nil {
		t.Fatal(err)
	}
	deps := ch.Dependencies()
	if len(deps) != 1 || deps[0].Name() != "mysql" || deps[0].Metadata.Annotations[CatalogAnnotation] != "true" {
		t.Fatalf("wordpress's dependencies: %v, want the catalog's mysql", deps)
	}

	r := install(t, "wordpress", nil)
	db := r.workload(t, "StatefulSet", testRelease+"-mysql")
	if db.pod.Labels["app.kubernetes.io/name"] != "mysql" {
		t.Errorf("the database's pods are labelled %v", db.pod.Labels)
	}
	checkPod(t, catalogApp{name: "mysql", image: "docker.io/library/mysql:8.4"}, db)
	checkService(t, r, db)
	checkClaim(t, catalogApp{volume: "data"}, db, "8Gi", "")
	dbEnv := env(db.pod.Spec.Containers[0])

	wp := env(r.workload(t, "StatefulSet", testRelease).pod.Spec.Containers[0])
	host, port, _ := strings.Cut(wp["WORDPRESS_DB_HOST"].Value, ":")
	svc := mustGet[*corev1.Service](t, r, "Service", host)
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == port }) {
		t.Errorf("WORDPRESS_DB_HOST %s: the Service has no port %s", wp["WORDPRESS_DB_HOST"].Value, port)
	}
	for k, v := range svc.Spec.Selector {
		if db.pod.Labels[k] != v {
			t.Errorf("WORDPRESS_DB_HOST names the Service %s, which does not select the database", host)
		}
	}
	if wp["WORDPRESS_DB_USER"].Value != dbEnv["MYSQL_USER"].Value || wp["WORDPRESS_DB_NAME"].Value != dbEnv["MYSQL_DATABASE"].Value {
		t.Errorf("WordPress uses the user %q and database %q, MySQL creates %q and %q",
			wp["WORDPRESS_DB_USER"].Value, wp["WORDPRESS_DB_NAME"].Value, dbEnv["MYSQL_USER"].Value, dbEnv["MYSQL_DATABASE"].Value)
	}
	if a, b := wp["WORDPRESS_DB_PASSWORD"].ValueFrom, dbEnv["MYSQL_PASSWORD"].ValueFrom; a == nil || b == nil || *a.SecretKeyRef != *b.SecretKeyRef {
		t.Errorf("WordPress's database password does not come from where MySQL's does")
	}
	if s := mustGet[*corev1.Secret](t, r, "Secret", testRelease+"-mysql-auth"); s.Labels[CredentialsLabel] != "true" {
		t.Errorf("the database's Secret is not labelled %s", CredentialsLabel)
	}

	// The mysql chart's values pass through.
	r = install(t, "wordpress", map[string]any{"mysql": map[string]any{"auth": map[string]any{"username": "blog"}}})
	if got := env(r.workload(t, "StatefulSet", testRelease).pod.Spec.Containers[0])["WORDPRESS_DB_USER"].Value; got != "blog" {
		t.Errorf("mysql.auth.username=blog: WordPress uses %q", got)
	}
}

func TestWordpressExternalDatabase(t *testing.T) {
	off := map[string]any{"mysql": map[string]any{"enabled": false}}
	if _, err := renderRelease("wordpress", release{name: testRelease, namespace: testNamespace}, off); err == nil || !strings.Contains(err.Error(), "externalDatabase") {
		t.Errorf("mysql.enabled=false without a database: %v, want an error naming externalDatabase", err)
	}

	r := install(t, "wordpress", map[string]any{
		"mysql":            map[string]any{"enabled": false},
		"externalDatabase": map[string]any{"host": "db.example", "password": "s3cret"},
	})
	for _, o := range r.objects {
		if o.Labels["app.kubernetes.io/name"] != "wordpress" {
			t.Errorf("mysql.enabled=false, yet %s %s is rendered", o.Kind, o.Name)
		}
	}
	wp := env(r.workload(t, "StatefulSet", testRelease).pod.Spec.Containers[0])
	if got := wp["WORDPRESS_DB_HOST"].Value; got != "db.example:3306" {
		t.Errorf("WORDPRESS_DB_HOST = %q", got)
	}
	if got := secretData(t, r, testRelease+"-auth")["database-password"]; got != "s3cret" {
		t.Errorf("database-password = %q", got)
	}
	checkSecretRefs(t, r)
}

func env(c corev1.Container) map[string]corev1.EnvVar {
	out := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		out[e.Name] = e
	}
	return out
}

func TestLoadDependency(t *testing.T) {
	if _, err := loadDependency("wordpress", &chart.Dependency{Name: "mysql", Version: "0.1.0", Repository: DependencyScheme + "mysql"}, []string{"wordpress"}); err != nil {
		t.Errorf("the embedded mysql: %v", err)
	}
	for _, tc := range []struct {
		dep  chart.Dependency
		want string
	}{
		{chart.Dependency{Name: "mysql", Version: "0.1.0", Repository: "https://charts.example"}, "can only depend on another"},
		{chart.Dependency{Name: "mysql", Version: "0.1.0", Repository: DependencyScheme + "nosuch"}, "no chart \"nosuch\""},
		{chart.Dependency{Name: "postgresql", Version: "0.1.0", Repository: DependencyScheme + "mysql"}, "is the chart mysql"},
		{chart.Dependency{Name: "mysql", Version: "^2.0.0", Repository: DependencyScheme + "mysql"}, "wants version ^2.0.0"},
		{chart.Dependency{Name: "wordpress", Version: "0.1.0", Repository: DependencyScheme + "wordpress"}, "depends on itself"},
	} {
		_, err := loadDependency("wordpress", &tc.dep, []string{"wordpress"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.dep, err, tc.want)
		}
	}
}

// TestCatalogHelmInstall installs each app through Helm's own install
// action, client-only: the path `kasa install` takes, short of the cluster.
func TestCatalogHelmInstall(t *testing.T) {
	for _, app := range catalogApps {
		t.Run(app.name, func(t *testing.T) {
			ch, err := Load(app.name)
			if err != nil {
				t.Fatal(err)
			}
			if err := action.CheckDependencies(ch, ch.Metadata.Dependencies); err != nil {
				t.Fatal(err)
			}
			in := action.NewInstall(&action.Configuration{Log: t.Logf})
			in.ClientOnly, in.DryRun = true, true
			in.ReleaseName, in.Namespace = testRelease, testNamespace
			rel, err := in.Run(ch, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(rel.Info.Notes, testRelease+"."+testNamespace+".svc") {
				t.Errorf("the release's notes:\n%s", rel.Info.Notes)
			}
			if strings.Count(rel.Info.Notes, "runs as the") != 1 {
				t.Errorf("the notes of more than one chart:\n%s", rel.Info.Notes)
			}
			if !strings.Contains(rel.Manifest, "image: \""+app.image+"\"") {
				t.Errorf("the manifest has no image %s", app.image)
			}

			_, err = in.Run(ch, map[string]any{"persistence": map[string]any{"size": 5}, "bogus": 1})
			if err == nil || !strings.Contains(err.Error(), "schema") {
				t.Errorf("wrong values: %v, want a schema error", err)
			}
		})
	}
}
