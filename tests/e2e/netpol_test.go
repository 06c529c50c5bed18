//go:build e2e

package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"golang.org/x/sys/unix"

	"github.com/kasa-io/kasa/tests/harness"
)

// The ports every policy test pod serves, TCP and UDP, by name.
var netpolPorts = []struct {
	name string
	port int32
}{{"p8080", 8080}, {"p8081", 8081}, {"p8082", 8082}}

// netpol is the fixture of the network policy checks: pods in namespaces
// np-x, np-y and np-z of a cluster, spread over its nodes.
type netpol struct {
	cl    *cluster
	t     *testing.T
	nodes []string
	// ip is each pod's address, by namespace/name.
	ip map[string]string
}

// networkPolicies checks, on the cluster's nodes (the first three, or
// two), what issue 17 lists: the kinds of policy kube-router enforces,
// how soon a policy takes effect and goes, a pod that is covered from its
// first packet, pods that move to other nodes, a Service's backends
// reached through the Service, and the guard that refuses the cluster's
// untranslated addresses on the node.
func (cl *cluster) networkPolicies(t *testing.T, nodes []string) {
	ctx := context.Background()
	np := &netpol{cl: cl, t: t, nodes: nodes, ip: map[string]string{}}
	for _, ns := range []string{"np-x", "np-y", "np-z"} {
		_, err := cl.c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: ns, Labels: map[string]string{"ns": strings.TrimPrefix(ns, "np-")}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, ns := range []string{"np-x", "np-y", "np-z"} {
			_ = cl.c.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		}
	})
	second, last := nodes[1], nodes[len(nodes)-1]
	np.pods(map[string]string{"np-x/a": nodes[0], "np-x/b": second, "np-x/c": last, "np-y/a": nodes[0], "np-z/e": second})
	svc, err := cl.c.CoreV1().Services("np-x").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "b"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"pod": "b"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svcIP := svc.Spec.ClusterIP
	xa, xb, xc := np.ip["np-x/a"], np.ip["np-x/b"], np.ip["np-x/c"]

	// No policy: everything answers, TCP and UDP, across nodes.
	all := map[string]map[string]string{}
	for _, from := range []string{"np-y/a", "np-x/a", "np-z/e"} {
		all[from] = map[string]string{}
		for _, to := range []string{xa, xb, xc} {
			if to == np.ip[from] {
				continue // a pod reaches itself over its own loopback, whatever the policies
			}
			for _, p := range netpolPorts {
				all[from][fmt.Sprintf("tcp:%s:%d", to, p.port)] = "ok"
			}
			all[from]["udp:"+to+":8080"] = "ok"
		}
	}
	np.expect("no policy", all)

	// Default deny of ingress in np-x, applied while the traffic flows.
	np.apply("np-x", "deny", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}})
	denied := map[string]map[string]string{}
	for from, targets := range all {
		denied[from] = map[string]string{}
		for to := range targets {
			denied[from][to] = "no"
		}
	}
	took := np.expect("default deny ingress", denied)
	t.Logf("default deny ingress took effect in %s", took.Round(10*time.Millisecond))
	np.remove("np-x", "deny")
	took = np.expect("default deny ingress removed", all)
	t.Logf("removing it restored the traffic in %s", took.Round(10*time.Millisecond))
	np.apply("np-x", "deny", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}})

	// Allow rules on top of the default deny.
	tcp := corev1.ProtocolTCP
	np.apply("np-x", "from-y", networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ns": "y"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr.To(intstr.FromInt32(8080))}},
		}},
	})
	np.apply("np-x", "from-a", networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "c"}},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr.To(intstr.FromString("p8081"))}},
		}},
	})
	np.apply("np-x", "range", networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr.To(intstr.FromInt32(8080)), EndPort: ptr.To[int32](8081)}},
		}},
	})
	np.apply("np-x", "block", networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.42.0.0/16", Except: []string{xa + "/32"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr.To(intstr.FromInt32(8082))}},
		}},
	})
	np.expect("allow rules", map[string]map[string]string{
		"np-y/a": {
			// from-y: namespace selector, one numbered port.
			"tcp:" + xb + ":8080": "ok", "tcp:" + xb + ":8081": "no", "udp:" + xb + ":8080": "no",
			// from-a selects pods of np-x only.
			"tcp:" + xc + ":8081": "no",
			// range: ports 8080 to 8081 from every namespace.
			"tcp:" + xa + ":8080": "ok", "tcp:" + xa + ":8081": "ok", "tcp:" + xa + ":8082": "no", "udp:" + xa + ":8080": "no",
			// block: the pod network but np-x/a.
			"tcp:" + xb + ":8082": "ok",
			// the Service of b, to its port 8080 that from-y opens.
			"tcp:" + svcIP + ":80": "ok",
		},
		"np-x/a": {
			"tcp:" + xb + ":8080": "no",
			"tcp:" + xc + ":8081": "ok", "tcp:" + xc + ":8080": "no",
			"tcp:" + xb + ":8082":  "no",
			"tcp:" + svcIP + ":80": "no",
		},
		"np-x/c": {
			"tcp:" + xb + ":8082": "ok",
		},
		"np-z/e": {
			"tcp:" + xc + ":8081": "no", "tcp:" + xa + ":8081": "ok",
		},
	})

	// The pods move to other nodes: the policies follow them.
	np.move("np-x/a", second)
	np.move("np-x/c", nodes[0])
	xa, xc = np.ip["np-x/a"], np.ip["np-x/c"]
	np.expect("pods moved", map[string]map[string]string{
		"np-x/a": {"tcp:" + xc + ":8081": "ok", "tcp:" + xc + ":8080": "no", "tcp:" + xb + ":8082": "ok"},
		"np-y/a": {"tcp:" + xc + ":8081": "no", "tcp:" + xa + ":8080": "ok", "tcp:" + xa + ":8082": "no"},
	})

	// Default deny of egress in np-z: np-z/e, which reached np-x/a
	// before, reaches nothing; a pod that starts after the policy reaches
	// nothing from its first packet.
	np.apply("np-z", "deny-egress", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}})
	// np-y/a: no policy selects it, so only np-z's own egress policy
	// stands in the way (a peer of an ingress policy, by contrast, is
	// refused until the controller knows its address anyway).
	ya := np.ip["np-y/a"]
	np.expect("default deny egress", map[string]map[string]string{"np-z/e": {"tcp:" + ya + ":8080": "no", "tcp:" + xa + ":8080": "no"}})
	np.firstPackets("np-z", "tcp:"+ya+":8080")
	np.remove("np-z", "deny-egress")
	np.expect("default deny egress removed", map[string]map[string]string{"np-z/e": {"tcp:" + ya + ":8080": "ok", "tcp:" + xa + ":8080": "ok"}})

	// The guard: the Service's port that it does not serve, an address of
	// the service network that no Service has and one of the pod network
	// that no node has are refused on the node, and nothing of them
	// reaches the hosts' network.
	unallocatedSvc, unallocatedPod := "10.43.255.254", "10.42.255.254"
	stray := []string{"tcp:" + svcIP + ":81", "udp:" + svcIP + ":81", "tcp:" + unallocatedSvc + ":80", "udp:" + unallocatedSvc + ":53", "tcp:" + unallocatedPod + ":80"}
	// The kernel sends a host at most 6 ICMP errors at once, then one a
	// second (net.ipv4.icmp_ratelimit); the policies above just sent
	// some to these pods. UDP is refused with one.
	time.Sleep(7 * time.Second)
	capture := cl.captureTo(t, func(dst netip.Addr) bool {
		return netip.MustParsePrefix("10.43.0.0/16").Contains(dst) || dst.String() == unallocatedPod
	})
	for _, from := range []string{"np-y/a", "np-z/e"} {
		got := np.probe(from, stray...)
		for _, target := range stray {
			if got[target] != "refused" {
				t.Errorf("%s -> %s: %s, want refused on the node", from, target, got[target])
			}
		}
	}
	if leaked := capture(); len(leaked) > 0 {
		t.Errorf("packets to the cluster's addresses left the node: %v", leaked)
	}
}

// pods creates the policy test pods (namespace/name: node) and records
// their addresses.
func (np *netpol) pods(where map[string]string) {
	ctx := context.Background()
	for key, node := range where {
		ns, name, _ := strings.Cut(key, "/")
		if _, err := np.cl.c.CoreV1().Pods(ns).Create(ctx, netpolPod(name, node), metav1.CreateOptions{}); err != nil {
			np.t.Fatal(err)
		}
	}
	for key := range where {
		ns, name, _ := strings.Cut(key, "/")
		waitFor(np.t, 2*time.Minute, "pod "+key+" running", func() error {
			p, err := np.cl.c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				return fmt.Errorf("%s, IP %q", p.Status.Phase, p.Status.PodIP)
			}
			np.ip[key] = p.Status.PodIP
			return nil
		})
	}
}

// move deletes the pod key and creates it again on node.
func (np *netpol) move(key, node string) {
	ctx := context.Background()
	ns, name, _ := strings.Cut(key, "/")
	if err := np.cl.c.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		np.t.Fatal(err)
	}
	waitFor(np.t, time.Minute, "pod "+key+" gone", func() error {
		if _, err := np.cl.c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%w)", err)
		}
		return nil
	})
	np.pods(map[string]string{key: node})
}

// netpolPod serves netpolPorts on TCP and UDP, on node.
func netpolPod(name, node string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pod": name}},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{corev1.LabelHostname: node},
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers:                    []corev1.Container{{Name: "serve", Image: testImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve"}}},
		},
	}
	c := &p.Spec.Containers[0]
	for _, port := range netpolPorts {
		c.Args = append(c.Args, fmt.Sprintf(":%d", port.port))
		c.Ports = append(c.Ports,
			corev1.ContainerPort{Name: port.name, ContainerPort: port.port, Protocol: corev1.ProtocolTCP},
			corev1.ContainerPort{Name: port.name + "-udp", ContainerPort: port.port, Protocol: corev1.ProtocolUDP})
	}
	return p
}

func (np *netpol) apply(ns, name string, spec networkingv1.NetworkPolicySpec) {
	_, err := np.cl.c.NetworkingV1().NetworkPolicies(ns).Create(context.Background(),
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		np.t.Fatal(err)
	}
}

func (np *netpol) remove(ns, name string) {
	if err := np.cl.c.NetworkingV1().NetworkPolicies(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		np.t.Fatal(err)
	}
}

// probe runs the test image's probe in pod key (namespace/name) and
// returns each target's outcome.
func (np *netpol) probe(key string, targets ...string) map[string]string {
	ns, name, _ := strings.Cut(key, "/")
	args := append([]string{"kasa", "kubectl", "exec", "-n", ns, name, "--", "/testimage", "probe"}, targets...)
	var out string
	err := harness.Eventually(30*time.Second, func() error {
		o, stderr, err := np.cl.srv.Exec(context.Background(), args...)
		if err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr))
		}
		out = o
		return nil
	})
	if err != nil {
		np.t.Fatalf("probe from %s: %v", key, err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		target, outcome, _ := strings.Cut(line, " ")
		got[target] = outcome
	}
	return got
}

// expect probes, from each pod of want, its targets until every outcome
// is the one wanted ("ok", or "no" for refused or timed out), for 30 s at
// most, and returns how long that took.
func (np *netpol) expect(what string, want map[string]map[string]string) time.Duration {
	np.t.Helper()
	start := time.Now()
	var mismatch []string
	for time.Since(start) < 30*time.Second {
		mismatch = nil
		var mu sync.Mutex
		var wg sync.WaitGroup
		for from, targets := range want {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got := np.probe(from, slices.Sorted(mapsKeys(targets))...)
				mu.Lock()
				defer mu.Unlock()
				for target, w := range targets {
					g := got[target]
					if (w == "ok") != (g == "ok") || (w == "no" && g != "refused" && g != "timeout") {
						mismatch = append(mismatch, fmt.Sprintf("%s -> %s: %s, want %s", from, target, g, w))
					}
				}
			}()
		}
		wg.Wait()
		if len(mismatch) == 0 {
			return time.Since(start)
		}
	}
	slices.Sort(mismatch)
	np.t.Fatalf("%s: after %s:\n%s", what, time.Since(start).Round(time.Second), strings.Join(mismatch, "\n"))
	return 0
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// firstPackets starts, in namespace ns under a policy that denies what
// target is, a pod on each node whose first act is to probe target, and
// checks that none got through: the policy covers a pod from its first
// packet.
func (np *netpol) firstPackets(ns, target string) {
	ctx := context.Background()
	c := np.cl.c.CoreV1().Pods(ns)
	// A busy node: 100 more policies (each with its own chain and ipsets)
	// make each of the controller's writes slow, and several pods at once
	// on each node queue their writes behind each other, so that the last
	// pods' rules come seconds after their start.
	for i := range 100 {
		np.apply("np-y", fmt.Sprintf("load-%03d", i), networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": fmt.Sprintf("none-%d", i)}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ns": "x"}}},
				{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("10.%d.0.0/16", 100+i)}},
			}}},
		})
	}
	defer func() {
		if err := np.cl.c.NetworkingV1().NetworkPolicies("np-y").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			np.t.Error(err)
		}
	}()
	time.Sleep(5 * time.Second)
	const perNode = 4
	var names, nodeOf []string
	for i := range perNode * len(np.nodes) {
		node := np.nodes[i%len(np.nodes)]
		name := fmt.Sprintf("first-%d", i)
		names, nodeOf = append(names, name), append(nodeOf, node)
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				NodeSelector:  map[string]string{corev1.LabelHostname: node},
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "probe", Image: testImage, ImagePullPolicy: corev1.PullNever, Args: []string{"probe", target}}},
			},
		}
		if _, err := c.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			np.t.Fatal(err)
		}
	}
	for i, name := range names {
		waitFor(np.t, 2*time.Minute, "pod "+name+" done", func() error {
			p, err := c.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				return fmt.Errorf("%s", p.Status.Phase)
			}
			return nil
		})
		b, err := c.GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			np.t.Fatal(err)
		}
		got := strings.TrimSpace(string(b))
		if got != target+" timeout" && got != target+" refused" {
			np.t.Errorf("pod %s on %s, started under a policy that denies %s, probed it first: %q", name, nodeOf[i], target, got)
			continue
		}
		np.t.Logf("pod %s on %s, started under a policy that denies %s, probed it first: %q", name, nodeOf[i], target, got)
		_ = c.Delete(ctx, name, metav1.DeleteOptions{})
	}
}

// captureTo captures the IPv4 packets on the hosts' network (the bridge on
// this machine) whose destination match selects, until the returned
// function is called; that returns them, as "src -> dst" lines. A packet
// is seen even when a rule of this machine would drop it afterwards, and
// a rule that this function adds for the capture's time drops those
// packets, so that none of them leaves this machine.
func (cl *cluster) captureTo(t *testing.T, match func(netip.Addr) bool) func() []string {
	t.Helper()
	rule := []string{"FORWARD", "-i", cl.nw.Bridge, "-d", "10.42.0.0/15", "-j", "DROP"}
	if out, err := exec.Command("iptables", append([]string{"-I"}, rule...)...).CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	var once sync.Once
	unrule := func() {
		once.Do(func() {
			if out, err := exec.Command("iptables", append([]string{"-D"}, rule...)...).CombinedOutput(); err != nil {
				t.Errorf("iptables: %v: %s", err, out)
			}
		})
	}
	t.Cleanup(unrule)
	ifi, err := net.InterfaceByName(cl.nw.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	proto := int(htons(unix.ETH_P_IP))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}); err != nil {
		t.Fatal(err)
	}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000})
	var mu sync.Mutex
	var seen []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < 14+20 {
				continue
			}
			ip := buf[14:n]
			src, _ := netip.AddrFromSlice(ip[12:16])
			dst, _ := netip.AddrFromSlice(ip[16:20])
			if match(dst) {
				mu.Lock()
				seen = append(seen, fmt.Sprintf("%s -> %s (protocol %d)", src, dst, ip[9]))
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		// Late packets of the probes (retransmissions) come within a
		// second.
		time.Sleep(time.Second)
		close(stop)
		<-done
		unix.Close(fd)
		unrule()
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
