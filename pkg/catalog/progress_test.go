package catalog

import (
	"context"
	"io"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// A release is ready when its StatefulSet is rolled out and each Service
// that selects its pods has a ready endpoint; a Service that selects
// nothing of the release is not waited for.
func TestObserveWaitsForEndpoints(t *testing.T) {
	labels := map[string]string{InstanceLabel: "redis", "app.kubernetes.io/name": "redis"}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels}
	}
	sts := &appsv1.StatefulSet{ObjectMeta: meta("redis"),
		Spec:   appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1)},
		Status: appsv1.StatefulSetStatus{ReadyReplicas: 1, UpdatedReplicas: 1, CurrentRevision: "r1", UpdateRevision: "r1"}}
	pod := &corev1.Pod{ObjectMeta: meta("redis-0"), Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	svc := &corev1.Service{ObjectMeta: meta("redis"), Spec: corev1.ServiceSpec{Selector: labels}}
	other := &corev1.Service{ObjectMeta: meta("redis-metrics"), Spec: corev1.ServiceSpec{Selector: map[string]string{"component": "metrics"}}}
	external := &corev1.Service{ObjectMeta: meta("redis-external")}
	slice := func(ready bool) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "redis-x1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "redis"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.42.0.9"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}},
		}
	}
	for _, tc := range []struct {
		name    string
		objects []runtime.Object
		ready   bool
		line    string
	}{
		{"no endpoint slice yet", nil, false, "service redis: 0 endpoints ready"},
		{"an endpoint not ready", []runtime.Object{slice(false)}, false, "service redis: 0 endpoints ready"},
		{"a ready endpoint", []runtime.Object{slice(true)}, true, "service redis: 1 endpoint ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := append([]runtime.Object{sts, pod, svc, other, external}, tc.objects...)
			c := &Client{Out: io.Discard, kube: fake.NewClientset(objs...)}
			st, err := c.Observe(context.Background(), "default", "redis")
			if err != nil {
				t.Fatal(err)
			}
			if st.Ready != tc.ready {
				t.Errorf("ready %v, want %v; %v", st.Ready, tc.ready, st.Lines())
			}
			got := strings.Join(st.Workloads, "\n")
			if !strings.Contains(got, tc.line) || strings.Contains(got, "redis-metrics") || strings.Contains(got, "redis-external") {
				t.Errorf("workload lines:\n%s\nwant %q and no line for the services that select no pod of the release", got, tc.line)
			}
		})
	}
}
