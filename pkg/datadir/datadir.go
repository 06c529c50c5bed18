// Package datadir is kasa's layout on disk: every file and folder kasa
// keeps under its data dir (--data-dir, /var/lib/kasa by default) and under
// the machine's run dir (/run/kasa). Every other package asks it for a path
// rather than joining names of its own.
//
//	<data-dir>/
//	  server/     the control plane's state (Server)
//	  agent/      the node's state (Agent)
//	  data/<id>/  the bundle of one kasa binary, unpacked (Layout.Bundle)
//	  storage/    local-path volumes, unless --default-local-storage-path
//	/run/kasa/    the node's sockets and volatile state (Run)
//
// The layout is an on-disk contract: a kasa finds what an earlier one left,
// and install.sh, kasa killall and kasa up name some of these paths too, so
// no path may change (datadir_test.go pins every one). Inside a folder it
// hands to a program (kine's db, containerd's root, the kubelet's root) that
// program lays out its own files.
package datadir

import "path/filepath"

// RunDir is the machine's run dir: one node per machine uses it, and kasa
// killall removes it.
const RunDir = "/run/kasa"

// Layout is the layout of one data dir.
type Layout struct {
	Root string // the data dir
}

// New returns the layout of the data dir root.
func New(root string) Layout { return Layout{Root: root} }

func (l Layout) join(elem ...string) string { return join(l.Root, elem) }

// Server is the control plane's folder.
func (l Layout) Server() Server { return Server{Root: l.join("server")} }

// Agent is the node's folder, on servers and agents alike.
func (l Layout) Agent() Agent { return Agent{Root: l.join("agent")} }

// Bundles is the folder of the unpacked bundles, whose programs (containerd,
// the shims) kasa killall stops.
func (l Layout) Bundles() string { return l.join("data") }

// Bundle is where the bundle whose sha256 is hash (in hex) is unpacked: its
// first 16 digits name the folder, so that each kasa binary has its own.
func (l Layout) Bundle(hash string) string { return l.join("data", hash[:min(16, len(hash))]) }

// Storage is the default folder of the local-path volumes.
func (l Layout) Storage() string { return l.join("storage") }

// Server is the layout of <data-dir>/server.
type Server struct {
	Root string // <data-dir>/server
}

func (s Server) join(elem ...string) string { return join(s.Root, elem) }

// TLS is a file of the folder of certificates and keys (TLS("") the folder).
func (s Server) TLS(name string) string { return s.join("tls", name) }

// Cred is a file of the folder of the components' kubeconfigs.
func (s Server) Cred(name string) string { return s.join("cred", name) }

// DB is kine's folder: its socket and, by default, its SQLite database.
func (s Server) DB() string { return s.join("db") }

// SQLite is kine's SQLite database, when no --datastore-endpoint is given.
func (s Server) SQLite() string { return s.join("db", "state.db") }

// Snapshots is the default folder of the datastore's snapshots.
func (s Server) Snapshots() string { return s.join("db", "snapshots") }

// Restored records the snapshot a --cluster-reset restored, so that a
// second start with the same flags does not restore it again.
func (s Server) Restored() string { return s.join("db", "restored.json") }

// ClusterSettings are the cluster-wide settings of the last start, which a
// snapshot keeps (written at every start).
func (s Server) ClusterSettings() string { return s.join("etc", "cluster.json") }

// Token is the server token file.
func (s Server) Token() string { return s.join("token") }

// AgentToken is the agent token file, when there is an agent token.
func (s Server) AgentToken() string { return s.join("agent-token") }

// Lock is the file a running server holds locked.
func (s Server) Lock() string { return s.join("kasa.lock") }

// Manifests is the auto-deploy folder.
func (s Server) Manifests() string { return s.join("manifests") }

// Helm is the helm controller's state: its caches and repositories.
func (s Server) Helm() string { return s.join("helm") }

// AuditPolicy is the API server's audit policy, written at every start.
func (s Server) AuditPolicy() string { return s.join("etc", "audit-policy.yaml") }

// EncryptionConfig is the API server's encryption configuration: the keys
// that encrypt Secrets at rest (0600, kept; the same on every server).
func (s Server) EncryptionConfig() string { return s.join("cred", "encryption-config.yaml") }

// AdmissionConfig is the API server's admission configuration (Pod
// Security), written at every start.
func (s Server) AdmissionConfig() string { return s.join("etc", "admission.yaml") }

// Logs is the folder of the API server's audit log.
func (s Server) Logs() string { return s.join("logs") }

// AuditLog is the API server's audit log; rotated files sit beside it.
func (s Server) AuditLog() string { return s.join("logs", "audit.log") }

// Agent is the layout of <data-dir>/agent.
type Agent struct {
	Root string // <data-dir>/agent
}

func (a Agent) join(elem ...string) string { return join(a.Root, elem) }

// TLS is a file of the node's folder of certificates and keys (TLS("") the
// folder).
func (a Agent) TLS(name string) string { return a.join("tls", name) }

// Kubeconfig is the kubeconfig of one of the node's client identities
// (kubelet, kube-proxy).
func (a Agent) Kubeconfig(client string) string { return a.join(client + ".kubeconfig") }

// Lock is the file a running agent holds locked.
func (a Agent) Lock() string { return a.join("kasa-agent.lock") }

// NodePassword is the node's password, made on its first join.
func (a Agent) NodePassword() string { return a.join("node-password") }

// JoinState is what an agent keeps of its join: its name, the servers and
// the cluster's settings.
func (a Agent) JoinState() string { return a.join("etc", "join.json") }

// CrictlConfig is crictl's configuration, for kasa crictl.
func (a Agent) CrictlConfig() string { return a.join("etc", "crictl.yaml") }

// KubeletConfig is the kubelet's configuration file, written at every start.
func (a Agent) KubeletConfig() string { return a.join("etc", "kubelet.yaml") }

// ContainerdConfig is the folder of containerd's config.toml.
func (a Agent) ContainerdConfig() string { return a.join("etc", "containerd") }

// RegistryHosts is the folder of containerd's hosts.toml folders, one per
// registry.
func (a Agent) RegistryHosts() string { return a.join("etc", "containerd", "certs.d") }

// CNIConfig is the folder of the pod network's CNI configuration.
func (a Agent) CNIConfig() string { return a.join("etc", "cni", "net.d") }

// CNINetworks is the host-local plugin's folder of pod addresses.
func (a Agent) CNINetworks() string { return a.join("cni", "networks") }

// Containerd is containerd's persistent state (its root).
func (a Agent) Containerd() string { return a.join("containerd") }

// Kubelet is the kubelet's root folder.
func (a Agent) Kubelet() string { return a.join("kubelet") }

// Images is the folder of image archives that the node imports.
func (a Agent) Images() string { return a.join("images") }

// SysctlsBefore records the kernel settings as they were before kasa's
// first start, for kasa killall to restore.
func (a Agent) SysctlsBefore() string { return a.join("sysctl-before.json") }

// Run is the layout of a run dir.
type Run struct {
	Root string // RunDir
}

// MachineRun is the layout of the machine's run dir, RunDir.
func MachineRun() Run { return Run{Root: RunDir} }

func (r Run) join(elem ...string) string { return join(r.Root, elem) }

// NodeLock is the file that the machine's one node holds locked.
func (r Run) NodeLock() string { return r.join("node.lock") }

// Containerd is containerd's volatile state: its socket, its state and the
// shims' sockets.
func (r Run) Containerd() string { return r.join("containerd") }

// ContainerdSocket is containerd's CRI and API endpoint, in Containerd.
func (r Run) ContainerdSocket() string { return r.join("containerd", "containerd.sock") }

// Flannel is flannel's folder: net-conf.json and subnet.env.
func (r Run) Flannel() string { return r.join("flannel") }

// PolicyNamespaces lists the namespaces that have a NetworkPolicy, one
// per line, for the CNI plugin kasa-hold.
func (r Run) PolicyNamespaces() string { return r.join("netpol", "namespaces") }

func join(root string, elem []string) string {
	return filepath.Join(append([]string{root}, elem...)...)
}
