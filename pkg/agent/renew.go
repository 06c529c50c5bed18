package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/config"
	"github.com/kasa-io/kasa/pkg/datadir"
	"github.com/kasa-io/kasa/pkg/join/joinclient"
	"github.com/kasa-io/kasa/pkg/pki"
)

// ExpiryWarnings logs, and records as a Warning event on the node, each
// certificate of a listing that is inside its warning window, once per
// certificate (by file and expiry).
type ExpiryWarnings struct {
	Node string
	// Client records the events; nil logs only.
	Client kubernetes.Interface
	Log    *slog.Logger
	warned map[string]bool
}

// Check warns about the certificates of infos that expire soon.
func (w *ExpiryWarnings) Check(ctx context.Context, infos []pki.Info, now time.Time) {
	if w.warned == nil {
		w.warned = map[string]bool{}
	}
	for _, in := range infos {
		key := in.File + "@" + in.NotAfter.String()
		if (in.Status != pki.StatusWarning && in.Status != pki.StatusExpired) || w.warned[key] {
			continue
		}
		w.warned[key] = true
		what := "certificate"
		if in.CA {
			what = "CA certificate"
		}
		msg := fmt.Sprintf("%s %s (%s) expires on %s", what, in.File, in.Subject, in.NotAfter.UTC().Format(time.RFC3339))
		if in.CA {
			msg += "; replace it with kasa certificate rotate-ca"
		} else {
			msg += "; kasa renews it on its own, and kasa certificate rotate renews it now"
		}
		w.Log.Warn(msg)
		if w.Client == nil || w.Node == "" {
			continue
		}
		if err := NodeEvent(ctx, w.Client, w.Node, "CertificateExpirationWarning", msg, now); err != nil {
			w.Log.Warn("could not record the certificate's warning as an event", "err", err)
		}
	}
}

// NodeEvent records a Warning event about node.
func NodeEvent(ctx context.Context, c kubernetes.Interface, node, reason, msg string, now time.Time) error {
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: node + ".", Namespace: metav1.NamespaceDefault},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: node, UID: types.UID(node)},
		Reason:         reason,
		Message:        msg,
		Type:           corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "kasa", Host: node},
		FirstTimestamp: metav1.NewTime(now),
		LastTimestamp:  metav1.NewTime(now),
		Count:          1,
	}
	_, err := c.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{})
	return err
}

// certRenewal checks the node's certificates as often as their lifetime
// asks (daily for a year's) and renews them through the servers, with the
// node's own client certificate, when they are due; the kubelet,
// kube-proxy and flannel read the new files without a restart.
func certRenewal(cfg *config.AgentNode, np datadir.Agent, lbURL string, log *slog.Logger) component.Component {
	log = log.With("component", "certificates")
	renewCfg := *cfg
	renewCfg.Server = lbURL // any server that answers
	return component.Func{ComponentName: "certificates", RunFunc: func(ctx context.Context, ready func()) error {
		ready()
		warnings := &ExpiryWarnings{Node: cfg.NodeName, Log: log}
		if rc, err := clientcmd.BuildConfigFromFlags("", np.Kubeconfig("kubelet")); err == nil {
			warnings.Client, _ = kubernetes.NewForConfig(rc)
		}
		every := time.Hour
		for {
			if first, err := checkNodeCerts(np, cfg.NodeName); err == nil {
				// A rotation of the cluster's CAs is seen within 5 minutes.
				every = min(pki.CheckEvery(pki.Lifetime(first)), caCheckEvery)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(every):
			}
			renewNodeCerts(ctx, &renewCfg, np, log, warnings)
		}
	}}
}

// caCheckEvery is how often an agent asks whether the cluster's CAs
// changed (kasa certificate rotate-ca on the server).
const caCheckEvery = 5 * time.Minute

// renewNodeCerts renews the node's certificates if they are due or the
// cluster's CAs changed, and warns about the ones that expire soon.
func renewNodeCerts(ctx context.Context, cfg *config.AgentNode, np datadir.Agent, log *slog.Logger, w *ExpiryWarnings) {
	now := time.Now()
	first, err := checkNodeCerts(np, cfg.NodeName)
	if err != nil {
		log.Error("the node's certificates are not usable", "err", err)
		return
	}
	changed, err := caChanged(ctx, cfg.Server, np)
	if err != nil {
		log.Warn("could not ask a server for the cluster's CA; the next check asks again", "err", err)
	}
	if changed {
		log.Info("the cluster's CAs changed (kasa certificate rotate-ca): taking the new ones and new certificates")
	}
	if changed || pki.RenewDue(first, now) {
		if _, err := requestCerts(ctx, cfg, np, log, nil); err != nil {
			log.Error("renewing the node's certificates failed; the next check tries again", "expires", first.NotAfter.Format(time.DateTime), "err", err)
		}
	}
	infos, err := pki.Inventory(now, np.TLS(""))
	if err != nil {
		log.Error("listing the node's certificates failed", "err", err)
		return
	}
	w.Check(ctx, infos, now)
}

// caChanged reports whether the server CA that a server shows, over TLS
// verified by the node's, is another than the node's: a rotation.
func caChanged(ctx context.Context, server string, np datadir.Agent) (bool, error) {
	local, err := os.ReadFile(np.TLS("ca.crt"))
	if err != nil {
		return false, err
	}
	got, err := joinclient.FetchCAVerified(ctx, server, local)
	if err != nil {
		return false, err
	}
	return !bytes.Equal(got, local), nil
}

// RenewNow renews the certificates of the node that joined from dataDir
// (kasa certificate rotate on an agent), through the first server of its
// join state that answers, with the node's own client certificate; the
// running agent's parts read the new files.
func RenewNow(ctx context.Context, dataDir string, log *slog.Logger) error {
	np := datadir.New(dataDir).Agent()
	b, err := os.ReadFile(np.JoinState())
	if err != nil {
		return fmt.Errorf("this machine has not joined a cluster as an agent (%w)", err)
	}
	var state State
	if err := json.Unmarshal(b, &state); err != nil {
		return fmt.Errorf("%s: %w", np.JoinState(), err)
	}
	serving, err := pki.ReadCert(np.TLS("serving-kubelet.crt"))
	if err != nil {
		return err
	}
	cfg := &config.AgentNode{DataDir: dataDir, NodeName: state.NodeName}
	for _, ip := range serving.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			cfg.NodeIPs = append(cfg.NodeIPs, a.Unmap())
		}
	}
	var errs []error
	for _, s := range state.Servers {
		cfg.Server = "https://" + s
		if _, err := requestCerts(ctx, cfg, np, log, nil); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
			continue
		}
		return nil
	}
	return fmt.Errorf("no server renewed the node's certificates: %w", errors.Join(errs...))
}
