// Package joinserver is the server's side of the join protocol (pkg/join):
// the handler of /cacerts and /v1-kasa/join on the API port, the secrets it
// checks joins against (the token hashes, the bootstrap tokens and the
// nodes' password hashes, kept in the cluster by Store), and the limit on
// failed checks per source address.
package joinserver

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/pki"
)

// reservedNames cannot be node names, nor reservedIPs a remote node's
// addresses: they are the API server's, and a kubelet's serving certificate
// should not name them even though another CA signs it.
var (
	reservedNames = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}
	reservedIPs   = []string{"127.0.0.1", "::1"}
)

// Handler serves /cacerts and /v1-kasa/join on the API port.
type Handler struct {
	// ServerCA is the CA that tokens pin: /cacerts serves it, and joining
	// nodes verify the API server with it.
	ServerCA *pki.CA
	// ClientCA signs the nodes' client certificates and checks the
	// certificates renewals come with.
	ClientCA *pki.CA
	// KubeletCA signs the kubelets' serving certificates.
	KubeletCA *pki.CA
	// Reserved are more of the API server's names and IP addresses (its
	// cluster domain's name, service IP, --tls-san) that no node's name or
	// address may be.
	Reserved []string
	Store    *Store
	Cluster  join.Cluster
	Log      *slog.Logger
	// Now is the clock for certificates; time.Now when nil.
	Now func() time.Time

	// caMu guards the CAs, which SetCAs replaces after a rotation.
	caMu sync.RWMutex

	// checks bounds the password hashing that unauthenticated requests
	// can cause.
	checks chan struct{}
	// limit counts failed checks per source address; a source over its
	// limit is refused before its request takes one of the checks.
	limit *limiter
}

// Wrap serves the join paths and passes every other request to next.
func (h *Handler) Wrap(next http.Handler) http.Handler {
	h.checks = make(chan struct{}, 2)
	h.limit = newLimiter(nil)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case join.CACertsPath:
			h.serveCACerts(w, r)
		case join.JoinPath:
			h.serveJoin(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// SetCAs replaces the CAs the handler serves and signs with: the server's
// certificate check calls it after kasa certificate rotate-ca.
func (h *Handler) SetCAs(server, client, kubelet *pki.CA) {
	h.caMu.Lock()
	defer h.caMu.Unlock()
	h.ServerCA, h.ClientCA, h.KubeletCA = server, client, kubelet
}

// cas returns the current CAs.
func (h *Handler) cas() (server, client, kubelet *pki.CA) {
	h.caMu.RLock()
	defer h.caMu.RUnlock()
	return h.ServerCA, h.ClientCA, h.KubeletCA
}

func (h *Handler) serveCACerts(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		refuse(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	serverCA, _, _ := h.cas()
	_, _ = w.Write(serverCA.CertPEM)
}

func (h *Handler) serveJoin(w http.ResponseWriter, r *http.Request) {
	src := sourceOf(r.RemoteAddr)
	log := h.Log.With("remote", remoteIP(r))
	if r.Method != http.MethodPost {
		refuse(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	user, secret, ok := r.BasicAuth()
	renewal := !ok && r.TLS != nil && len(r.TLS.PeerCertificates) > 0
	if !renewal && (!ok || secret == "") {
		refuse(w, http.StatusUnauthorized, "no token given")
		return
	}
	var req join.Request
	if err := json.NewDecoder(io.LimitReader(r.Body, join.MaxBody)).Decode(&req); err != nil {
		refuse(w, http.StatusBadRequest, "malformed join request: "+err.Error())
		return
	}
	log = log.With("node", req.NodeName, "role", req.Role)
	if err := h.checkRequest(&req); err != nil {
		log.Warn("join refused", "reason", err)
		refuse(w, http.StatusBadRequest, err.Error())
		return
	}
	// Every check takes a try of its source before it waits for its turn,
	// and keeps it when a secret is not accepted.
	allowed, wait, first := h.limit.take(src)
	if !allowed {
		if first {
			log.Warn("join refused", "reason", "too many failed attempts from this address; refusing its joins for now")
		}
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		refuse(w, http.StatusTooManyRequests, fmt.Sprintf("too many failed joins from %s; try again in %d s", remoteIP(r), secs))
		return
	}
	failed := false
	defer func() {
		if !failed {
			h.limit.refund(src)
		}
	}()
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	select {
	case h.checks <- struct{}{}:
	case <-ctx.Done():
		refuse(w, http.StatusServiceUnavailable, "the server is busy; try again")
		return
	}
	var role string
	var err error
	if renewal {
		// A joined node renews its certificates with its kubelet's client
		// certificate, for its own name only; its password is checked
		// below as for any join.
		if h.nodeCertificate(r.TLS.PeerCertificates, req.NodeName) {
			role = join.RoleAgent
		}
	} else {
		role, err = h.Store.Authenticate(ctx, user, secret)
	}
	<-h.checks
	if err != nil {
		log.Error("join: cannot check the token", "err", err)
		refuse(w, http.StatusServiceUnavailable, "the server cannot check tokens right now; try again")
		return
	}
	failed = role == ""
	switch {
	case role == "" && renewal:
		log.Warn("join refused", "reason", "client certificate not accepted")
		refuse(w, http.StatusUnauthorized, "the client certificate was not accepted: it is not this node's, or not from this cluster's CA; join again with a token")
		return
	case role == "":
		log.Warn("join refused", "reason", "token not accepted")
		refuse(w, http.StatusUnauthorized, "the token was not accepted: it is wrong, was rotated, or has expired")
		return
	case req.Role == join.RoleServer && renewal:
		refuse(w, http.StatusForbidden, "a node's certificate can only renew an agent's certificates")
		return
	case req.Role == join.RoleServer && role != join.RoleServer:
		log.Warn("join refused", "reason", "agent token used to join a server")
		refuse(w, http.StatusForbidden, "this token can only join agents: a server joins with the server token")
		return
	case req.Role == join.RoleServer:
		log.Warn("join refused", "reason", "server join")
		refuse(w, http.StatusNotImplemented, "this kasa version joins agents only; more servers need a later version")
		return
	}
	resp, err := h.sign(&req)
	if err != nil {
		log.Warn("join refused", "reason", err)
		refuse(w, http.StatusBadRequest, err.Error())
		return
	}
	// A renewal needs the node as it is: its Node still there and its
	// password the one kept, so that deleting a Node keeps its machine out
	// until it joins again with a token. A join claims the name.
	if renewal {
		err = h.Store.CheckNode(ctx, req.NodeName, req.Password)
	} else {
		err = h.Store.ClaimNodeName(ctx, req.NodeName, req.Password)
	}
	if err != nil {
		if errors.Is(err, join.ErrNodeDeleted) {
			// The certificate was the node's own: not a guess, so not a
			// failure that counts against the source.
			log.Warn("join refused", "reason", "renewal of a deleted node")
			refuse(w, http.StatusGone, fmt.Sprintf("node %s was deleted from the cluster; join it again with a token (--token)", req.NodeName))
			return
		}
		if errors.Is(err, ErrNameTaken) {
			failed = true // a wrong node password counts as a failure too
			log.Warn("join refused", "reason", "node name taken")
			refuse(w, http.StatusConflict, err.Error())
			return
		}
		log.Error("join: cannot check the node password", "err", err)
		refuse(w, http.StatusServiceUnavailable, "the server cannot check the node's password right now; try again")
		return
	}
	if resp.Servers, err = join.Servers(ctx, h.Store.Client); err != nil {
		log.Error("join: cannot list the servers", "err", err)
		refuse(w, http.StatusServiceUnavailable, "the server cannot list the API servers right now; try again")
		return
	}
	resp.Cluster = h.Cluster
	log.Info("node joined")
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// nodeCertificate reports whether chain starts with a current client
// certificate of node, signed by the client CA.
func (h *Handler) nodeCertificate(chain []*x509.Certificate, node string) bool {
	leaf := chain[0]
	if leaf.Subject.CommonName != "system:node:"+node || !slices.Contains(leaf.Subject.Organization, "system:nodes") {
		return false
	}
	// Every certificate of the client CA's file: during a rotation a node
	// renews with a certificate of the CA being replaced.
	_, clientCA, _ := h.cas()
	roots := x509.NewCertPool()
	for _, c := range clientCA.Certs() {
		roots.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if h.Now != nil {
		opts.CurrentTime = h.Now()
	}
	_, err := leaf.Verify(opts)
	return err == nil
}

// checkRequest validates what the node says about itself.
func (h *Handler) checkRequest(req *join.Request) error {
	if req.Role != join.RoleAgent && req.Role != join.RoleServer {
		return fmt.Errorf("unknown role %q", req.Role)
	}
	if errs := validation.IsDNS1123Subdomain(req.NodeName); len(errs) > 0 {
		return fmt.Errorf("invalid node name %q: %s", req.NodeName, errs[0])
	}
	if slices.Contains(reservedNames, req.NodeName) || slices.Contains(h.Reserved, req.NodeName) {
		return fmt.Errorf("node name %q is the API server's: pick another with --node-name", req.NodeName)
	}
	if len(req.Password) < 16 {
		return errors.New("the node password is missing or too short")
	}
	for _, a := range req.Addresses {
		ip := net.ParseIP(a)
		if ip == nil {
			return fmt.Errorf("invalid node address %q", a)
		}
		if slices.Contains(reservedIPs, ip.String()) || slices.Contains(h.Reserved, ip.String()) {
			return fmt.Errorf("node address %s is the API server's, so a node's certificate cannot name it: give the node's own address with --node-ip", a)
		}
	}
	return nil
}

// sign issues the node's certificates for the public keys it sent.
func (h *Handler) sign(req *join.Request) (*join.Response, error) {
	var ips []net.IP
	for _, a := range req.Addresses {
		ips = append(ips, net.ParseIP(a))
	}
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	resp := &join.Response{Certificates: map[string]string{}}
	_, clientCA, kubeletCA := h.cas()
	for _, l := range requestedCerts(req.NodeName, ips, req.Keys) {
		name := join.CertName(l)
		keyPEM, ok := req.Keys[name]
		if !ok {
			return nil, fmt.Errorf("no public key for %s", name)
		}
		block, _ := pem.Decode([]byte(keyPEM))
		if block == nil {
			return nil, fmt.Errorf("public key for %s: no PEM block", name)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key for %s: %w", name, err)
		}
		ca := clientCA
		if l.Server {
			ca = kubeletCA
		}
		crt, err := ca.Sign(pub, l, now)
		if err != nil {
			return nil, err
		}
		resp.Certificates[name] = string(crt)
	}
	resp.ClientCA, resp.KubeletCA = string(clientCA.CertPEM), string(kubeletCA.CertPEM)
	return resp, nil
}

func refuse(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(join.Refusal{Message: msg})
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
