package catalog

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
)

// State is what a release's objects are doing, as install shows it.
type State struct {
	// Ready is true when every Deployment and StatefulSet of the release
	// has all its replicas ready and updated, and every Service of the
	// release that selects its pods has a ready endpoint: a client that
	// connects then reaches the app, instead of being refused until the
	// endpoint is published.
	Ready bool
	// Workloads, Volumes and Pods are one line each.
	Workloads, Volumes, Pods []string
	// Warning is the latest warning event about the release's pods or
	// volume claims.
	Warning string
	// Stuck names a pod that is not ready, with the reason.
	Stuck string
}

// Lines is the state as the lines of the progress block.
func (s State) Lines() []string {
	var out []string
	out = append(out, s.Workloads...)
	out = append(out, s.Volumes...)
	out = append(out, s.Pods...)
	if s.Warning != "" {
		out = append(out, "last warning: "+s.Warning)
	}
	return out
}

// Observe reads the state of a release's objects.
func (c *Client) Observe(ctx context.Context, namespace, name string) (State, error) {
	sel := metav1.ListOptions{LabelSelector: InstanceLabel + "=" + name}
	var st State
	ready, total := 0, 0
	deps, err := c.kube.AppsV1().Deployments(namespace).List(ctx, sel)
	if err != nil {
		return st, err
	}
	for _, d := range deps.Items {
		want := ptr.Deref(d.Spec.Replicas, 1)
		ok := d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want && d.Status.AvailableReplicas == want
		st.Workloads = append(st.Workloads, fmt.Sprintf("deployment %s: %d/%d ready", d.Name, d.Status.AvailableReplicas, want))
		total++
		if ok {
			ready++
		}
	}
	sets, err := c.kube.AppsV1().StatefulSets(namespace).List(ctx, sel)
	if err != nil {
		return st, err
	}
	for _, s := range sets.Items {
		want := ptr.Deref(s.Spec.Replicas, 1)
		ok := s.Status.ObservedGeneration >= s.Generation && s.Status.ReadyReplicas == want && s.Status.UpdatedReplicas == want &&
			(s.Status.UpdateRevision == "" || s.Status.CurrentRevision == s.Status.UpdateRevision)
		st.Workloads = append(st.Workloads, fmt.Sprintf("statefulset %s: %d/%d ready", s.Name, s.Status.ReadyReplicas, want))
		total++
		if ok {
			ready++
		}
	}
	pods, err := c.kube.CoreV1().Pods(namespace).List(ctx, sel)
	if err != nil {
		return st, err
	}
	svcs, err := c.kube.CoreV1().Services(namespace).List(ctx, sel)
	if err != nil {
		return st, err
	}
	for _, svc := range svcs.Items {
		if !selectsAny(svc, pods.Items) {
			continue
		}
		eps, err := c.kube.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name})
		if err != nil {
			return st, err
		}
		n := readyEndpoints(eps.Items)
		st.Workloads = append(st.Workloads, fmt.Sprintf("service %s: %d %s ready", svc.Name, n, plural(n, "endpoint", "endpoints")))
		total++
		if n > 0 {
			ready++
		}
	}
	st.Ready = ready == total

	pvcs, err := c.kube.CoreV1().PersistentVolumeClaims(namespace).List(ctx, sel)
	if err != nil {
		return st, err
	}
	involved := map[string]bool{}
	for _, p := range pvcs.Items {
		involved[p.Name] = true
		line := fmt.Sprintf("volume %s: %s", p.Name, p.Status.Phase)
		switch p.Status.Phase {
		case corev1.ClaimBound:
			line += " (" + capacity(p) + ")"
		case corev1.ClaimPending:
			line += " (bound when its pod is scheduled)"
		}
		st.Volumes = append(st.Volumes, line)
	}
	for _, p := range pods.Items {
		involved[p.Name] = true
		line, stuck := podLine(p)
		st.Pods = append(st.Pods, line)
		if stuck != "" && st.Stuck == "" {
			st.Stuck = p.Name + ": " + stuck
		}
	}
	slices.Sort(st.Pods)
	events, err := c.kube.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "type=Warning"})
	if err != nil {
		return st, err
	}
	var last time.Time
	for _, e := range events.Items {
		t := e.LastTimestamp.Time
		if t.IsZero() {
			t = e.EventTime.Time
		}
		if involved[e.InvolvedObject.Name] && !t.Before(last) {
			last = t
			st.Warning = fmt.Sprintf("%s %s: %s", e.InvolvedObject.Name, e.Reason, plainMessage(e.Message))
		}
	}
	return st, nil
}

// selectsAny reports whether the Service sends traffic to any of pods (a
// Service without a selector, or one for pods the release does not have,
// is not waited for).
func selectsAny(svc corev1.Service, pods []corev1.Pod) bool {
	if len(svc.Spec.Selector) == 0 {
		return false
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	for _, p := range pods {
		if sel.Matches(labels.Set(p.Labels)) {
			return true
		}
	}
	return false
}

// readyEndpoints counts the ready endpoints of a Service's EndpointSlices.
func readyEndpoints(slices []discoveryv1.EndpointSlice) int {
	n := 0
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				n++
			}
		}
	}
	return n
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// podLine says what a pod is doing; stuck is the reason it is not ready.
func podLine(p corev1.Pod) (line, stuck string) {
	readyN := 0
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Ready {
			readyN++
		}
	}
	line = fmt.Sprintf("pod %s: %s, %d/%d containers ready", p.Name, p.Status.Phase, readyN, len(p.Spec.Containers))
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return line + " (not scheduled: " + c.Message + ")", "not scheduled: " + c.Message
		}
	}
	statuses := append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...)
	for _, cs := range statuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			why := cs.State.Waiting.Reason
			if cs.State.Waiting.Message != "" {
				why += ": " + cs.State.Waiting.Message
			}
			if strings.Contains(cs.State.Waiting.Reason, "Image") {
				why += " (image " + cs.Image + ")"
			}
			return line + " (" + cs.Name + " " + why + ")", cs.Name + " " + why
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0:
			why := fmt.Sprintf("exited %d %s", cs.State.Terminated.ExitCode, cs.State.Terminated.Reason)
			return line + " (" + cs.Name + " " + why + ")", cs.Name + " " + why
		case cs.State.Running != nil && !cs.Ready:
			stuck = cs.Name + " running, not ready yet"
		}
	}
	return line, stuck
}

// WaitReady waits until the release's workloads are ready, showing their
// state: redrawn in place on a terminal, a line per change otherwise. On
// timeout it names the pod that is stuck and why.
func (c *Client) WaitReady(ctx context.Context, namespace, name string, timeout time.Duration) error {
	start := time.Now()
	deadline := start.Add(timeout)
	drawn := 0
	seen := map[string]bool{}
	for {
		st, err := c.Observe(ctx, namespace, name)
		if err != nil {
			return err
		}
		lines := st.Lines()
		if c.TTY {
			if drawn > 0 {
				fmt.Fprintf(c.Out, "\x1b[%dA\x1b[J", drawn)
			}
			for _, l := range lines {
				fmt.Fprintf(c.Out, "  %s\n", l)
			}
			drawn = len(lines)
		} else {
			for _, l := range lines {
				if !seen[l] {
					seen[l] = true
					fmt.Fprintf(c.Out, "  %s\n", l)
				}
			}
		}
		if st.Ready {
			fmt.Fprintf(c.Out, "%s is ready (%s)\n", name, time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		if time.Now().After(deadline) {
			why := st.Stuck
			if why == "" {
				why = "no pod reports a reason"
			}
			if st.Warning != "" {
				why += "; last warning: " + st.Warning
			}
			return fmt.Errorf("%w: %s is not ready after %s: %s. The release stays installed: `kasa status %s -n %s` shows it, `kasa uninstall %s -n %s` removes it",
				ErrTimeout, name, timeout, why, name, namespace, name, namespace)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

var hexID = regexp.MustCompile(`"?[0-9a-f]{32,}"?`)

// plainMessage drops what changes between repeats of the same event (exec
// and container IDs, the aggregation prefix), so a repeated warning is
// shown once.
func plainMessage(m string) string {
	m = strings.TrimPrefix(strings.TrimSpace(m), "(combined from similar events): ")
	return hexID.ReplaceAllString(m, "…")
}
