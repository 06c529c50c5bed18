package up

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// testSSHServer is an SSH server on loopback that accepts user "tester"
// with the given client key or the password "pw", and runs exec requests
// with sh. It returns its port and host key.
func testSSHServer(t *testing.T, clientKey ssh.PublicKey) (int, ssh.PublicKey) {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if c.User() == "tester" && string(k.Marshal()) == string(clientKey.Marshal()) {
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
	cfg.AddHostKey(hostSigner)
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
	return l.Addr().(*net.TCPAddr).Port, hostSigner.PublicKey()
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
