package server

import (
	"os"

	"github.com/kasa-io/kasa/pkg/fileutil"
)

// Audit log rotation: a file is rotated at auditMaxSizeMB, rotated files
// are compressed and kept auditMaxBackups deep and auditMaxAgeDays long
// (the CIS Kubernetes Benchmark's 100 MB, 10 and 30 days).
const (
	auditMaxSizeMB  = "100"
	auditMaxBackups = "10"
	auditMaxAgeDays = "30"
)

// auditPolicy records who did what to which object, and when, for every
// request but the probes, the leases renewed every few seconds and events;
// never a request's or a response's body, so no Secret's data reaches the
// log.
const auditPolicy = `# Written by kasa at every start; edits are lost. Give a policy of your
# own with --kube-apiserver-arg=audit-policy-file=<file>.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  # Health probes: no record.
  - level: None
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version"]
  # Leader election and node heartbeats renew leases every few seconds.
  - level: None
    verbs: ["get", "list", "watch", "update"]
    resources:
      - group: coordination.k8s.io
        resources: ["leases"]
  # Events are a record already.
  - level: None
    resources:
      - group: ""
        resources: ["events"]
      - group: events.k8s.io
        resources: ["events"]
  # Secrets, config maps and tokens: who, what and when, never the data.
  # First, so that a rule added below for more detail cannot record them.
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps", "serviceaccounts/token"]
      - group: authentication.k8s.io
        resources: ["tokenreviews"]
  # Everything else, metadata too.
  - level: Metadata
`

// podSecurityConfig enforces the baseline Pod Security Standard in every
// namespace whose labels do not say otherwise, and warns about (and
// audits) what the restricted one would refuse. kube-system is exempt: it
// is where node-level parts that need the host (a CNI with
// --flannel-backend=none, storage or monitoring agents) go, and only
// cluster admins may write there.
const podSecurityConfig = `# Written by kasa at every start; edits are lost. Give a configuration of
# your own with --kube-apiserver-arg=admission-control-config-file=<file>,
# or label a namespace (pod-security.kubernetes.io/enforce=privileged).
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: PodSecurity
    configuration:
      apiVersion: pod-security.admission.config.k8s.io/v1
      kind: PodSecurityConfiguration
      defaults:
        enforce: baseline
        enforce-version: latest
        audit: restricted
        audit-version: latest
        warn: restricted
        warn-version: latest
      exemptions:
        usernames: []
        runtimeClasses: []
        namespaces: ["kube-system"]
`

// writeSecurityFiles writes the audit policy and the admission
// configuration that the API server's flags name, and makes the audit
// log's folder. The files hold no secret but say what is and is not
// recorded, so they are the server's alone (0600, as the rest of its data
// dir).
func writeSecurityFiles(p Paths) error {
	if err := fileutil.WriteFile(p.AuditPolicy(), []byte(auditPolicy), 0o600); err != nil {
		return err
	}
	if err := fileutil.WriteFile(p.AdmissionConfig(), []byte(podSecurityConfig), 0o600); err != nil {
		return err
	}
	return os.MkdirAll(p.Logs(), 0o700)
}
