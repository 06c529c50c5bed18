//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/join/joinclient"
	"github.com/kasa-io/kasa/pkg/pki"
	"github.com/kasa-io/kasa/pkg/token"
	"github.com/kasa-io/kasa/tests/harness"
)

// The limits of pkg/join: failed checks a source address may have in a
// row, and how often it earns one more.
const (
	failBurst = 10
	failEvery = 6 * time.Second
)

// serverTokenAndCA reads a running server's token from its data dir and
// fetches its CA as an agent does, pinned to the token's hash.
func serverTokenAndCA(t *testing.T, s *harness.Server) (token.Token, []byte) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.DataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := token.Parse(string(data))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, pinned, err := joinclient.FetchCA(context.Background(), s.URL(), tok)
	if err != nil || !pinned {
		t.Fatalf("FetchCA: %v (pinned %v)", err, pinned)
	}
	return tok, caPEM
}

// TestIntegrationJoinRateLimit: 1,000 wrong joins from one address
// (127.0.0.1), sent at once, are refused with 429 after the first few,
// while a real join from another address (127.0.0.2) succeeds within 10 s.
func TestIntegrationJoinRateLimit(t *testing.T) {
	agentSecret, err := token.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	// With an agent token, a wrong short token costs two hashes: the
	// guess an attacker would pick.
	s := startServerWith(t, func(s *harness.Server) { s.Env = []string{"KASA_AGENT_TOKEN=" + agentSecret} })
	ctx := context.Background()
	serverTok, caPEM := serverTokenAndCA(t, s)
	attacker, other := clientFrom(t, "127.0.0.1", caPEM), clientFrom(t, "127.0.0.2", caPEM)
	wrong, err := token.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	guess := joinRequest(t, "guess", false)

	const n = 1000
	var mu sync.Mutex
	codes := map[int]int{}
	var noRetryAfter int
	var wg sync.WaitGroup
	firstAnswer := make(chan struct{})
	var once sync.Once
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := postJoin(ctx, attacker, s.URL(), "", wrong, guess)
			once.Do(func() { close(firstAnswer) })
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				codes[-1]++
				return
			}
			codes[a.code]++
			if secs, err := strconv.Atoi(a.retryAfter); a.code == http.StatusTooManyRequests && (err != nil || secs < 1) {
				noRetryAfter++
			}
		}()
	}
	// The real join starts once the flood is answered at.
	<-firstAnswer
	realStart := time.Now()
	real, err := postJoin(ctx, other, s.URL(), token.AgentUser, agentSecret, joinRequest(t, "real-node", true))
	realTook := time.Since(realStart)
	wg.Wait()
	floodTook := time.Since(start)
	t.Logf("%d wrong joins from 127.0.0.1 in %s: %d got 401 (checked), %d got 429 (refused before any hashing), %d failed otherwise; the real join from 127.0.0.2 took %s",
		n, floodTook.Round(time.Millisecond), codes[http.StatusUnauthorized], codes[http.StatusTooManyRequests], n-codes[http.StatusUnauthorized]-codes[http.StatusTooManyRequests], realTook.Round(time.Millisecond))

	if err != nil || real.code != http.StatusOK {
		t.Fatalf("the real join: %v %d %s", err, real.code, real.body)
	}
	var resp join.Response
	if err := json.Unmarshal([]byte(real.body), &resp); err != nil || len(resp.Certificates) != len(join.NodeCerts("real-node", nil)) {
		t.Errorf("the real join's answer: %v, %d certificates", err, len(resp.Certificates))
	}
	if realTook > 10*time.Second {
		t.Errorf("the real join took %s, want within 10 s", realTook)
	}
	if codes[http.StatusUnauthorized]+codes[http.StatusTooManyRequests] != n {
		t.Errorf("answers to the wrong joins: %v; want only 401 and 429", codes)
	}
	if most := failBurst + int(floodTook/failEvery) + 1; codes[http.StatusUnauthorized] > most {
		t.Errorf("%d of the wrong joins were checked in %s; the limit allows %d", codes[http.StatusUnauthorized], floodTook.Round(time.Millisecond), most)
	}
	if noRetryAfter > 0 {
		t.Errorf("%d answers 429 without a Retry-After of a second or more", noRetryAfter)
	}

	// The limit is the address's: the right secret from 127.0.0.1 waits too.
	a, err := postJoin(ctx, attacker, s.URL(), token.AgentUser, agentSecret, joinRequest(t, "from-attacker", true))
	if err != nil || a.code != http.StatusTooManyRequests || !strings.Contains(a.body, "too many failed joins from 127.0.0.1") {
		t.Errorf("the right secret from the limited address: %v %d %s", err, a.code, a.body)
	}

	log, err := os.ReadFile(s.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{wrong, agentSecret, serverTok.Secret} {
		if bytes.Contains(log, []byte(secret)) {
			t.Error("a secret is in the server's log")
		}
	}
	if c := bytes.Count(log, []byte("too many failed attempts")); c < 1 || c > 3 {
		t.Errorf("%d log lines about the limit, want one per run of refusals", c)
	}
}

// TestIntegrationShortSecrets: a new server refuses a --token or
// --agent-token shorter than 16 characters, before it writes anything;
// a data dir that holds a short secret already starts, warns, and the
// secret still joins.
func TestIntegrationShortSecrets(t *testing.T) {
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	const short = "short-s3cret"
	for _, c := range []struct{ env, flag string }{
		{"KASA_TOKEN=" + short, "--token"},
		{"KASA_AGENT_TOKEN=" + short, "--agent-token"},
	} {
		s, err := harness.NewServer(bin)
		if err != nil {
			t.Fatal(err)
		}
		s.Env = []string{c.env}
		start := time.Now()
		out, code := runBriefly(t, s, 30*time.Second)
		took := time.Since(start)
		if code == 0 {
			s.Close()
			t.Fatalf("%s: exit 0:\n%s", c.env, out)
		}
		msg := strings.TrimSpace(out)
		if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "kasa: "+c.flag+":") {
			t.Errorf("%s: want one line about %s, got:\n%s", c.flag, c.flag, msg)
		}
		for _, w := range []string{"at least 16 characters", "openssl rand -hex 16", "kasa generates one"} {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: message %q lacks %q", c.flag, msg, w)
			}
		}
		if strings.Contains(msg, short) {
			t.Errorf("%s: the message shows the secret", c.flag)
		}
		for _, f := range []string{"server/token", "server/agent-token", "server/tls/ca.crt"} {
			if _, err := os.Stat(filepath.Join(s.DataDir, f)); err == nil {
				t.Errorf("%s: the refused start wrote %s", c.flag, f)
			}
		}
		if took > 10*time.Second {
			t.Errorf("%s: the refusal took %s", c.flag, took)
		}
		s.Close()
	}

	// A data dir whose token file holds a short secret, as one made before
	// the minimum: the server starts with it (and --token repeating it).
	s := startServerWith(t, func(s *harness.Server) {
		if err := os.MkdirAll(filepath.Join(s.DataDir, "server"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.DataDir, "server", "token"), []byte(short+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s.Env = []string{"KASA_TOKEN=" + short}
	})
	if err := harness.Eventually(10*time.Second, func() error {
		b, _ := os.ReadFile(s.LogPath())
		if !bytes.Contains(b, []byte("the server token's secret has fewer than 16 characters")) {
			return io.EOF
		}
		return nil
	}); err != nil {
		t.Errorf("no warning about the short secret in the log: %v", err)
	}
	ctx := context.Background()
	caPEM, err := os.ReadFile(filepath.Join(s.DataDir, "server", "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	tok := token.Token{CAHash: token.CAHash(caPEM), User: token.ServerUser, Secret: short}
	if err := harness.Eventually(30*time.Second, func() error {
		_, err := joinclient.Join(ctx, s.URL(), caPEM, tok, joinRequest(t, "kept-short", true))
		return err
	}); err != nil {
		t.Errorf("a join with the kept short secret: %v", err)
	}

	// kasa token create makes secrets of 16 characters.
	out, code, err := s.Run("token", "create", "--kubeconfig", s.Kubeconfig())
	if err != nil || code != 0 {
		t.Fatalf("kasa token create: %d %v\n%s", code, err, out)
	}
	bt, err := token.Parse(strings.TrimSpace(out))
	if err != nil || !bt.Bootstrap || token.CheckStrength(bt.Secret) != nil {
		t.Errorf("kasa token create made a token of %d characters: %v", len(bt.Secret), err)
	}
}

// runBriefly runs the server and returns its output and exit code; a
// server still running after timeout is killed and the test fails.
func runBriefly(t *testing.T, s *harness.Server, timeout time.Duration) (string, int) {
	t.Helper()
	cmd := s.Command(s.Args()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
		return out.String(), cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("the server still ran after %s:\n%s", timeout, out.String())
		return "", 0
	}
}

// clientFrom is an HTTPS client whose connections come from the local
// address local, trusting the cluster CA.
func clientFrom(t *testing.T, local string, caPEM []byte) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate")
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 100,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: time.Minute, Transport: tr}
}

// joinRequest is an agent's join request; with keys, it holds public keys
// for every certificate a node gets.
func joinRequest(t *testing.T, name string, keys bool) join.Request {
	t.Helper()
	password, err := token.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	req := join.Request{NodeName: name, Role: join.RoleAgent, Password: password, Addresses: []string{"192.0.2.7"}, Keys: map[string]string{}}
	if keys {
		nodeKeys(t, &req)
	}
	return req
}

// nodeKeys makes a key for every certificate a node gets, and for the
// certificate names in more, puts the public halves into req and returns
// the private ones by certificate name.
func nodeKeys(t *testing.T, req *join.Request, more ...string) map[string]*ecdsa.PrivateKey {
	t.Helper()
	private := map[string]*ecdsa.PrivateKey{}
	names := slices.Clone(more)
	for _, l := range join.NodeCerts(req.NodeName, nil) {
		names = append(names, join.CertName(l))
	}
	for _, name := range names {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := pki.PublicKeyPEM(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		req.Keys[name] = string(pub)
		private[name] = k
	}
	return private
}

type answer struct {
	code       int
	retryAfter string
	body       string
}

// postJoin posts req to the server's join endpoint with user and secret
// as basic authentication, as an agent does (pkg/join's client).
func postJoin(ctx context.Context, c *http.Client, server, user, secret string, req join.Request) (answer, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return answer{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, server+join.JoinPath, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.SetBasicAuth(user, secret)
	resp, err := c.Do(hr)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b)}, err
}
