package up

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// testSSHServer is an SSH server on loopback that accepts user "tester"
// (or "root", whose commands kasa up runs without sudo) with the given
// client key or the password "pw", and runs exec requests with sh as this
// process's user. It returns its port and host key.
func testSSHServer(t *testing.T, clientKey ssh.PublicKey) (int, ssh.PublicKey) {
	t.Helper()
	hostSigner := newSigner(t, "ed25519")
	return testSSHServerWith(t, clientKey, hostSigner), hostSigner.PublicKey()
}

// testSSHServerWith is testSSHServer with the given host keys (or
// certificates); it returns its port.
func testSSHServerWith(t *testing.T, clientKey ssh.PublicKey, hostSigners ...ssh.Signer) int {
	t.Helper()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if (c.User() == "tester" || c.User() == "root") && string(k.Marshal()) == string(clientKey.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("no")
		},
		PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if c.User() == "tester" && string(pw) == "pw" {
				return nil, nil
			}
			return nil, errors.New("no")
		},
	}
	for _, s := range hostSigners {
		cfg.AddHostKey(s)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go serveSSH(nc, cfg)
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// newSigner makes a key of the given kind: ed25519, ecdsa (P-256) or rsa.
func newSigner(t *testing.T, kind string) ssh.Signer {
	t.Helper()
	var key crypto.Signer
	var err error
	switch kind {
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("no key kind %s", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func serveSSH(nc net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		nc.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		if nch.ChannelType() == "direct-tcpip" {
			go forward(nch)
			continue
		}
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "")
			continue
		}
		ch, reqs, err := nch.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			for req := range reqs {
				if req.Type == "subsystem" && string(req.Payload[4:]) == "sftp" {
					_ = req.Reply(true, nil)
					if srv, err := sftp.NewServer(ch); err == nil {
						_ = srv.Serve()
					}
					return
				}
				if req.Type != "exec" {
					_ = req.Reply(false, nil)
					continue
				}
				n := binary.BigEndian.Uint32(req.Payload[:4])
				cmd := exec.Command("sh", "-c", string(req.Payload[4:4+n]))
				cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
				_ = req.Reply(true, nil)
				status := 0
				if err := cmd.Run(); err != nil {
					var ee *exec.ExitError
					if errors.As(err, &ee) {
						status = ee.ExitCode()
					} else {
						status = 127
					}
				}
				b := make([]byte, 4)
				binary.BigEndian.PutUint32(b, uint32(status))
				_, _ = ch.SendRequest("exit-status", false, b)
				return
			}
		}()
	}
}

// forward serves a direct-tcpip channel (what a bastion does).
func forward(nch ssh.NewChannel) {
	var to struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &to); err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	conn, err := net.Dial("tcp", net.JoinHostPort(to.Host, strconv.Itoa(int(to.Port))))
	if err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		conn.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	go func() { _, _ = io.Copy(ch, conn); ch.Close() }()
	_, _ = io.Copy(conn, ch)
	conn.Close()
}

func clientKey(t *testing.T, dir string) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return file, sp
}

func TestDial(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keyFile, pub := clientKey(t, dir)
	port, hostKey := testSSHServer(t, pub)
	known := filepath.Join(dir, "known_hosts")
	target := Target{Address: "127.0.0.1", Port: port, User: "tester", KeyPath: keyFile}
	auth := Auth{KnownHosts: known}

	// Unknown host: refused with its fingerprint and the way to accept it.
	_, err := Dial(ctx, target, auth)
	if !errors.Is(err, ErrUnknownHost) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(hostKey)) ||
		!strings.Contains(err.Error(), "--accept-new-host-keys") {
		t.Fatalf("unknown host: %v", err)
	}
	// Accepted and recorded, then known.
	auth.AcceptNew = true
	c, err := Dial(ctx, target, auth)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	auth.AcceptNew = false
	c, err = Dial(ctx, target, auth)
	if err != nil {
		t.Fatalf("a recorded host: %v", err)
	}
	out, stderr, err := c.Run(ctx, "cat; echo oops >&2; exit 3", strings.NewReader("hello\n"))
	var exit *ssh.ExitError
	if out != "hello\n" || stderr != "oops\n" || !errors.As(err, &exit) || exit.ExitStatus() != 3 {
		t.Errorf("Run: %q %q %v", out, stderr, err)
	}
	c.Close()

	// A changed key is refused, even with AcceptNew.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherSigner, _ := ssh.NewSignerFromKey(other)
	line := knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))}, otherSigner.PublicKey())
	if err := os.WriteFile(known, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth.AcceptNew = true
	if _, err := Dial(ctx, target, auth); !errors.Is(err, ErrHostKeyChanged) {
		t.Errorf("changed key: %v", err)
	}

	// Password authentication; a wrong key alone fails.
	auth = Auth{Insecure: true}
	if c, err := Dial(ctx, Target{Address: "127.0.0.1", Port: port, User: "tester"}, Auth{Insecure: true, Password: "pw"}); err != nil {
		t.Errorf("password: %v", err)
	} else {
		c.Close()
	}
	wrongKey, _ := clientKey(t, t.TempDir())
	if _, err := Dial(ctx, Target{Address: "127.0.0.1", Port: port, User: "tester", KeyPath: wrongKey}, auth); err == nil ||
		!strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := Dial(ctx, Target{Address: "127.0.0.1", Port: port, User: "tester", KeyPath: filepath.Join(dir, "nope")}, auth); err == nil ||
		!strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing key: %v", err)
	}

	// Through a bastion: a second server forwards to the first.
	port2, _ := testSSHServer(t, pub)
	viaBastion := Target{Address: "127.0.0.1", Port: port, User: "tester", KeyPath: keyFile,
		Bastion: "tester@127.0.0.1:" + strconv.Itoa(port2)}
	c, err = Dial(ctx, viaBastion, Auth{Insecure: true})
	if err != nil {
		t.Fatalf("through a bastion: %v", err)
	}
	if out, _, err := c.Run(ctx, "echo via", nil); err != nil || out != "via\n" {
		t.Errorf("run through a bastion: %q %v", out, err)
	}
	c.Close()

	// Nothing listening.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if _, err := Dial(ctx, Target{Address: "127.0.0.1", Port: closed, User: "tester", KeyPath: keyFile}, auth); err == nil ||
		!strings.Contains(err.Error(), "cannot reach") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("nothing listening: %v", err)
	}
}

// TestDialKnownHostKeyTypes: a host with ed25519, ECDSA and RSA keys is
// reached with a known_hosts that holds any one of them (as OpenSSH
// writes it, with the port, hashed or not), directly or through a
// bastion; a recorded key that differs is refused as changed, and a host
// without a key of a recorded type is refused as such.
func TestDialKnownHostKeyTypes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keyFile, pub := clientKey(t, dir)
	hostKeys := map[string]ssh.Signer{"ed25519": newSigner(t, "ed25519"), "ecdsa": newSigner(t, "ecdsa"), "rsa": newSigner(t, "rsa")}
	port := testSSHServerWith(t, pub, hostKeys["ed25519"], hostKeys["ecdsa"], hostKeys["rsa"])
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	known := filepath.Join(dir, "known_hosts")
	target := Target{Address: "127.0.0.1", Port: port, User: "tester", KeyPath: keyFile}
	// AcceptNew: what is refused is refused even so.
	auth := Auth{KnownHosts: known, AcceptNew: true}
	writeKnown := func(lines ...string) {
		t.Helper()
		if err := os.WriteFile(known, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	line := func(host string, k ssh.PublicKey) string {
		return knownhosts.Line([]string{knownhosts.Normalize(host)}, k)
	}
	hashed := func(host string, k ssh.PublicKey) string {
		return knownhosts.HashHostname(knownhosts.Normalize(host)) + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	}
	dial := func(tg Target, a Auth) error {
		t.Helper()
		c, err := Dial(ctx, tg, a)
		if err != nil {
			return err
		}
		defer c.Close()
		if out, _, err := c.Run(ctx, "echo ok", nil); err != nil || out != "ok\n" {
			t.Errorf("run: %q %v", out, err)
		}
		return nil
	}
	// The file must stay as it was: nothing is recorded for a known host.
	unchanged := func(want string) {
		t.Helper()
		if b, _ := os.ReadFile(known); string(b) != want {
			t.Errorf("known_hosts changed:\n%s", b)
		}
	}

	for _, kind := range []string{"ed25519", "ecdsa", "rsa"} {
		for _, form := range []string{"plain", "hashed"} {
			l := line(addr, hostKeys[kind].PublicKey())
			if form == "hashed" {
				l = hashed(addr, hostKeys[kind].PublicKey())
			}
			writeKnown(l)
			if err := dial(target, auth); err != nil {
				t.Errorf("known_hosts with the %s key only (%s): %v", kind, form, err)
			}
			unchanged(l + "\n")
		}
	}
	// Two types recorded: either does.
	writeKnown(line(addr, hostKeys["rsa"].PublicKey()), line(addr, hostKeys["ecdsa"].PublicKey()))
	if err := dial(target, auth); err != nil {
		t.Errorf("known_hosts with the rsa and ecdsa keys: %v", err)
	}

	// Through a bastion whose own line holds its ed25519 key only, to a
	// host whose line holds its RSA key only.
	bastionKey := newSigner(t, "ed25519")
	bastionPort := testSSHServerWith(t, pub, bastionKey)
	bastionAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(bastionPort))
	writeKnown(line(bastionAddr, bastionKey.PublicKey()), line(addr, hostKeys["rsa"].PublicKey()))
	viaBastion := target
	viaBastion.Bastion = "tester@" + bastionAddr
	if err := dial(viaBastion, auth); err != nil {
		t.Errorf("through a bastion: %v", err)
	}

	// A recorded ed25519 key that is not the host's: changed, whatever
	// other keys the host has, and named with its line.
	other := newSigner(t, "ed25519")
	writeKnown("# a comment", line(addr, other.PublicKey()))
	err := dial(target, auth)
	if !errors.Is(err, ErrHostKeyChanged) || !strings.Contains(err.Error(), "ssh-ed25519 key of "+addr+" is "+ssh.FingerprintSHA256(hostKeys["ed25519"].PublicKey())) ||
		!strings.Contains(err.Error(), known+" line 2") {
		t.Errorf("changed ed25519 key: %v", err)
	}
	// The same through the bastion.
	writeKnown(line(bastionAddr, bastionKey.PublicKey()), line(addr, other.PublicKey()))
	if err := dial(viaBastion, auth); !errors.Is(err, ErrHostKeyChanged) {
		t.Errorf("changed key behind a bastion: %v", err)
	}
	// A changed bastion.
	writeKnown(line(bastionAddr, other.PublicKey()), line(addr, hostKeys["ed25519"].PublicKey()))
	if err := dial(viaBastion, auth); !errors.Is(err, ErrHostKeyChanged) || !strings.Contains(err.Error(), "bastion") {
		t.Errorf("changed bastion key: %v", err)
	}

	// A host with no key of the recorded type: refused as such, not as
	// changed, and nothing recorded.
	edOnly := testSSHServerWith(t, pub, hostKeys["ed25519"])
	edAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(edOnly))
	want := line(edAddr, hostKeys["ecdsa"].PublicKey()) + "\n"
	writeKnown(strings.TrimSpace(want))
	err = dial(Target{Address: "127.0.0.1", Port: edOnly, User: "tester", KeyPath: keyFile}, auth)
	if !errors.Is(err, ErrHostKeyType) || errors.Is(err, ErrHostKeyChanged) ||
		!strings.Contains(err.Error(), "shows host keys of the types ssh-ed25519 only") ||
		!strings.Contains(err.Error(), "ecdsa-sha2-nistp256 (line 1)") || !strings.Contains(err.Error(), "ssh-keyscan -p "+strconv.Itoa(edOnly)+" 127.0.0.1") {
		t.Errorf("no key of the recorded type: %v", err)
	}
	unchanged(want)

	// A host certificate, signed by a CA that a @cert-authority line
	// names for the host; a host without a certificate is refused.
	ca := newSigner(t, "ecdsa")
	cert := &ssh.Certificate{Key: hostKeys["rsa"].PublicKey(), CertType: ssh.HostCert, ValidPrincipals: []string{"127.0.0.1"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	certSigner, err := ssh.NewCertSigner(cert, hostKeys["rsa"])
	if err != nil {
		t.Fatal(err)
	}
	certPort := testSSHServerWith(t, pub, certSigner, hostKeys["ed25519"])
	certAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(certPort))
	writeKnown("@cert-authority " + line(certAddr, ca.PublicKey()))
	if err := dial(Target{Address: "127.0.0.1", Port: certPort, User: "tester", KeyPath: keyFile}, auth); err != nil {
		t.Errorf("a host certificate: %v", err)
	}
	writeKnown("@cert-authority " + line(edAddr, ca.PublicKey()))
	if err := dial(Target{Address: "127.0.0.1", Port: edOnly, User: "tester", KeyPath: keyFile}, auth); !errors.Is(err, ErrHostKeyType) ||
		!strings.Contains(err.Error(), "@cert-authority ecdsa-sha2-nistp256") {
		t.Errorf("a host without a certificate: %v", err)
	}
}

func TestHostKeyAlgorithms(t *testing.T) {
	key := func(kind string) knownKey {
		return knownKey{KnownKey: knownhosts.KnownKey{Key: newSigner(t, kind).PublicKey()}}
	}
	ca := key("ed25519")
	ca.authority = true
	for _, tc := range []struct {
		name string
		keys []knownKey
		want []string
	}{
		{"unknown host: the defaults", nil, nil},
		{"ed25519", []knownKey{key("ed25519")}, []string{"ssh-ed25519"}},
		{"ecdsa", []knownKey{key("ecdsa")}, []string{"ecdsa-sha2-nistp256"}},
		{"rsa: sha-2 first, then sha-1", []knownKey{key("rsa")}, []string{"rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"}},
		{"several, in preference order", []knownKey{key("rsa"), key("ed25519"), key("rsa")},
			[]string{"ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"}},
		{"a CA: certificates first", []knownKey{key("ecdsa"), ca}, append(slices.Clone(certAlgorithms), "ecdsa-sha2-nistp256")},
	} {
		if got := (knownKeys{keys: tc.keys}).algorithms(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
