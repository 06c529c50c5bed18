package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/tests/harness"
)

// benchNetpol measures, on the node of s, the latency of 1,000 requests
// from one pod to another (each on a new connection, so that each first
// packet goes through the node's rules) with no policy and with 100
// policies selecting the server pod; how soon a policy takes effect and
// goes; then the node's idle memory with the controller and without, and
// its pod starts without (the node's own figures are with it).
func benchNetpol(s *harness.Server, c kubernetes.Interface, idle time.Duration, add func(name, value, target string)) error {
	ctx := context.Background()
	pod := func(name string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{Name: "web", Image: harness.TestImage,
					ImagePullPolicy: corev1.PullNever, Args: []string{"serve", ":8080"}}},
			},
		}
	}
	pods := c.CoreV1().Pods("default")
	for _, p := range []*corev1.Pod{pod("np-server", map[string]string{"bench": "np-server"}), pod("np-client", map[string]string{"bench": "np-client"})} {
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	defer func() {
		_ = pods.DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{LabelSelector: "bench in (np-server,np-client)"})
		_ = c.NetworkingV1().NetworkPolicies("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "bench=np"})
	}()
	var serverIP string
	if _, err := until(2*time.Minute, func() error {
		for _, name := range []string{"np-server", "np-client"} {
			p, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				return fmt.Errorf("%s is %s", name, p.Status.Phase)
			}
			if name == "np-server" {
				serverIP = p.Status.PodIP
			}
		}
		return nil
	}); err != nil {
		return err
	}
	requests := func() (string, error) {
		out, code, err := s.Run("kubectl", "--kubeconfig", s.Kubeconfig(), "exec", "np-client", "--", "/testimage", "bench", "1000", "http://"+serverIP+":8080/")
		if err == nil && code != 0 {
			err = fmt.Errorf("exit %d", code)
		}
		if err != nil {
			return "", fmt.Errorf("bench in np-client: %w: %s", err, out)
		}
		var p50, p99 string
		if _, err := fmt.Sscanf(strings.TrimSpace(out), "p50 %s p99 %s", &p50, &p99); err != nil {
			return "", fmt.Errorf("bench in np-client printed %q", out)
		}
		return fmt.Sprintf("p50 %s ms, p99 %s ms", p50, p99), nil
	}
	before, err := requests()
	if err != nil {
		return err
	}
	add("network policy: 1,000 pod-to-pod HTTP requests, new connection each, no policy", before, "")
	// How soon a policy applied while traffic flows takes effect, and how
	// soon traffic is back once it is deleted: the client probes every
	// 50 ms and prints the (shared) clock when the outcome changes.
	deny := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "np-deny", Labels: map[string]string{"bench": "np"}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"bench": "np-server"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	policies := c.NetworkingV1().NetworkPolicies("default")
	for _, step := range []struct {
		name string
		do   func() error
	}{
		{"a default-deny policy applied while requests flow: refused after", func() error {
			_, err := policies.Create(ctx, deny, metav1.CreateOptions{})
			return err
		}},
		{"the policy deleted: requests answered again after", func() error {
			return policies.Delete(ctx, deny.Name, metav1.DeleteOptions{})
		}},
	} {
		took, err := watchChange(s, "tcp:"+serverIP+":8080", step.do)
		if err != nil {
			return fmt.Errorf("%s: %w", step.name, err)
		}
		add("network policy: "+step.name, fmt.Sprintf("%.2f s", took.Seconds()), "< 5 s")
	}

	// 100 policies select the server; the last one lets the client in.
	for i := range 100 {
		from := fmt.Sprintf("client-%d", i)
		if i == 99 {
			from = "np-client"
		}
		p := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("np-%03d", i), Labels: map[string]string{"bench": "np"}},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"bench": "np-server"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
					PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"bench": from}}}}}},
			},
		}
		if _, err := c.NetworkingV1().NetworkPolicies("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	// Time for the controller to write them all.
	time.Sleep(15 * time.Second)
	with, err := requests()
	if err != nil {
		return err
	}
	add("network policy: the same with 100 policies selecting the server pod", with, "")

	// The node's idle memory and its pod starts with the controller and
	// without, each after a restart of its own.
	restart := func(args ...string) error {
		if _, err := s.Stop(20 * time.Second); err != nil {
			return err
		}
		s.ExtraArgs = args
		if err := s.Start(); err != nil {
			return err
		}
		if err := s.WaitReady(2 * time.Minute); err != nil {
			return err
		}
		_, err := until(2*time.Minute, func() error { return readySince(ctx, c, s.Started) })
		return err
	}
	base := s.ExtraArgs
	defer func() { s.ExtraArgs = base }()
	idleRSS := func() (int, error) {
		if wait := idle - time.Since(s.Started); wait > 0 {
			time.Sleep(wait)
		}
		rss, _, err := rssOf(s.PID(), s.DataDir)
		return rss, err
	}
	if err := restart(base...); err != nil {
		return err
	}
	rssWith, err := idleRSS()
	if err != nil {
		return err
	}
	if err := restart(append(slices.Clone(base), "--disable-network-policy")...); err != nil {
		return err
	}
	rssWithout, err := idleRSS()
	if err != nil {
		return err
	}
	add(fmt.Sprintf("network policy: the node's idle memory %s after a restart, with the controller and without (sum of RSS)", idle),
		fmt.Sprintf("%d MiB with, %d MiB without (%+d MiB)", rssWith/1024, rssWithout/1024, (rssWith-rssWithout)/1024), "")
	for _, inFlight := range []int{1, 50} {
		p50, p99, err := podStartLatency(ctx, c, 50, inFlight)
		if err != nil {
			return err
		}
		add(fmt.Sprintf("network policy: without the controller (--disable-network-policy), 50 pods started %d at a time", inFlight),
			fmt.Sprintf("p50 %s, p99 %s", secs(p50), secs(p99)), "")
	}
	// And back, for what follows.
	return restart(base...)
}

// watchChange runs the test image's watch of target in np-client, does
// change once the watch has begun, and returns the time from change to
// the moment the watch saw the target turn ok or stop being ok.
func watchChange(s *harness.Server, target string, change func() error) (time.Duration, error) {
	type result struct {
		out  string
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		out, code, err := s.Run("kubectl", "--kubeconfig", s.Kubeconfig(), "exec", "np-client", "--", "/testimage", "watch", target)
		done <- result{out, code, err}
	}()
	// The watch's first probe is done well within this.
	time.Sleep(3 * time.Second)
	start := time.Now()
	if err := change(); err != nil {
		return 0, err
	}
	r := <-done
	if r.err == nil && r.code != 0 {
		r.err = fmt.Errorf("exit %d", r.code)
	}
	if r.err != nil {
		return 0, fmt.Errorf("watch in np-client: %w: %s", r.err, r.out)
	}
	var before, after string
	var at int64
	if _, err := fmt.Sscanf(strings.TrimSpace(r.out), "%s %s %d", &before, &after, &at); err != nil {
		return 0, fmt.Errorf("watch in np-client printed %q", r.out)
	}
	return time.Unix(0, at).Sub(start), nil
}
