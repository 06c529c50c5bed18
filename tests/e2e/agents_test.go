//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/join/joinclient"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
	"github.com/kasa-io/kasa/tests/harness"
	"github.com/kasa-io/kasa/tests/harness/hosts"
)

// agentsNetwork is the network of TestE2EAgents, on its own subnet.
const (
	agentsNetwork = hosts.Prefix + "e2e-agents"
	agentsSubnet  = "172.31.241.0/24"
)

// cluster is a server host and agent hosts of TestE2EAgents.
type cluster struct {
	t      *testing.T
	nw     *hosts.Network
	srv    *hosts.Host
	agents map[string]*hosts.Host
	c      kubernetes.Interface
}

// TestE2EAgents: one server and two agents, each a host with its own
// address and file system, joined with the different kinds of token;
// workloads spread over them and reach each other across nodes; the
// refused joins; an agent host lost and back; the server restarted under
// running agents.
func TestE2EAgents(t *testing.T) {
	cl := newCluster(t, agentsNetwork, agentsSubnet, "ag1", "ag2")
	ctx := context.Background()
	ag1, ag2 := cl.agents["ag1"], cl.agents["ag2"]

	// The server, with an agent token of its own.
	const agentSecret = "e2e-agent-secret-0123456789"
	started := time.Now()
	// Certificates of 10 minutes: each renews every 2.5 minutes, in the
	// running processes; the last subtest checks the cluster after the
	// first ones expired.
	cl.startServer("--disable", "traefik", "--test-cert-lifetime", "10m")
	cl.c = cl.client()
	waitFor(t, 3*time.Minute, "node srv Ready", func() error { return nodesReady(ctx, cl.c, "srv") })
	firstCerts := certListing(t, cl.srv)
	t.Logf("server node Ready %s after its start", time.Since(started).Round(100*time.Millisecond))
	waitFor(t, 30*time.Second, "node srv labelled control-plane", func() error {
		n, err := cl.c.CoreV1().Nodes().Get(ctx, "srv", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Labels["node-role.kubernetes.io/control-plane"] != "true" {
			return fmt.Errorf("labels %v", n.Labels)
		}
		return nil
	})
	serverToken := strings.TrimSpace(mustExec(t, cl.srv, "cat", inHostDataDir+"/server/token"))
	agentToken := strings.TrimSpace(mustExec(t, cl.srv, "cat", inHostDataDir+"/server/agent-token"))
	if tk, err := token.Parse(agentToken); err != nil || tk.Secret != agentSecret || tk.User != token.AgentUser {
		t.Fatalf("agent token file: %+v %v", tk, err)
	}
	srvURL := "https://" + cl.srv.IP + ":6443"

	// Refused joins, with the real agent in host ag2 before it joins: the
	// agent exits with one clear line and no node appears.
	t.Run("refused", func(t *testing.T) {
		st, _ := token.Parse(serverToken)
		wrong := st
		wrong.Secret = "not-the-secret"
		out := agentFails(t, ag2, "bad-secret", wrong.String())
		if !strings.Contains(out, "token was not accepted") {
			t.Errorf("wrong secret: %s", out)
		}
		other := st
		other.CAHash = strings.Repeat("ab", 32)
		out = agentFails(t, ag2, "bad-ca", other.String())
		if !strings.Contains(out, "does not match the token") || !strings.Contains(out, "was not sent") {
			t.Errorf("CA mismatch: %s", out)
		}
		// The server saw the wrong secret, and never the mismatched one.
		journal := cl.srv.Journal(ctx, "kasa", 2000)
		if !strings.Contains(journal, "node=bad-secret") {
			t.Errorf("the server did not log the refused join of bad-secret")
		}
		if strings.Contains(journal, "node=bad-ca") {
			t.Errorf("a join request of bad-ca reached the server: the secret was sent")
		}
		for _, n := range []string{"bad-secret", "bad-ca"} {
			if _, err := cl.c.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("node %s: %v, want not found", n, err)
			}
		}
		// The agent token cannot join a server (the protocol's own client,
		// asking for the server role).
		at, _ := token.Parse(agentToken)
		ca, pinned, err := joinclient.FetchCA(ctx, srvURL, at)
		if err != nil || !pinned {
			t.Fatalf("fetch the CA: %v (pinned %v)", err, pinned)
		}
		_, err = joinclient.Join(ctx, srvURL, ca, at, join.Request{NodeName: "would-be-server", Role: join.RoleServer,
			Password: "0123456789abcdef0123456789abcdef"})
		if !errors.Is(err, joinclient.ErrRefused) || !strings.Contains(err.Error(), "can only join agents") {
			t.Errorf("agent token joining a server: %v", err)
		}
		// The server's own node name is taken.
		out = agentFails(t, ag2, "srv", agentToken)
		if !strings.Contains(out, `node "srv" belongs to another machine`) || !strings.Contains(out, "--node-name") {
			t.Errorf("claiming the server's name: %s", out)
		}
	})

	// ag1 joins with the agent token from a file; ag2 with a token made by
	// kasa token create, through KASA_URL and KASA_TOKEN.
	bootstrap := strings.TrimSpace(mustExec(t, cl.srv, "kasa", "token", "create", "--ttl", "1h", "--description", "e2e ag2"))
	if tk, err := token.Parse(bootstrap); err != nil || !tk.Bootstrap || tk.CAHash == "" {
		t.Fatalf("kasa token create printed %q: %+v %v", bootstrap, tk, err)
	}
	list := mustExec(t, cl.srv, "kasa", "token", "list")
	if tk, _ := token.Parse(bootstrap); !strings.Contains(list, tk.User) || !strings.Contains(list, "e2e ag2") {
		t.Errorf("kasa token list:\n%s", list)
	}
	if err := ag1.WriteFile(ctx, "/etc/kasa-token", []byte(agentToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	agentArgs := []string{"agent", "--data-dir", inHostDataDir, "--resolv-conf", hosts.PodResolvConf}
	installUnit(t, ag1, "kasa-agent", append(agentArgs, "--server", srvURL, "--token-file", "/etc/kasa-token"), nil)
	installUnit(t, ag2, "kasa-agent", agentArgs, []string{"KASA_URL=" + srvURL, "KASA_TOKEN=" + bootstrap})
	started = time.Now()
	mustExec(t, ag1, "systemctl", "start", "kasa-agent")
	mustExec(t, ag2, "systemctl", "start", "kasa-agent")
	waitFor(t, 3*time.Minute, "three nodes Ready", func() error { return nodesReady(ctx, cl.c, "srv", "ag1", "ag2") })
	t.Logf("both agents joined and Ready %s after their start", time.Since(started).Round(100*time.Millisecond))
	for _, h := range []*hosts.Host{ag1, ag2} {
		firstCerts = append(firstCerts, certListing(t, h)...)
	}
	for name, h := range cl.agents {
		if ps := mustExec(t, h, "ps", "-eo", "args"); strings.Contains(ps, agentSecret) || strings.Contains(ps, bootstrap) {
			t.Errorf("host %s: a token shows in the process list", name)
		}
		if journal := h.Journal(ctx, "kasa-agent", 5000); strings.Contains(journal, agentSecret) || strings.Contains(journal, bootstrap) {
			t.Errorf("host %s: a token shows in the agent's log", name)
		}
		for _, f := range []string{"node-password", "tls/client-kubelet.key", "kubelet.kubeconfig"} {
			if mode := strings.TrimSpace(mustExec(t, h, "stat", "-c", "%a", inHostDataDir+"/agent/"+f)); mode != "600" {
				t.Errorf("host %s: %s has mode %s", name, f, mode)
			}
		}
		node, err := cl.c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := node.Labels["node-role.kubernetes.io/control-plane"]; ok {
			t.Errorf("agent node %s has the control-plane role", name)
		}
		if ip := internalIP(node); ip != h.IP {
			t.Errorf("node %s has internal IP %s, want the host's %s", name, ip, h.IP)
		}
	}

	// Six replicas spread over the three nodes (two each); from a pod on
	// each node, a pod on every other node and the Service by name answer.
	cl.webDeployment(ctx, 6)
	var pods []corev1.Pod
	waitFor(t, 2*time.Minute, "six web pods running, two per node", func() error {
		var err error
		pods, err = webPods(ctx, cl.c, 6)
		if err != nil {
			return err
		}
		return spread(pods, map[string]int{"srv": 2, "ag1": 2, "ag2": 2})
	})
	cl.crossNode(ctx, pods)

	// Node loss: ag2 stops; its node turns NotReady and its pods come up
	// on the others.
	t.Run("node loss", func(t *testing.T) {
		if err := ag2.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		waitFor(t, 90*time.Second, "node ag2 NotReady", func() error {
			n, err := cl.c.CoreV1().Nodes().Get(ctx, "ag2", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if ready(n) {
				return errors.New("still Ready")
			}
			return nil
		})
		notReady := time.Since(stopped)
		t.Logf("node ag2 NotReady %s after its host stopped", notReady.Round(time.Second))
		if notReady > 60*time.Second {
			t.Errorf("node ag2 turned NotReady after %s, want within 60 s", notReady.Round(time.Second))
		}
		waitFor(t, 2*time.Minute, "six web pods running on srv and ag1", func() error {
			pods, err := webPods(ctx, cl.c, 6)
			if err != nil {
				return err
			}
			for _, p := range pods {
				if p.Spec.NodeName == "ag2" {
					return fmt.Errorf("pod %s still on ag2", p.Name)
				}
			}
			return nil
		})
		t.Logf("the lost node's pods run elsewhere %s after its host stopped", time.Since(stopped).Round(time.Second))

		// Back: the agent starts without a token (it has joined), the node
		// is Ready and schedulable.
		if err := ag2.Start(ctx); err != nil {
			t.Fatal(err)
		}
		installUnit(t, ag2, "kasa-agent", agentArgs, []string{"KASA_URL=" + srvURL})
		back := time.Now()
		mustExec(t, ag2, "systemctl", "start", "kasa-agent")
		waitFor(t, 2*time.Minute, "node ag2 Ready again", func() error { return nodesReady(ctx, cl.c, "srv", "ag1", "ag2") })
		t.Logf("node ag2 Ready %s after its agent started again", time.Since(back).Round(100*time.Millisecond))
		pod := pinnedPod("on-ag2", "ag2")
		if _, err := cl.c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 90*time.Second, "a pod scheduled onto ag2 runs", func() error {
			p, err := cl.c.CoreV1().Pods("default").Get(ctx, "on-ag2", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Spec.NodeName != "ag2" || p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("pod on %q is %s", p.Spec.NodeName, p.Status.Phase)
			}
			return nil
		})
	})

	// Rotation: the old server and agent secrets stop joining; the joined
	// nodes stay Ready.
	t.Run("rotate", func(t *testing.T) {
		newServer := strings.TrimSpace(mustExec(t, cl.srv, "kasa", "token", "rotate", "--data-dir", inHostDataDir))
		newAgent := strings.TrimSpace(mustExec(t, cl.srv, "kasa", "token", "rotate", "--agent", "--data-dir", inHostDataDir))
		if newServer == serverToken || newAgent == agentToken {
			t.Fatal("rotate printed the old token")
		}
		if f := strings.TrimSpace(mustExec(t, cl.srv, "cat", inHostDataDir+"/server/token")); f != newServer {
			t.Errorf("the server token file was not rewritten")
		}
		for _, old := range []string{serverToken, agentToken} {
			tk, _ := token.Parse(old)
			ca, _, err := joinclient.FetchCA(ctx, srvURL, tk)
			if err != nil {
				t.Fatal(err)
			}
			_, err = joinclient.Join(ctx, srvURL, ca, tk, join.Request{NodeName: "late", Role: join.RoleAgent,
				Password: "0123456789abcdef0123456789abcdef", Keys: joinKeys(t)})
			if !errors.Is(err, joinclient.ErrRefused) || !strings.Contains(err.Error(), "not accepted") {
				t.Errorf("a rotated-away %s token: %v", tk.User, err)
			}
		}
		time.Sleep(5 * time.Second)
		if err := nodesReady(ctx, cl.c, "srv", "ag1", "ag2"); err != nil {
			t.Errorf("after the rotation: %v", err)
		}
		// A new token works: the bootstrap token still joins; checked
		// here with the node name ag1 claimed by another password.
		tk, _ := token.Parse(newAgent)
		ca, _, err := joinclient.FetchCA(ctx, srvURL, tk)
		if err != nil {
			t.Fatal(err)
		}
		_, err = joinclient.Join(ctx, srvURL, ca, tk, join.Request{NodeName: "ag1", Role: join.RoleAgent,
			Password: "another-machines-password-0123456789", Keys: joinKeys(t)})
		if !errors.Is(err, joinclient.ErrRefused) || !strings.Contains(err.Error(), `node "ag1" belongs to another machine`) {
			t.Errorf("another machine claiming ag1: %v", err)
		}
	})

	// kasa certificate rotate-ca replaces the cluster's CAs while the
	// agents run: they take the new CAs and certificates on their own, stay
	// Ready, and --finish checks that each did before it drops the old CAs.
	// The restore and the restart below then prove that every part
	// reconnects with the new CAs alone.
	t.Run("CAs rotated", func(t *testing.T) {
		rotated := time.Now()
		out := mustExec(t, cl.srv, "kasa", "certificate", "rotate-ca", "--data-dir", inHostDataDir)
		if !strings.Contains(out, "the server issued its certificates under the new CAs") {
			t.Fatalf("rotate-ca:\n%s", out)
		}
		bundle := mustExec(t, cl.srv, "cat", inHostDataDir+"/server/tls/ca.crt")
		if n := strings.Count(bundle, "BEGIN CERTIFICATE"); n != 2 {
			t.Fatalf("ca.crt holds %d certificates during the rotation", n)
		}
		// --finish refuses while an agent has not taken the new CAs; it
		// may already have, so only the message is checked when it does.
		if out, stderr, err := cl.srv.Exec(ctx, "kasa", "certificate", "rotate-ca", "--finish", "--data-dir", inHostDataDir); err != nil &&
			!strings.Contains(stderr, "took the new CAs yet") && !strings.Contains(stderr, "has not published the new server CA") {
			t.Errorf("an early --finish: %v\n%s%s", err, out, stderr)
		}
		for name, h := range cl.agents {
			waitFor(t, 3*time.Minute, "agent "+name+" takes the new CAs", func() error {
				if got := mustExec(t, h, "cat", inHostDataDir+"/agent/tls/ca.crt"); got != bundle {
					return errors.New("its ca.crt is not the server's")
				}
				return nil
			})
		}
		waitFor(t, 2*time.Minute, "rotate-ca --finish", func() error {
			out, stderr, err := cl.srv.Exec(ctx, "kasa", "certificate", "rotate-ca", "--finish", "--data-dir", inHostDataDir)
			if err != nil {
				return fmt.Errorf("%w: %s%s", err, out, stderr)
			}
			return nil
		})
		finished := mustExec(t, cl.srv, "cat", inHostDataDir+"/server/tls/ca.crt")
		for name, h := range cl.agents {
			waitFor(t, 3*time.Minute, "agent "+name+" drops the old CAs", func() error {
				if got := mustExec(t, h, "cat", inHostDataDir+"/agent/tls/ca.crt"); got != finished {
					return errors.New("its ca.crt is not the server's")
				}
				return nil
			})
			j := h.Journal(ctx, "kasa-agent", 20000)
			if strings.Count(j, "the cluster's CAs changed") < 2 {
				t.Errorf("agent %s did not log both changes of the CAs", name)
			}
		}
		for _, n := range []string{"srv", "ag1", "ag2"} {
			waitFor(t, 2*time.Minute, "node "+n+" renews its lease after the rotation", func() error {
				return harness.LeaseRenewedAfter(ctx, cl.c, n, rotated)
			})
		}
		if err := nodesReady(ctx, cl.c, "srv", "ag1", "ag2"); err != nil {
			t.Error(err)
		}
		// The API server reads its client CA file again (within a minute
		// or so); then the old client CA is refused, and the API server
		// still reaches each kubelet for kubectl exec.
		pods, err := webPods(ctx, cl.c, 6)
		if err != nil {
			t.Fatal(err)
		}
		cl.crossNode(ctx, pods)
	})

	// A snapshot taken while the agents run restores onto a fresh data dir
	// of the server host (kasa killall, the data dir moved away: a new
	// machine with the server's address), with the token: the same CAs and
	// objects, what was written after the snapshot gone, the pods back,
	// and the agents reconnected without joining again.
	t.Run("snapshot restore", func(t *testing.T) {
		out := mustExec(t, cl.srv, "kasa", "db", "snapshot", "save", "--name", "e2e", "--data-dir", inHostDataDir)
		saved, _, _ := strings.Cut(strings.TrimSpace(out), " ")
		if !strings.HasPrefix(saved, "/") {
			t.Fatalf("snapshot save printed %q", out)
		}
		const file = "/root/e2e-snapshot"
		mustExec(t, cl.srv, "cp", saved, file)
		pods, err := webPods(ctx, cl.c, 6)
		if err != nil {
			t.Fatal(err)
		}
		after := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-snapshot"}}
		if _, err := cl.c.CoreV1().ConfigMaps("default").Create(ctx, after, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		joinState := map[string]string{}
		for name, h := range cl.agents {
			joinState[name] = mustExec(t, h, "cat", inHostDataDir+"/agent/etc/join.json")
		}
		ca := mustExec(t, cl.srv, "cat", inHostDataDir+"/server/tls/ca.crt")
		tok := strings.TrimSpace(mustExec(t, cl.srv, "cat", inHostDataDir+"/server/token"))
		mustExec(t, cl.srv, "systemctl", "stop", "kasa")
		killallIn(t, cl.srv)
		mustExec(t, cl.srv, "mv", inHostDataDir, inHostDataDir+".before-restore")
		// The new machine gets the app's image archive, as the old one had.
		mustExec(t, cl.srv, "mkdir", "-p", inHostDataDir+"/agent")
		mustExec(t, cl.srv, "cp", "-a", inHostDataDir+".before-restore/agent/images", inHostDataDir+"/agent/")
		restored := time.Now()
		// The token goes in the service's environment file, never in its
		// arguments.
		installUnit(t, cl.srv, "kasa", []string{"server", "--data-dir", inHostDataDir, "--resolv-conf", hosts.PodResolvConf,
			"--disable", "traefik", "--test-cert-lifetime", "10m", "--cluster-reset", "--cluster-reset-restore-path", file},
			[]string{"KASA_TOKEN=" + tok})
		mustExec(t, cl.srv, "systemctl", "start", "kasa")
		waitFor(t, 4*time.Minute, "three nodes Ready after the restore", func() error {
			return nodesReady(ctx, cl.c, "srv", "ag1", "ag2")
		})
		for _, name := range []string{"srv", "ag1", "ag2"} {
			waitFor(t, 2*time.Minute, "node "+name+" renews its lease after the restore", func() error {
				return harness.LeaseRenewedAfter(ctx, cl.c, name, restored)
			})
		}
		t.Logf("all nodes back %s after the restore started", time.Since(restored).Round(100*time.Millisecond))
		if got := mustExec(t, cl.srv, "cat", inHostDataDir+"/server/tls/ca.crt"); got != ca {
			t.Error("the restored server has another CA")
		}
		if _, err := cl.c.CoreV1().ConfigMaps("default").Get(ctx, after.Name, metav1.GetOptions{}); err == nil {
			t.Error("the ConfigMap written after the snapshot survived the restore")
		}
		for name, h := range cl.agents {
			if got := mustExec(t, h, "cat", inHostDataDir+"/agent/etc/join.json"); got != joinState[name] {
				t.Errorf("agent %s joined again", name)
			}
		}
		var back []corev1.Pod
		// The snapshot says Running; the server host's pods run only once
		// its new kubelet started their containers again.
		waitFor(t, 3*time.Minute, "the six web pods of the snapshot running", func() error {
			var err error
			if back, err = webPods(ctx, cl.c, 6); err != nil {
				return err
			}
			for _, p := range back {
				if p.Spec.NodeName != "srv" {
					continue
				}
				for _, c := range p.Status.ContainerStatuses {
					if c.State.Running == nil || c.State.Running.StartedAt.Time.Before(restored) {
						return fmt.Errorf("pod %s on srv: container %s not started since the restore", p.Name, c.Name)
					}
				}
			}
			return nil
		})
		for i := range pods {
			if pods[i].UID != back[i].UID {
				t.Errorf("pod %s is not the snapshot's (uid %s -> %s)", pods[i].Name, pods[i].UID, back[i].UID)
			}
		}
		cl.crossNode(ctx, back)
		// Written after the restore: the restart below, with the same
		// flags, must keep it (a second start restores nothing).
		kept := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-restore"}}
		if _, err := cl.c.CoreV1().ConfigMaps("default").Create(ctx, kept, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		mustExec(t, cl.srv, "rm", "-rf", inHostDataDir+".before-restore")
	})

	// The server restarts under the running agents: they reconnect by
	// themselves and the workloads keep running.
	t.Run("server restart", func(t *testing.T) {
		pods, err := webPods(ctx, cl.c, 6)
		if err != nil {
			t.Fatal(err)
		}
		// The agents' logs so far: the restore above was an outage too.
		before := map[string][2]int{}
		for name, h := range cl.agents {
			j := h.Journal(ctx, "kasa-agent", 100000)
			before[name] = [2]int{strings.Count(j, "no server answers"), strings.Count(j, "server answers again")}
		}
		mustExec(t, cl.srv, "systemctl", "stop", "kasa")
		time.Sleep(10 * time.Second)
		restarted := time.Now()
		mustExec(t, cl.srv, "systemctl", "start", "kasa")
		waitFor(t, 3*time.Minute, "three nodes Ready after the server restart", func() error {
			return nodesReady(ctx, cl.c, "srv", "ag1", "ag2")
		})
		// Proof that each agent is back: its kubelet renews its node's
		// lease through the load balancer again.
		for name := range cl.agents {
			waitFor(t, 2*time.Minute, "node "+name+" renews its lease after the server restart", func() error {
				return harness.LeaseRenewedAfter(ctx, cl.c, name, restarted)
			})
		}
		t.Logf("all nodes Ready and renewing their leases %s after the server started again", time.Since(restarted).Round(100*time.Millisecond))
		if _, err := cl.c.CoreV1().ConfigMaps("default").Get(ctx, "after-restore", metav1.GetOptions{}); err != nil {
			t.Errorf("a restart with --cluster-reset still in the unit restored again: %v", err)
		}
		after, err := webPods(ctx, cl.c, 6)
		if err != nil {
			t.Fatal(err)
		}
		for i := range pods {
			p, q := pods[i], after[i]
			if p.UID != q.UID || restarts(q) != restarts(p) {
				t.Errorf("pod %s changed across the server restart (uid %s -> %s, restarts %d -> %d)", p.Name, p.UID, q.UID, restarts(p), restarts(q))
			}
		}
		for name, h := range cl.agents {
			j := h.Journal(ctx, "kasa-agent", 100000)
			down, up := strings.Count(j, "no server answers")-before[name][0], strings.Count(j, "server answers again")-before[name][1]
			if down < 1 || up < 1 || down > 2 || up > 2 {
				t.Errorf("agent %s logged %d 'no server answers' and %d 'answers again' lines, want one of each per outage", name, down, up)
			}
		}
		cl.crossNode(ctx, after)
	})

	// Renewal in the running processes: once every certificate of the
	// first listings has expired, each has been replaced, and the
	// kubelets, kube-proxy, the control plane, metrics-server and the
	// admin kubeconfig work on with the new ones, without a restart.
	// NetworkPolicies enforced on the three nodes (vxlan), in the time the
	// first certificates take to expire.
	t.Run("network policy", func(t *testing.T) {
		cl.networkPolicies(t, []string{"srv", "ag1", "ag2"})
	})

	t.Run("certificates renewed in place", func(t *testing.T) {
		var gone time.Time
		for _, in := range firstCerts {
			if !in.CA && in.NotAfter.After(gone) {
				gone = in.NotAfter
			}
		}
		if wait := time.Until(gone.Add(30 * time.Second)); wait > 0 {
			t.Logf("waiting %s for the first certificates to expire", wait.Round(time.Second))
			time.Sleep(wait)
		}
		for name, h := range map[string]*hosts.Host{"srv": cl.srv, "ag1": ag1, "ag2": ag2} {
			now := certListing(t, h)
			leaves := 0
			for _, in := range now {
				if in.CA {
					continue
				}
				leaves++
				if !in.NotAfter.After(gone) || in.Status == pki.StatusExpired {
					t.Errorf("host %s: %s expires %s, not renewed since the first ones expired (%s)", name, in.File, in.NotAfter, gone)
				}
			}
			if leaves < 3 {
				t.Errorf("host %s: %d certificates listed", name, leaves)
			}
		}
		// The kubelets post their leases with renewed client certificates.
		for _, n := range []string{"srv", "ag1", "ag2"} {
			waitFor(t, time.Minute, "node "+n+" renews its lease after the first certificates expired", func() error {
				return harness.LeaseRenewedAfter(ctx, cl.c, n, gone)
			})
		}
		// New pods (controller-manager, scheduler, kubelets), reached
		// across nodes and through the Service (kube-proxy, flannel), by
		// kubectl exec on the server host (admin kubeconfig, the API
		// server's client of the kubelets and their serving certificates).
		if err := cl.c.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=web"}); err != nil {
			t.Fatal(err)
		}
		var pods []corev1.Pod
		waitFor(t, 2*time.Minute, "six new web pods running", func() error {
			var err error
			if pods, err = webPods(ctx, cl.c, 6); err != nil {
				return err
			}
			for _, p := range pods {
				if p.CreationTimestamp.Time.Before(gone) {
					return fmt.Errorf("pod %s is from before", p.Name)
				}
			}
			return nil
		})
		cl.crossNode(ctx, pods)
		waitFor(t, 2*time.Minute, "kasa kubectl top node (metrics-server reads the kubelets)", func() error {
			out, stderr, err := cl.srv.Exec(ctx, "kasa", "kubectl", "top", "node")
			if err != nil {
				return fmt.Errorf("%w: %s", err, stderr)
			}
			for _, n := range []string{"srv", "ag1", "ag2"} {
				if !strings.Contains(out, n) {
					return fmt.Errorf("no %s in:\n%s", n, out)
				}
			}
			return nil
		})
		for name, h := range map[string]*hosts.Host{"srv": cl.srv, "ag1": ag1, "ag2": ag2} {
			unit := "kasa-agent"
			if name == "srv" {
				unit = "kasa"
			}
			j := h.Journal(ctx, unit, 20000)
			if n := strings.Count(j, "certificate has expired"); n > 0 {
				t.Errorf("host %s: %d lines of %s say a certificate has expired", name, n, unit)
			}
			if !strings.Contains(j, "wrote certificate") && !strings.Contains(j, "renewed the node's certificates") {
				t.Errorf("host %s: no renewal in the log of %s", name, unit)
			}
		}
	})
}

// certListing is kasa certificate check --output json in host h.
func certListing(t *testing.T, h *hosts.Host) []pki.Info {
	t.Helper()
	var infos []pki.Info
	if err := json.Unmarshal([]byte(mustExec(t, h, "kasa", "certificate", "check", "--output", "json", "--data-dir", inHostDataDir)), &infos); err != nil {
		t.Fatal(err)
	}
	return infos
}

// newCluster starts hosts srv and agents on a network of their own, with
// the test image in each one's images folder (a node imports it at start),
// and registers their removal: kasa killall in each host, the network
// closed, and the machine checked as it was.
func newCluster(t *testing.T, network, subnet string, agents ...string) *cluster {
	t.Helper()
	return newClusterWith(t, network, subnet, func(bin, image string) map[string]string {
		return map[string]string{"/usr/local/bin/kasa": bin, inHostDataDir + "/agent/images/web.tar": image}
	}, agents...)
}

// newClusterWith is newCluster with the files each host gets, from the
// binary's and the test image's paths.
func newClusterWith(t *testing.T, network, subnet string, filesFor func(bin, image string) map[string]string, agents ...string) *cluster {
	t.Helper()
	bin := prepareHosts(t, network)
	ctx := context.Background()
	imageDir := t.TempDir()
	if err := harness.BuildTestImage(filepath.Join(imageDir, "web.tar")); err != nil {
		t.Fatal(err)
	}
	before := snapshotMachine(t)
	nw, err := hosts.NewNetwork(network, subnet)
	if err != nil {
		t.Fatal(err)
	}
	nw.Logf = t.Logf
	cl := &cluster{t: t, nw: nw, agents: map[string]*hosts.Host{}}
	// KASA_E2E_KEEP_HOSTS=1 keeps the hosts of a failed run for a look;
	// the next run removes them.
	keep := func() bool { return t.Failed() && os.Getenv("KASA_E2E_KEEP_HOSTS") != "" }
	var veths []string
	t.Cleanup(func() {
		if !keep() {
			checkMachineClean(t, before, nw, veths)
		}
	})
	t.Cleanup(func() {
		if keep() {
			t.Logf("KASA_E2E_KEEP_HOSTS: the hosts %v stay; the next run of the test removes them", nw.Hosts())
			return
		}
		cl.teardown()
		if err := nw.Close(); err != nil {
			t.Errorf("close the network: %v", err)
		}
	})
	files := filesFor(bin, filepath.Join(imageDir, "web.tar"))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var startErr error
	for _, name := range append([]string{"srv"}, agents...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := nw.StartHost(ctx, name, hosts.HostOptions{Files: files})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				startErr = errors.Join(startErr, err)
				return
			}
			if name == "srv" {
				cl.srv = h
			} else {
				cl.agents[name] = h
			}
		}()
	}
	wg.Wait()
	if startErr != nil {
		t.Fatal(startErr)
	}
	veths = vethsOn(t, nw.Bridge)
	return cl
}

// startServer starts kasa server in host srv as the unit kasa, with the
// agent token e2e-agent-secret-0123456789 and args.
func (cl *cluster) startServer(args ...string) {
	installUnit(cl.t, cl.srv, "kasa", append([]string{"server", "--data-dir", inHostDataDir, "--resolv-conf", hosts.PodResolvConf}, args...),
		[]string{"KASA_AGENT_TOKEN=e2e-agent-secret-0123456789"})
	mustExec(cl.t, cl.srv, "systemctl", "start", "kasa")
}

// installUnit writes a systemd unit that runs kasa with args, and the
// environment file it reads (mode 0600), as an installer would.
func installUnit(t *testing.T, h *hosts.Host, name string, args []string, env []string) {
	t.Helper()
	ctx := context.Background()
	unit := fmt.Sprintf(`[Unit]
Description=kasa (%s)
After=network-online.target

[Service]
Type=exec
EnvironmentFile=-/etc/systemd/system/%s.service.env
ExecStart=/usr/local/bin/kasa %s
KillMode=process
Delegate=yes
`, name, name, strings.Join(args, " "))
	if err := h.WriteFile(ctx, "/etc/systemd/system/"+name+".service", []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteFile(ctx, "/etc/systemd/system/"+name+".service.env", []byte(strings.Join(env, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustExec(t, h, "systemctl", "daemon-reload")
}

// client is a client of the cluster from this machine, with the server's
// admin kubeconfig pointed at the server host's address.
func (cl *cluster) client() kubernetes.Interface {
	c, err := cl.srv.Client(context.Background(), 2*time.Minute)
	if err != nil {
		cl.t.Fatal(err)
	}
	return c
}

// teardown stops kasa in every host and restores what it changed: the
// agents first, then the server. The hosts share this machine's kernel, so
// the agents, started after the server's kubelet had changed kernel
// settings, recorded those changed values as theirs; the server, started
// first, recorded the machine's own and restores them last.
func (cl *cluster) teardown() {
	ctx := context.Background()
	var all []*hosts.Host
	for _, name := range slices.Sorted(maps.Keys(cl.agents)) {
		all = append(all, cl.agents[name])
	}
	if cl.srv != nil {
		all = append(all, cl.srv)
	}
	for _, h := range all {
		if running, err := h.Running(ctx); err != nil || !running {
			continue
		}
		if cl.t.Failed() {
			unit := "kasa-agent"
			if _, _, err := h.Exec(ctx, "test", "-e", "/etc/systemd/system/kasa.service"); err == nil {
				unit = "kasa" // a server (TestE2EServers has several)
			}
			cl.t.Logf("journal of %s in host %s (tail):\n%s", unit, h.Name, h.Journal(ctx, unit, 80))
		}
		if _, _, err := h.Exec(ctx, "test", "-x", "/usr/local/bin/kasa"); err != nil {
			continue // uninstalled
		}
		killallIn(cl.t, h)
	}
}

// agentFails runs kasa agent in h as node name with tok, expects it to
// fail at once, and returns its output.
func agentFails(t *testing.T, h *hosts.Host, name, tok string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, stderr, err := h.Exec(ctx, "env", "KASA_TOKEN="+tok, "kasa", "agent", "--server", "https://srv:6443",
		"--node-name", name, "--data-dir", inHostDataDir, "--resolv-conf", hosts.PodResolvConf)
	if err == nil {
		t.Fatalf("kasa agent as %s succeeded:\n%s%s", name, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "kasa: ") {
		t.Errorf("kasa agent as %s: the last line is not kasa's error: %q", name, last)
	}
	if strings.Contains(stderr, strings.SplitN(tok, ":", 4)[len(strings.SplitN(tok, ":", 4))-1]) {
		t.Errorf("kasa agent as %s printed the token's secret", name)
	}
	return last
}

func nodesReady(ctx context.Context, c kubernetes.Interface, names ...string) error {
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var have []string
	for i := range nodes.Items {
		n := &nodes.Items[i]
		have = append(have, n.Name)
		if !ready(n) {
			return fmt.Errorf("node %s not Ready", n.Name)
		}
		if n.Spec.Unschedulable || len(n.Spec.Taints) > 0 {
			return fmt.Errorf("node %s not schedulable (taints %v)", n.Name, n.Spec.Taints)
		}
	}
	slices.Sort(have)
	want := slices.Sorted(slices.Values(names))
	if !slices.Equal(have, want) {
		return fmt.Errorf("nodes %v, want %v", have, want)
	}
	return nil
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// webDeployment creates the Deployment web (n replicas, at most one more
// per node than on any other) and its Service. Its pods leave an
// unreachable or not-ready node after 10 s instead of 5 min.
func (cl *cluster) webDeployment(ctx context.Context, n int32) {
	t := cl.t
	labels := map[string]string{"app": "web"}
	d := harness.Deployment("web", n, corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "web", Image: testImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve", ":8080"},
			Ports:          []corev1.ContainerPort{{ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(8080)}}, PeriodSeconds: 2},
		}},
		TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
			// A lost node (tainted unreachable) does not count.
			NodeTaintsPolicy: ptr.To(corev1.NodeInclusionPolicyHonor),
		}},
		Tolerations: []corev1.Toleration{
			{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](10)},
			{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](10)},
		},
	})
	if _, err := cl.c.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	if _, err := cl.c.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// webPods returns the n running, ready web pods, sorted by name.
func webPods(ctx context.Context, c kubernetes.Interface, n int) ([]corev1.Pod, error) {
	list, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		if p.Status.Phase != corev1.PodRunning || !podReady(&p) {
			return nil, fmt.Errorf("pod %s on %q is %s", p.Name, p.Spec.NodeName, p.Status.Phase)
		}
		out = append(out, p)
	}
	if len(out) != n {
		return nil, fmt.Errorf("%d web pods running, want %d", len(out), n)
	}
	slices.SortFunc(out, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func restarts(p corev1.Pod) int32 {
	var n int32
	for _, cs := range p.Status.ContainerStatuses {
		n += cs.RestartCount
	}
	return n
}

func spread(pods []corev1.Pod, want map[string]int) error {
	got := map[string]int{}
	for _, p := range pods {
		got[p.Spec.NodeName]++
	}
	for node, n := range want {
		if got[node] != n {
			return fmt.Errorf("pods per node %v, want %v", got, want)
		}
	}
	return nil
}

// crossNode checks, from one pod on each node, that a pod on every other
// node answers at its pod IP and that the Service answers by name.
func (cl *cluster) crossNode(ctx context.Context, pods []corev1.Pod) {
	t := cl.t
	byNode := map[string]corev1.Pod{}
	for _, p := range pods {
		if _, ok := byNode[p.Spec.NodeName]; !ok {
			byNode[p.Spec.NodeName] = p
		}
	}
	for from, fp := range byNode {
		for to, tp := range byNode {
			if from == to {
				continue
			}
			out := cl.podGet(fp.Name, "http://"+tp.Status.PodIP+":8080/")
			if !strings.Contains(out, "hello from "+tp.Name) {
				t.Errorf("pod %s on %s -> pod %s on %s: %q", fp.Name, from, tp.Name, to, out)
			}
		}
		out := cl.podGet(fp.Name, "http://web.default.svc.cluster.local/")
		if !strings.Contains(out, "hello from web-") {
			t.Errorf("pod %s on %s -> service web by name: %q", fp.Name, from, out)
		}
	}
	t.Logf("pods on %d nodes reach each other and the service by name", len(byNode))
}

// podGet runs the test image's client in pod name, through kubectl exec on
// the server host (the API server reaches each node's kubelet).
func (cl *cluster) podGet(pod, url string) string {
	var out string
	err := harness.Eventually(30*time.Second, func() error {
		o, stderr, err := cl.srv.Exec(context.Background(), "kasa", "kubectl", "exec", pod, "--", "/testimage", "get", url)
		if err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr))
		}
		out = o
		return nil
	})
	if err != nil {
		cl.t.Errorf("exec in %s: get %s: %v", pod, url, err)
	}
	return out
}

// pinnedPod is a pod of the test image for node.
func pinnedPod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{corev1.LabelHostname: node},
			Containers:   []corev1.Container{{Name: "web", Image: testImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve", ":8080"}}},
		},
	}
}

// joinKeys are public keys for every certificate of a join request.
func joinKeys(t *testing.T) map[string]string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := pki.PublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, l := range join.NodeCerts("any", nil) {
		keys[join.CertName(l)] = string(pub)
	}
	return keys
}

// TestE2EAgentsHostGW: with --flannel-backend host-gw on the server, an
// agent takes the backend from its join; pod traffic between the nodes
// goes over plain routes to the other host's address (no vxlan device),
// and a pod on the agent reaches a pod on the server and the Service by
// name.
func TestE2EAgentsHostGW(t *testing.T) {
	cl := newCluster(t, agentsNetwork+"-hostgw", "172.31.243.0/24", "ag1")
	ctx := context.Background()
	ag1 := cl.agents["ag1"]
	cl.startServer("--flannel-backend", "host-gw", "--disable", "traefik,metrics-server,servicelb")
	cl.c = cl.client()
	waitFor(t, 3*time.Minute, "node srv Ready", func() error { return nodesReady(ctx, cl.c, "srv") })
	tok := strings.TrimSpace(mustExec(t, cl.srv, "cat", inHostDataDir+"/server/token"))
	installUnit(t, ag1, "kasa-agent", []string{"agent", "--data-dir", inHostDataDir, "--resolv-conf", hosts.PodResolvConf,
		"--server", "https://" + cl.srv.IP + ":6443"}, []string{"KASA_TOKEN=" + tok})
	mustExec(t, ag1, "systemctl", "start", "kasa-agent")
	waitFor(t, 3*time.Minute, "two nodes Ready", func() error { return nodesReady(ctx, cl.c, "srv", "ag1") })

	cl.webDeployment(ctx, 2)
	var pods []corev1.Pod
	waitFor(t, 2*time.Minute, "a web pod on each node", func() error {
		var err error
		if pods, err = webPods(ctx, cl.c, 2); err != nil {
			return err
		}
		return spread(pods, map[string]int{"srv": 1, "ag1": 1})
	})
	for _, pair := range [][2]*hosts.Host{{cl.srv, ag1}, {ag1, cl.srv}} {
		h, other := pair[0], pair[1]
		if out := mustExec(t, h, "ip", "-br", "link"); strings.Contains(out, "flannel.1") {
			t.Errorf("host %s has a vxlan device with host-gw:\n%s", h.Name, out)
		}
		node, err := cl.c.CoreV1().Nodes().Get(ctx, other.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		route := strings.TrimSpace(mustExec(t, h, "ip", "route", "show", node.Spec.PodCIDR))
		if !strings.Contains(route, "via "+other.IP) {
			t.Errorf("host %s: route to %s's pods %s is %q, want via %s", h.Name, other.Name, node.Spec.PodCIDR, route, other.IP)
		}
	}
	cl.crossNode(ctx, pods)
	t.Run("network policy", func(t *testing.T) {
		cl.networkPolicies(t, []string{"srv", "ag1"})
	})
}
