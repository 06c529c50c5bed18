//go:build integration

package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/join/joinclient"
	"github.com/kasa-io/kasa/tests/harness"
)

// TestIntegrationNodeIdentities: against a real server, each node acts as
// itself. With its kubelet client certificate, node A patches its own Node
// and not node B's; it makes and removes the local-path volumes pinned to
// itself, and the admission policy refuses a volume pinned to B, B's
// volume's removal and anything not made by the local-path provisioner. An
// agent of an earlier kasa, which asks for the shared flannel and
// local-path certificates, still joins and renews, and gets its own
// identity under those names; the shared identities' rights left by an
// earlier kasa are gone after a restart.
func TestIntegrationNodeIdentities(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	admin := client(t, s)

	// An upgraded cluster: the bindings an earlier kasa's rbac.yaml made.
	for _, name := range []string{"kasa:flannel", "kasa:local-path"} {
		user := strings.Replace(name, "kasa:", "system:kasa-", 1)
		if _, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes", "persistentvolumes"}, Verbs: []string{"*"}}},
		}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	stopAndRestart(t, s)
	admin = client(t, s)
	t.Run("shared identities removed", func(t *testing.T) {
		eventually(t, 30*time.Second, func() error {
			for _, name := range []string{"kasa:flannel", "kasa:local-path"} {
				if _, err := admin.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					return errors.Join(fmt.Errorf("ClusterRoleBinding %s is still there", name), err)
				}
				if _, err := admin.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					return errors.Join(fmt.Errorf("ClusterRole %s is still there", name), err)
				}
			}
			return nil
		})
		for _, user := range []string{"system:kasa-flannel", "system:kasa-local-path"} {
			for _, ra := range []authorizationv1.ResourceAttributes{
				{Verb: "patch", Resource: "nodes", Name: "node-b"},
				{Verb: "delete", Resource: "persistentvolumes"},
			} {
				if allowed(ctx, t, admin, user, nil, ra) {
					t.Errorf("%s may still %s %s", user, ra.Verb, ra.Resource)
				}
			}
		}
	})

	tok, caPEM := serverTokenAndCA(t, s)
	// A joins as this kasa's agents do; B as an earlier kasa's agent, which
	// asks for the shared certificates too.
	reqA := joinRequest(t, "node-a", false)
	keysA := nodeKeys(t, &reqA)
	reqB := joinRequest(t, "node-b", false)
	keysB := legacyKeys(t, &reqB)
	respA, err := joinclient.Join(ctx, s.URL(), caPEM, tok, reqA)
	if err != nil {
		t.Fatalf("join of node-a: %v", err)
	}
	respB, err := joinclient.Join(ctx, s.URL(), caPEM, tok, reqB)
	if err != nil {
		t.Fatalf("join of node-b with an earlier agent's keys: %v", err)
	}
	for _, name := range earlierShared {
		if _, ok := respA.Certificates[name]; ok {
			t.Errorf("node-a got a %s certificate it did not ask for", name)
		}
		if who := subject(t, respB.Certificates[name]); who != "system:node:node-b [system:nodes]" {
			t.Errorf("node-b's %s certificate is for %s, want the node itself", name, who)
		}
	}
	nodeA := nodeClient(t, s, caPEM, respA.Certificates["client-kubelet"], keysA["client-kubelet"])
	nodeB := nodeClient(t, s, caPEM, respB.Certificates["client-kubelet"], keysB["client-kubelet"])
	flannelB := nodeClient(t, s, caPEM, respB.Certificates["client-flannel"], keysB["client-flannel"])
	localPathB := nodeClient(t, s, caPEM, respB.Certificates["client-local-path"], keysB["client-local-path"])

	// Each kubelet registers its Node.
	for name, c := range map[string]kubernetes.Interface{"node-a": nodeA, "node-b": nodeB} {
		if _, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: name, Labels: map[string]string{"kubernetes.io/hostname": name},
		}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s registering itself: %v", name, err)
		}
	}

	t.Run("renewal with an earlier agent's keys", func(t *testing.T) {
		renewal := joinRequest(t, "node-b", false)
		renewal.Password = reqB.Password
		legacyKeys(t, &renewal)
		resp, err := joinclient.Renew(ctx, s.URL(), caPEM, certificate(t, respB.Certificates["client-kubelet"], keysB["client-kubelet"]), renewal)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range join.NodeCerts("node-b", nil) {
			if resp.Certificates[join.CertName(l)] == "" {
				t.Errorf("no %s certificate", join.CertName(l))
			}
		}
		for _, name := range earlierShared {
			if who := subject(t, resp.Certificates[name]); who != "system:node:node-b [system:nodes]" {
				t.Errorf("renewed %s certificate is for %s, want the node itself", name, who)
			}
		}
	})

	// flannel's writes: an annotation on the Node, through the status
	// subresource (flannel's lease) and the Node itself.
	annotate := func(c kubernetes.Interface, node string, sub ...string) error {
		patch := []byte(`{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-type":"vxlan"}}}`)
		_, err := c.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, sub...)
		return err
	}
	t.Run("nodes", func(t *testing.T) {
		eventually(t, 30*time.Second, func() error { // rbac.yaml applied
			_, err := nodeA.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		})
		for who, c := range map[string]kubernetes.Interface{"node-a": nodeA, "node-b's flannel certificate": flannelB} {
			self, other := "node-a", "node-b"
			if who != "node-a" {
				self, other = other, self
			}
			if _, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
				t.Errorf("%s listing the Nodes: %v", who, err)
			}
			for _, sub := range [][]string{nil, {"status"}} {
				if err := annotate(c, self, sub...); err != nil {
					t.Errorf("%s annotating its own Node %v: %v", who, sub, err)
				}
				if err := annotate(c, other, sub...); !apierrors.IsForbidden(err) {
					t.Errorf("%s annotating %s %v: %v, want 403", who, other, sub, err)
				}
			}
		}
	})

	t.Run("volumes", func(t *testing.T) {
		// rbac.yaml is applied after the server is ready: wait until its
		// grant and policy are in force (dry runs go through both).
		eventually(t, 30*time.Second, func() error {
			dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
			if _, err := nodeA.CoreV1().PersistentVolumes().Create(ctx, localVolume("wait", "node-a"), dryRun); err != nil {
				return fmt.Errorf("a volume pinned to node-a, as node-a (dry run): %w", err)
			}
			_, err := nodeA.CoreV1().PersistentVolumes().Create(ctx, localVolume("wait", "node-b"), dryRun)
			if err == nil {
				return errors.New("a volume pinned to node-b, as node-a (dry run): accepted")
			}
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may only create") {
				return fmt.Errorf("a volume pinned to node-b, as node-a (dry run): %w", err)
			}
			return nil
		})

		pvs := nodeA.CoreV1().PersistentVolumes()
		if _, err := pvs.Create(ctx, localVolume("pv-a", "node-a"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("node-a making a volume pinned to itself: %v", err)
		}
		refused := map[string]*corev1.PersistentVolume{
			"pinned to node-b": localVolume("pv-x1", "node-b"),
			"without node affinity": func() *corev1.PersistentVolume {
				pv := localVolume("pv-x2", "node-a")
				pv.Spec.NodeAffinity = nil
				return pv
			}(),
			"for node-a or node-b": func() *corev1.PersistentVolume {
				pv := localVolume("pv-x3", "node-a")
				pv.Spec.NodeAffinity.Required.NodeSelectorTerms = append(pv.Spec.NodeAffinity.Required.NodeSelectorTerms,
					localVolume("", "node-b").Spec.NodeAffinity.Required.NodeSelectorTerms...)
				return pv
			}(),
			"in node-a's and node-b's values": func() *corev1.PersistentVolume {
				pv := localVolume("pv-x4", "node-a")
				pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values = []string{"node-a", "node-b"}
				return pv
			}(),
			"not made by local-path": func() *corev1.PersistentVolume {
				pv := localVolume("pv-x5", "node-a")
				pv.Annotations = nil
				return pv
			}(),
			"outside the host path rules": func() *corev1.PersistentVolume {
				pv := localVolume("pv-x6", "node-a")
				pv.Spec.HostPath.Path = "relative/dir"
				return pv
			}(),
		}
		for what, pv := range refused {
			_, err := pvs.Create(ctx, pv, metav1.CreateOptions{})
			if !apierrors.IsForbidden(err) || (strings.HasPrefix(what, "pinned") && !strings.Contains(err.Error(), "node node-a may only create, change or delete the local-path volumes pinned to itself")) {
				t.Errorf("node-a making a volume %s: %v, want 403 from the policy", what, err)
			}
		}

		// node-b's volume, made by node-b's provisioner (with the earlier
		// agent's certificate).
		if _, err := localPathB.CoreV1().PersistentVolumes().Create(ctx, localVolume("pv-b", "node-b"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("node-b making a volume pinned to itself with its local-path certificate: %v", err)
		}
		if err := pvs.Delete(ctx, "pv-b", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("node-a deleting node-b's volume: %v, want 403", err)
		}
		patch := []byte(`{"metadata":{"finalizers":["external-provisioner.volume.kubernetes.io/finalizer"]}}`)
		if _, err := pvs.Patch(ctx, "pv-b", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("node-a patching node-b's volume: %v, want 403", err)
		}
		if _, err := admin.CoreV1().PersistentVolumes().Get(ctx, "pv-b", metav1.GetOptions{}); err != nil {
			t.Errorf("node-b's volume after node-a's tries: %v", err)
		}
		// A volume an administrator made by hand on node-a is not the
		// node's either.
		manual := localVolume("pv-manual", "node-a")
		manual.Annotations = nil
		if _, err := admin.CoreV1().PersistentVolumes().Create(ctx, manual, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := pvs.Delete(ctx, "pv-manual", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("node-a deleting a volume it did not make: %v, want 403", err)
		}

		if _, err := pvs.Patch(ctx, "pv-a", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Errorf("node-a patching its own volume's finalizers: %v", err)
		}
		if _, err := pvs.Patch(ctx, "pv-a", types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{}); err != nil {
			t.Errorf("node-a removing its own volume's finalizers: %v", err)
		}
		if err := pvs.Delete(ctx, "pv-a", metav1.DeleteOptions{}); err != nil {
			t.Errorf("node-a deleting its own volume: %v", err)
		}
		if err := nodeB.CoreV1().PersistentVolumes().Delete(ctx, "pv-b", metav1.DeleteOptions{}); err != nil {
			t.Errorf("node-b deleting its own volume: %v", err)
		}
		// What the provisioner reads.
		for _, ra := range []authorizationv1.ResourceAttributes{
			{Verb: "watch", Resource: "persistentvolumeclaims"},
			{Verb: "list", Group: "storage.k8s.io", Resource: "storageclasses"},
			{Verb: "create", Resource: "events", Namespace: "default"},
		} {
			if !allowed(ctx, t, admin, "system:node:node-a", []string{"system:nodes"}, ra) {
				t.Errorf("node-a may not %s %s", ra.Verb, ra.Resource)
			}
		}
	})
}

// localVolume is a volume as the local-path provisioner of node makes it.
func localVolume(name, node string) *corev1.PersistentVolume {
	dirType := corev1.HostPathDirectoryOrCreate
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": "kasa.io/local-path"}},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")},
			StorageClassName:              "local-path",
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/kasa/storage/" + name + "_default_data", Type: &dirType},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
			}}}},
		},
	}
}

// earlierShared are the certificates of the shared identities that agents
// of an earlier kasa ask for, besides those of join.NodeCerts.
var earlierShared = []string{"client-flannel", "client-local-path"}

// legacyKeys makes the keys an agent of an earlier kasa sends: those of
// join.NodeCerts and of the shared identities.
func legacyKeys(t *testing.T, req *join.Request) map[string]*ecdsa.PrivateKey {
	t.Helper()
	return nodeKeys(t, req, earlierShared...)
}

// certificate pairs a certificate in PEM with its key.
func certificate(t *testing.T, crtPEM string, key *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(crtPEM))
	if block == nil {
		t.Fatal("no certificate")
	}
	return tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: key}
}

// subject is a certificate's common name and organizations.
func subject(t *testing.T, crtPEM string) string {
	t.Helper()
	block, _ := pem.Decode([]byte(crtPEM))
	if block == nil {
		return "nothing"
	}
	crt, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s %v", crt.Subject.CommonName, crt.Subject.Organization)
}

// nodeClient reaches the server with a node's client certificate.
func nodeClient(t *testing.T, s *harness.Server, caPEM []byte, crtPEM string, key *ecdsa.PrivateKey) kubernetes.Interface {
	t.Helper()
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(&rest.Config{Host: s.URL(), TLSClientConfig: rest.TLSClientConfig{
		CAData: caPEM, CertData: []byte(crtPEM), KeyData: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// allowed asks the server whether user in groups may do ra.
func allowed(ctx context.Context, t *testing.T, c kubernetes.Interface, user string, groups []string, ra authorizationv1.ResourceAttributes) bool {
	t.Helper()
	r, err := c.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user, Groups: groups, ResourceAttributes: &ra,
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}
