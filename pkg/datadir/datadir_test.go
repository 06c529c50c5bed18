package datadir

import "testing"

// TestLayout pins every path: they are an on-disk contract with the data
// dirs and run dirs of running clusters, and with install.sh, kasa up and
// kasa killall. A change here breaks existing machines.
func TestLayout(t *testing.T) {
	l := New("/var/lib/kasa")
	s, a, r := l.Server(), l.Agent(), MachineRun()
	for _, tt := range []struct{ got, want string }{
		{l.Root, "/var/lib/kasa"},
		{l.Bundles(), "/var/lib/kasa/data"},
		{l.Bundle("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), "/var/lib/kasa/data/0123456789abcdef"},
		{l.Storage(), "/var/lib/kasa/storage"},

		{s.Root, "/var/lib/kasa/server"},
		{s.TLS("ca.crt"), "/var/lib/kasa/server/tls/ca.crt"},
		{s.TLS(""), "/var/lib/kasa/server/tls"},
		{s.Cred("admin.kubeconfig"), "/var/lib/kasa/server/cred/admin.kubeconfig"},
		{s.DB(), "/var/lib/kasa/server/db"},
		{s.SQLite(), "/var/lib/kasa/server/db/state.db"},
		{s.Snapshots(), "/var/lib/kasa/server/db/snapshots"},
		{s.Restored(), "/var/lib/kasa/server/db/restored.json"},
		{s.ClusterSettings(), "/var/lib/kasa/server/etc/cluster.json"},
		{s.Token(), "/var/lib/kasa/server/token"},
		{s.AgentToken(), "/var/lib/kasa/server/agent-token"},
		{s.Lock(), "/var/lib/kasa/server/kasa.lock"},
		{s.Manifests(), "/var/lib/kasa/server/manifests"},
		{s.Helm(), "/var/lib/kasa/server/helm"},
		{s.AuditPolicy(), "/var/lib/kasa/server/etc/audit-policy.yaml"},
		{s.AdmissionConfig(), "/var/lib/kasa/server/etc/admission.yaml"},
		{s.EncryptionConfig(), "/var/lib/kasa/server/cred/encryption-config.yaml"},
		{s.Logs(), "/var/lib/kasa/server/logs"},
		{s.AuditLog(), "/var/lib/kasa/server/logs/audit.log"},

		{a.Root, "/var/lib/kasa/agent"},
		{a.TLS("client-kubelet.crt"), "/var/lib/kasa/agent/tls/client-kubelet.crt"},
		{a.Kubeconfig("kubelet"), "/var/lib/kasa/agent/kubelet.kubeconfig"},
		{a.Kubeconfig("kube-proxy"), "/var/lib/kasa/agent/kube-proxy.kubeconfig"},
		{a.Lock(), "/var/lib/kasa/agent/kasa-agent.lock"},
		{a.NodePassword(), "/var/lib/kasa/agent/node-password"},
		{a.JoinState(), "/var/lib/kasa/agent/etc/join.json"},
		{a.CrictlConfig(), "/var/lib/kasa/agent/etc/crictl.yaml"},
		{a.KubeletConfig(), "/var/lib/kasa/agent/etc/kubelet.yaml"},
		{a.ContainerdConfig(), "/var/lib/kasa/agent/etc/containerd"},
		{a.RegistryHosts(), "/var/lib/kasa/agent/etc/containerd/certs.d"},
		{a.CNIConfig(), "/var/lib/kasa/agent/etc/cni/net.d"},
		{a.CNINetworks(), "/var/lib/kasa/agent/cni/networks"},
		{a.Containerd(), "/var/lib/kasa/agent/containerd"},
		{a.Kubelet(), "/var/lib/kasa/agent/kubelet"},
		{a.Images(), "/var/lib/kasa/agent/images"},
		{a.SysctlsBefore(), "/var/lib/kasa/agent/sysctl-before.json"},

		{r.Root, "/run/kasa"},
		{r.NodeLock(), "/run/kasa/node.lock"},
		{r.Containerd(), "/run/kasa/containerd"},
		{r.ContainerdSocket(), "/run/kasa/containerd/containerd.sock"},
		{r.Flannel(), "/run/kasa/flannel"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
}

// TestRelativeRoot: a relative data dir gives relative paths, cleaned, as
// filepath.Join does; the commands make the data dir absolute first.
func TestRelativeRoot(t *testing.T) {
	if got := New("./d/").Agent().JoinState(); got != "d/agent/etc/join.json" {
		t.Errorf("got %s", got)
	}
	if got := New("d").Bundle("abc"); got != "d/data/abc" {
		t.Errorf("a short hash: got %s", got)
	}
}
