package server

import "path/filepath"

// Paths is the layout of <data-dir>/server.
type Paths struct {
	Root string // <data-dir>/server
}

// NewPaths returns the layout under dataDir.
func NewPaths(dataDir string) Paths { return Paths{Root: filepath.Join(dataDir, "server")} }

func (p Paths) join(elem ...string) string {
	return filepath.Join(append([]string{p.Root}, elem...)...)
}

// TLS is the folder of certificates and keys.
func (p Paths) TLS(name string) string { return p.join("tls", name) }

// Cred is the folder of the components' kubeconfigs.
func (p Paths) Cred(name string) string { return p.join("cred", name) }

// DB is kine's folder.
func (p Paths) DB() string { return p.join("db") }

// Token is the server token file.
func (p Paths) Token() string { return p.join("token") }

// AgentToken is the agent token file, when there is an agent token.
func (p Paths) AgentToken() string { return p.join("agent-token") }

// Lock is the file a running server holds locked.
func (p Paths) Lock() string { return p.join("kasa.lock") }

// Manifests is the auto-deploy folder.
func (p Paths) Manifests() string { return p.join("manifests") }

// AuditPolicy is the API server's audit policy, written at every start.
func (p Paths) AuditPolicy() string { return p.join("etc", "audit-policy.yaml") }

// AdmissionConfig is the API server's admission configuration (Pod
// Security), written at every start.
func (p Paths) AdmissionConfig() string { return p.join("etc", "admission.yaml") }

// Logs is the folder of the API server's audit log.
func (p Paths) Logs() string { return p.join("logs") }

// AuditLog is the API server's audit log; rotated files sit beside it.
func (p Paths) AuditLog() string { return p.join("logs", "audit.log") }
