//go:build integration

package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/join/joinclient"
	"github.com/kasa-io/kasa/pkg/join/joinserver"
	"github.com/kasa-io/kasa/pkg/token"
)

// TestIntegrationRenewDeletedNode: against a real server, a joined node
// renews its certificates with its kubelet client certificate while its
// Node exists; after the Node is deleted (kasa kubectl delete node) the
// renewal is refused with the reason and the remedy, and a join with the
// token takes the name back.
func TestIntegrationRenewDeletedNode(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	tok, caPEM := serverTokenAndCA(t, s)
	password, err := token.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	// request makes the node's keys and its request, and returns the
	// kubelet client key with it.
	request := func() (join.Request, *ecdsa.PrivateKey) {
		req := join.Request{NodeName: "gone-1", Role: join.RoleAgent, Password: password, Addresses: []string{"192.0.2.7"}, Keys: map[string]string{}}
		return req, nodeKeys(t, &req)["client-kubelet"]
	}
	certOf := func(resp *join.Response, key *ecdsa.PrivateKey) tls.Certificate {
		block, _ := pem.Decode([]byte(resp.Certificates["client-kubelet"]))
		if block == nil {
			t.Fatal("no client-kubelet certificate")
		}
		return tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: key}
	}

	req, key := request()
	resp, err := joinclient.Join(ctx, s.URL(), caPEM, tok, req)
	if err != nil {
		t.Fatal(err)
	}
	cert := certOf(resp, key)
	// The kubelet registers its Node.
	nodes := client(t, s).CoreV1().Nodes()
	if _, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: req.NodeName}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	renewal, _ := request()
	if _, err := joinclient.Renew(ctx, s.URL(), caPEM, cert, renewal); err != nil {
		t.Fatalf("renewal of a node that exists: %v", err)
	}

	if err := nodes.Delete(ctx, req.NodeName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = joinclient.Renew(ctx, s.URL(), caPEM, cert, renewal)
	if !errors.Is(err, join.ErrNodeDeleted) || !strings.Contains(err.Error(), "node gone-1 was deleted from the cluster; join it again with a token (--token)") {
		t.Fatalf("renewal after the Node was deleted: %v", err)
	}
	if _, err := nodes.Get(ctx, req.NodeName, metav1.GetOptions{}); err == nil {
		t.Error("the refused renewal brought the Node back")
	}

	again, _ := request()
	if _, err := joinclient.Join(ctx, s.URL(), caPEM, tok, again); err != nil {
		t.Fatalf("joining again with the token: %v", err)
	}
	if _, err := client(t, s).CoreV1().Secrets(joinserver.Namespace).Get(ctx, "gone-1.node-password.kasa", metav1.GetOptions{}); err != nil {
		t.Errorf("the node password after joining again: %v", err)
	}
	log, err := os.ReadFile(s.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), password) || strings.Contains(string(log), tok.Secret) {
		t.Error("a secret is in the server's log")
	}
	if !strings.Contains(string(log), "renewal of a deleted node") {
		t.Error("the refusal is not in the server's log")
	}
}
