package servicelb

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func node(name string, ready bool, labels map[string]string, addrs ...corev1.NodeAddress) *corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
			Addresses:  addrs,
		},
	}
}

func internal(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip}
}

func external(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: ip}
}

func lbService(ns, name string, created time.Time, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(created)},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: ports},
	}
}

func tcp(port int32) corev1.ServicePort {
	return corev1.ServicePort{Port: port, Protocol: corev1.ProtocolTCP}
}

func udp(port int32) corev1.ServicePort {
	return corev1.ServicePort{Port: port, Protocol: corev1.ProtocolUDP}
}

func TestNodeAddresses(t *testing.T) {
	v4, v6, dual := []corev1.IPFamily{corev1.IPv4Protocol}, []corev1.IPFamily{corev1.IPv6Protocol}, []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	dualNode := node("d", true, nil, external("203.0.113.1"), internal("10.0.0.1"), internal("fd00::1"))
	for name, tc := range map[string]struct {
		nodes    []*corev1.Node
		families []corev1.IPFamily
		want     []string
	}{
		"no nodes": {nil, v4, nil},
		"internal, sorted and deduplicated": {[]*corev1.Node{
			node("b", true, nil, internal("10.0.0.10")),
			node("a", true, nil, internal("10.0.0.9"), internal("10.0.0.10")),
		}, v4, []string{"10.0.0.9", "10.0.0.10"}},
		"no families means IPv4": {[]*corev1.Node{dualNode}, nil, []string{"203.0.113.1"}},
		"external before internal, per node": {[]*corev1.Node{
			node("a", true, nil, internal("10.0.0.1"), external("203.0.113.1")),
			node("b", true, nil, internal("10.0.0.2")),
		}, v4, []string{"10.0.0.2", "203.0.113.1"}},
		"IPv6 only, internal when no IPv6 external": {[]*corev1.Node{dualNode}, v6, []string{"fd00::1"}},
		"dual stack, IPv4 first":                    {[]*corev1.Node{dualNode}, dual, []string{"203.0.113.1", "fd00::1"}},
		"not ready or no condition": {[]*corev1.Node{
			node("a", false, nil, internal("10.0.0.1")),
			{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{internal("10.0.0.2")}}},
			node("c", true, nil, internal("10.0.0.3")),
		}, v4, []string{"10.0.0.3"}},
		"excluded, whatever the value": {[]*corev1.Node{
			node("a", true, map[string]string{corev1.LabelNodeExcludeBalancers: ""}, internal("10.0.0.1")),
			node("b", true, map[string]string{corev1.LabelNodeExcludeBalancers: "false"}, internal("10.0.0.2")),
			node("c", true, nil, internal("10.0.0.3")),
		}, v4, []string{"10.0.0.3"}},
		"enablelb limits to labelled nodes": {[]*corev1.Node{
			node("a", true, map[string]string{EnableLBLabel: "true"}, internal("10.0.0.1")),
			node("b", true, map[string]string{EnableLBLabel: "false"}, internal("10.0.0.2")),
			node("c", true, nil, internal("10.0.0.3")),
		}, v4, []string{"10.0.0.1"}},
		"enablelb false alone limits nothing": {[]*corev1.Node{
			node("a", true, map[string]string{EnableLBLabel: "false"}, internal("10.0.0.1")),
			node("b", true, nil, internal("10.0.0.2")),
		}, v4, []string{"10.0.0.1", "10.0.0.2"}},
		"enablelb on a not ready node leaves none": {[]*corev1.Node{
			node("a", false, map[string]string{EnableLBLabel: "true"}, internal("10.0.0.1")),
			node("b", true, nil, internal("10.0.0.2")),
		}, v4, nil},
		"enablelb and excluded": {[]*corev1.Node{
			node("a", true, map[string]string{EnableLBLabel: "true", corev1.LabelNodeExcludeBalancers: "true"}, internal("10.0.0.1")),
			node("b", true, map[string]string{EnableLBLabel: "true"}, internal("10.0.0.2")),
		}, v4, []string{"10.0.0.2"}},
		"bad address skipped": {[]*corev1.Node{
			node("a", true, nil, internal("not-an-ip"), internal("10.0.0.1")),
		}, v4, []string{"10.0.0.1"}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := NodeAddresses(tc.nodes, tc.families); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestResolveConflicts(t *testing.T) {
	both := []string{"10.0.0.1", "10.0.0.2"}
	claim := func(svc *corev1.Service, addrs ...string) Claim { return Claim{Service: svc, Addresses: addrs} }
	for name, tc := range map[string]struct {
		claims []Claim
		want   map[string]Conflict
	}{
		"different ports": {[]Claim{
			claim(lbService("ns", "a", t0, tcp(80)), both...),
			claim(lbService("ns", "b", t0, tcp(443)), both...),
		}, map[string]Conflict{}},
		"the older keeps the port": {[]Claim{
			claim(lbService("ns", "a", t0.Add(time.Minute), tcp(80)), both...),
			claim(lbService("ns", "b", t0, tcp(80)), both...),
		}, map[string]Conflict{"ns/a": {Address: "10.0.0.1", Port: 80, Protocol: corev1.ProtocolTCP, Holder: "ns/b"}}},
		"same age, by name": {[]Claim{
			claim(lbService("ns", "b", t0, tcp(80)), both...),
			claim(lbService("ns", "a", t0, tcp(80)), both...),
		}, map[string]Conflict{"ns/b": {Address: "10.0.0.1", Port: 80, Protocol: corev1.ProtocolTCP, Holder: "ns/a"}}},
		"same age, by namespace first": {[]Claim{
			claim(lbService("b", "a", t0, tcp(80)), both...),
			claim(lbService("a", "z", t0, tcp(80)), both...),
		}, map[string]Conflict{"b/a": {Address: "10.0.0.1", Port: 80, Protocol: corev1.ProtocolTCP, Holder: "a/z"}}},
		"other protocol": {[]Claim{
			claim(lbService("ns", "a", t0, tcp(53)), both...),
			claim(lbService("ns", "b", t0, udp(53)), both...),
		}, map[string]Conflict{}},
		"no protocol means TCP": {[]Claim{
			claim(lbService("ns", "a", t0, tcp(80)), both...),
			claim(lbService("ns", "b", t0, corev1.ServicePort{Port: 80}), both...),
		}, map[string]Conflict{"ns/b": {Address: "10.0.0.1", Port: 80, Protocol: corev1.ProtocolTCP, Holder: "ns/a"}}},
		"other addresses": {[]Claim{
			claim(lbService("ns", "a", t0, tcp(80)), "10.0.0.1"),
			claim(lbService("ns", "b", t0, tcp(80)), "fd00::1"),
		}, map[string]Conflict{}},
		"one shared address is enough": {[]Claim{
			claim(lbService("ns", "a", t0, tcp(80)), "10.0.0.2"),
			claim(lbService("ns", "b", t0, tcp(80)), both...),
		}, map[string]Conflict{"ns/b": {Address: "10.0.0.2", Port: 80, Protocol: corev1.ProtocolTCP, Holder: "ns/a"}}},
		"a waiting service holds nothing": {[]Claim{
			claim(lbService("ns", "a", t0, tcp(80)), both...),
			claim(lbService("ns", "b", t0.Add(time.Minute), tcp(443), tcp(80)), both...),
			claim(lbService("ns", "c", t0.Add(2*time.Minute), tcp(443)), both...),
		}, map[string]Conflict{"ns/b": {Address: "10.0.0.1", Port: 80, Protocol: corev1.ProtocolTCP, Holder: "ns/a"}}},
		"no addresses, no conflict": {[]Claim{
			claim(lbService("ns", "a", t0, tcp(80)), both...),
			claim(lbService("ns", "b", t0, tcp(80))),
		}, map[string]Conflict{}},
	} {
		t.Run(name, func(t *testing.T) {
			got := ResolveConflicts(tc.claims)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, w := range tc.want {
				if got[k] != w {
					t.Errorf("%s: got %v, want %v", k, got[k], w)
				}
			}
		})
	}
}

func TestPick(t *testing.T) {
	addrs := []string{"10.0.0.1", "10.0.0.2"}
	for ip, want := range map[string]struct {
		addrs   []string
		ignored bool
	}{
		"":          {addrs, false},
		"10.0.0.2":  {[]string{"10.0.0.2"}, false},
		"192.0.2.1": {addrs, true},
		"bad":       {addrs, true},
	} {
		svc := lbService("ns", "a", t0, tcp(80))
		svc.Spec.LoadBalancerIP = ip
		got, ignored := pick(svc, addrs)
		if !slices.Equal(got, want.addrs) || ignored != want.ignored {
			t.Errorf("%q: got %v %v, want %v %v", ip, got, ignored, want.addrs, want.ignored)
		}
	}
}

// eventually polls cond until it holds or a deadline passes; cond returns
// what it saw, for the failure message.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s", what, saw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestController(t *testing.T) {
	classed := lbService("default", "classed", t0, tcp(80))
	class := "example.com/lb"
	classed.Spec.LoadBalancerClass = &class
	classed.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.9"}}
	wrongIP := lbService("default", "wrong-ip", t0, tcp(8080))
	wrongIP.Spec.LoadBalancerIP = "192.0.2.1"
	pinned := lbService("default", "pinned", t0, tcp(9090))
	pinned.Spec.LoadBalancerIP = "10.0.0.1"
	client := fake.NewClientset(
		node("n1", true, nil, internal("10.0.0.1")),
		node("n2", true, nil, internal("10.0.0.2"), external("203.0.113.2")),
		node("n3", false, nil, internal("10.0.0.3")),
		lbService("default", "web", t0, tcp(80)),
		lbService("default", "later", t0.Add(time.Minute), tcp(80)),
		lbService("kube-system", "dns", t0, udp(53)),
		classed, wrongIP, pinned,
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "plain"},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{tcp(80)}},
		},
	)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &Controller{Client: client, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if c.Name() != "servicelb" {
		t.Errorf("name %q", c.Name())
	}
	readyCh := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, func() { close(readyCh) }) }()
	select {
	case <-readyCh:
	case err := <-done:
		t.Fatalf("run ended before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}

	ingress := func(ns, name string) (ips []string, vip bool) {
		svc, err := client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		vip = true
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
			vip = vip && in.IPMode != nil && *in.IPMode == corev1.LoadBalancerIPModeVIP
		}
		return ips, vip
	}
	expect := func(ns, name string, want ...string) {
		t.Helper()
		eventually(t, ns+"/"+name+" addresses", func() (bool, string) {
			got, vip := ingress(ns, name)
			return slices.Equal(got, want) && vip, fmt.Sprintf("%v (vip %v), want %v", got, vip, want)
		})
	}
	event := func(ns, name, reason string, words ...string) {
		t.Helper()
		eventually(t, ns+"/"+name+" "+reason+" event", func() (bool, string) {
			list, err := client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var seen []string
			for _, e := range list.Items {
				seen = append(seen, e.InvolvedObject.Name+":"+e.Reason+":"+e.Message)
				if e.InvolvedObject.Name != name || e.Reason != reason || e.Type != corev1.EventTypeWarning {
					continue
				}
				all := true
				for _, w := range words {
					all = all && strings.Contains(e.Message, w)
				}
				if all {
					return true, ""
				}
			}
			return false, fmt.Sprintf("events %q", seen)
		})
	}

	all := []string{"10.0.0.1", "203.0.113.2"}
	expect("default", "web", all...)
	expect("kube-system", "dns", all...)
	expect("default", "wrong-ip", all...)
	expect("default", "pinned", "10.0.0.1")
	event("default", "wrong-ip", ReasonLoadBalancerIPIgnored, "192.0.2.1")
	// The younger service wants web's port: it waits, and is told why.
	event("default", "later", ReasonPortInUse, "80/TCP", "default/web")
	if got, _ := ingress("default", "later"); len(got) != 0 {
		t.Fatalf("later got %v while web holds its port", got)
	}

	// Once web is gone, the port is free.
	if err := client.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("default", "later", all...)

	// A node that becomes ready adds its address.
	n3, err := client.CoreV1().Nodes().Get(ctx, "n3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n3.Status.Conditions[0].Status = corev1.ConditionTrue
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n3, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	all = []string{"10.0.0.1", "10.0.0.3", "203.0.113.2"}
	expect("default", "later", all...)
	expect("kube-system", "dns", all...)

	// A service that stops being a LoadBalancer loses what it was given.
	later, err := client.CoreV1().Services("default").Get(ctx, "later", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	later.Spec.Type = corev1.ServiceTypeClusterIP
	if _, err := client.CoreV1().Services("default").Update(ctx, later, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("default", "later")

	// Services of another class or type are left alone.
	if got, _ := ingress("default", "classed"); !slices.Equal(got, []string{"198.51.100.9"}) {
		t.Errorf("classed service changed: %v", got)
	}
	if got, _ := ingress("default", "plain"); len(got) != 0 {
		t.Errorf("ClusterIP service got %v", got)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
}
