package harness

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// A node's Ready condition stays True in the API while its kubelet is
// stopped (until the node controller's grace period runs out), so after a
// restart "Ready" proves nothing by itself. What a kubelet running now
// writes does: its lease's renewal and the heartbeat of its node status.

// OnlyNode returns the name of the cluster's one node.
func OnlyNode(ctx context.Context, c kubernetes.Interface) (string, error) {
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	if len(nodes.Items) != 1 {
		return "", fmt.Errorf("%d nodes, want 1", len(nodes.Items))
	}
	return nodes.Items[0].Name, nil
}

// LeaseRenewedAfter returns nil if the node's lease in kube-node-lease was
// renewed after t: a kubelet that ran after t reached the API server. A
// kubelet renews its lease at its start and every 10 s.
func LeaseRenewedAfter(ctx context.Context, c kubernetes.Interface, node string, t time.Time) error {
	l, err := c.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if l.Spec.RenewTime == nil {
		return fmt.Errorf("node %s: its lease was never renewed", node)
	}
	if !l.Spec.RenewTime.After(t) {
		return fmt.Errorf("node %s: its lease was last renewed at %s, not after %s",
			node, l.Spec.RenewTime.Format(stamp), t.Format(stamp))
	}
	return nil
}

// ReadyPostedAfter returns nil if the node is Ready by a status its
// kubelet posted after t: the Ready condition is True and its heartbeat is
// later than t. A kubelet posts its status at its start, and then when it
// changes. The API keeps a heartbeat in whole seconds, rounded down, so a
// heartbeat in t's own second does not count: the check never passes on a
// status from before t.
func ReadyPostedAfter(ctx context.Context, c kubernetes.Interface, node string, t time.Time) error {
	n, err := c.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type != corev1.NodeReady {
			continue
		}
		if cond.Status != corev1.ConditionTrue {
			return fmt.Errorf("node %s: Ready is %s (%s)", node, cond.Status, cond.Message)
		}
		if !cond.LastHeartbeatTime.After(t) {
			return fmt.Errorf("node %s: Ready, but by a status posted at %s, not after %s",
				node, cond.LastHeartbeatTime.Format(stamp), t.Format(stamp))
		}
		return nil
	}
	return fmt.Errorf("node %s has no Ready condition", node)
}

const stamp = "15:04:05.000"

// LeaderLeasesRenewedAfter returns nil if the controller-manager's and the
// scheduler's leases in kube-system were renewed after t (less a second,
// for the clocks of test hosts): a leader acts again.
func LeaderLeasesRenewedAfter(ctx context.Context, c kubernetes.Interface, t time.Time) error {
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		l, err := c.CoordinationV1().Leases(metav1.NamespaceSystem).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.RenewTime == nil || l.Spec.RenewTime.Time.Before(t.Add(-time.Second)) {
			return fmt.Errorf("the lease %s was last renewed before %s", name, t.Format(stamp))
		}
	}
	return nil
}
