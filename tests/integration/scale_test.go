//go:build integration

package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kasa-io/kasa/tests/harness"
)

// TestIntegrationScale is make bench-scale's path in small: 20 nodes that
// kwok's controller simulates join a server with --disable-agent, and four
// Deployments make 200 pods of them. Every pod must be bound to one of
// those nodes by the scheduler and Running as kwok reports it, and every
// node Ready with a lease that kwok renewed after its start. Speed is not
// checked (make bench-scale measures it).
func TestIntegrationScale(t *testing.T) {
	const nodes, deployments, replicas = 20, 4, 50
	kwokBin, stages, err := harness.KwokBinary()
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--disable", "traefik,servicelb,metrics-server")
	cs := client(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	started := time.Now()
	k, err := harness.StartKwok(kwokBin, stages, s.Kubeconfig(), "10.128.0.0/16", filepath.Join(s.DataDir, "kwok.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.Stop()
		if t.Failed() {
			t.Logf("kwok's log: %s", k.Log)
		}
	})
	if err := harness.CreateKwokNodes(ctx, cs, 0, nodes, 8); err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "scale"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range deployments {
		d := harness.KwokDeployment(fmt.Sprintf("app-%d", i), replicas)
		if _, err := cs.AppsV1().Deployments("scale").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	var last string
	err = harness.Eventually(6*time.Minute, func() error {
		if !k.Running() {
			return fmt.Errorf("kwok ended (its log: %s)", k.Log)
		}
		running, total, notYet, err := harness.KwokPods(ctx, cs, "scale")
		if err != nil {
			return err
		}
		last = fmt.Sprintf("%d of %d pods Running on simulated nodes (want %d); not yet: %v", running, total, deployments*replicas, notYet)
		if running != deployments*replicas || total != running {
			return fmt.Errorf("%s", last)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s, %.1f s after kwok's start", last, time.Since(started).Seconds())

	// Every node took pods (the scheduler spreads them), and each is Ready
	// with a lease renewed by kwok, not only created.
	pods, err := cs.CoreV1().Pods("scale").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	perNode := map[string]int{}
	for _, p := range pods.Items {
		perNode[p.Spec.NodeName]++
	}
	if len(perNode) != nodes {
		t.Errorf("pods on %d nodes, want all %d: %v", len(perNode), nodes, perNode)
	}
	if err := harness.Eventually(time.Minute, func() error {
		bad, err := harness.KwokNodesReady(ctx, cs, started)
		if err == nil && len(bad) > 0 {
			err = fmt.Errorf("%d of %d nodes: %v", len(bad), nodes, bad[:min(len(bad), 5)])
		}
		return err
	}); err != nil {
		t.Error(err)
	}
}
