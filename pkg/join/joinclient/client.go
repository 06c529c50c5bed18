// Package joinclient is the joining node's side of the join protocol
// (pkg/join): it fetches the cluster's CA and checks it against the token
// before any secret is sent, then joins, or renews a joined node's
// certificates with its own client certificate.
package joinclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/token"
)

// ErrCAMismatch is returned when the server's CA is not the one the token
// names. Nothing secret has been sent when it is returned.
var ErrCAMismatch = errors.New("the server's CA does not match the token")

// ErrUnreachable is returned when the server cannot be reached; a retry
// may succeed.
var ErrUnreachable = errors.New("cannot reach the server")

// ErrRefused is returned when the server refuses a join; its message says
// why.
var ErrRefused = errors.New("join refused")

// requestTimeout bounds each request of a join.
const requestTimeout = 30 * time.Second

// FetchCA reads the cluster CA from server (https://host:port) and checks
// it against the token's hash. With a short token, which names no hash,
// the CA is taken as found; pinned reports whether it was checked.
//
// During a rotation of the CA, /cacerts holds the new CA and the old one,
// and the token may name either: the certificates are then read again
// over TLS verified by the one the token names, so that the others too
// come from the cluster's server.
func FetchCA(ctx context.Context, server string, t token.Token) (caPEM []byte, pinned bool, err error) {
	// The CA is what this request fetches, so nothing can verify the
	// server yet: the hash in the token does, next.
	body, err := fetchCA(ctx, server, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // checked against the token's hash below
	if err != nil {
		return nil, false, err
	}
	if t.CAHash == "" {
		return body, false, nil
	}
	root := token.CACert(t.CAHash, body)
	if root == nil {
		got := token.CAHash(body)
		return nil, false, fmt.Errorf("%w: %s shows a CA with hash %s, the token names %s; this is not the cluster the token is for (or something is in between), so the token's secret was not sent", ErrCAMismatch, server, got[:16]+"...", t.CAHash[:16]+"...")
	}
	if bytes.Equal(root, body) {
		return body, true, nil
	}
	verified, err := FetchCAVerified(ctx, server, root)
	if errors.Is(err, ErrUnreachable) {
		return nil, false, err
	}
	if err == nil && !token.MatchesCA(t.CAHash, verified) {
		err = errors.New("it showed other CAs over TLS")
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: %s shows the CA the token names, but its API server's certificate is not signed by it (%w); the token's secret was not sent", ErrCAMismatch, server, err)
	}
	return verified, true, nil
}

// FetchCAVerified reads the cluster CA from server over TLS verified by
// caPEM: a node that trusts the cluster's CA learns so of its rotation.
func FetchCAVerified(ctx context.Context, server string, caPEM []byte) ([]byte, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate to verify the server with")
	}
	return fetchCA(ctx, server, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
}

// fetchCA reads /cacerts from server with TLS configured by tc.
func fetchCA(ctx context.Context, server string, tc *tls.Config) ([]byte, error) {
	u, err := endpoint(server, join.CACertsPath)
	if err != nil {
		return nil, err
	}
	c := &http.Client{Timeout: requestTimeout, Transport: &http.Transport{TLSClientConfig: tc}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return nil, err
		}
		return nil, unreachable(server, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, join.MaxBody))
	if err != nil {
		return nil, unreachable(server, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s to %s: is it a kasa server?", server, resp.Status, join.CACertsPath)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(body) {
		return nil, fmt.Errorf("%s sent no CA certificate: is it a kasa server?", server)
	}
	return body, nil
}

// Join posts req to server with the token's credentials, over TLS verified
// by caPEM, and returns the server's answer.
func Join(ctx context.Context, server string, caPEM []byte, t token.Token, req join.Request) (*join.Response, error) {
	return post(ctx, server, caPEM, &t, nil, req)
}

// Renew posts req to server as Join does, authenticated by the node's
// kubelet client certificate instead of a token: a joined node renews its
// certificates so, while its Node exists. When it was deleted, the error
// is join.ErrNodeDeleted (and ErrRefused): only a join with a token brings it
// back.
func Renew(ctx context.Context, server string, caPEM []byte, cert tls.Certificate, req join.Request) (*join.Response, error) {
	return post(ctx, server, caPEM, nil, &cert, req)
}

func post(ctx context.Context, server string, caPEM []byte, t *token.Token, cert *tls.Certificate, req join.Request) (*join.Response, error) {
	u, err := endpoint(server, join.JoinPath)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate to verify the server with")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Timeout: requestTimeout, Transport: &http.Transport{TLSClientConfig: tc}}
	defer c.CloseIdleConnections()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	if t != nil {
		user := t.User
		if t.CAHash == "" && !t.Bootstrap {
			user = "" // a short token: the server tries it as each kind
		}
		hr.SetBasicAuth(user, t.Secret)
	}
	resp, err := c.Do(hr)
	if err != nil {
		return nil, unreachable(server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, unreachable(server, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e join.Refusal
		if json.Unmarshal(data, &e) != nil || e.Message == "" {
			e.Message = resp.Status
		}
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized {
			hint = "; on a server, kasa token create makes a new one"
		}
		err := fmt.Errorf("%w by %s: %s%s", ErrRefused, server, e.Message, hint)
		if resp.StatusCode == http.StatusGone {
			err = deletedError{err}
		}
		return nil, err
	}
	var out join.Response
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: malformed join answer: %w", server, err)
	}
	return &out, nil
}

// endpoint returns the URL of path on server, which must be https://host[:port].
func endpoint(server, path string) (string, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("invalid server URL %q: want https://HOST:6443", server)
	}
	u.Path = path
	return u.String(), nil
}

// deletedError is a refusal because the node was deleted: it is both
// ErrRefused and join.ErrNodeDeleted.
type deletedError struct{ error }

func (e deletedError) Unwrap() error { return e.error }

func (e deletedError) Is(target error) bool { return target == join.ErrNodeDeleted }

func unreachable(server string, err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.Contains(msg, "dial tcp") {
		msg = msg[i+2:]
	}
	return fmt.Errorf("%w %s: %s; check the address and that kasa server runs there", ErrUnreachable, server, msg)
}
