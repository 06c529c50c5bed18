package harness

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// WeakCipherSuites are TLS 1.2 suites that a modern server refuses: CBC
// with SHA-1, with and without forward secrecy, and 3DES. Go's own
// defaults still offer the first two.
var WeakCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
}

// handshake makes a TLS handshake with addr and closes the connection.
// The server's certificate is not checked: only the protocol is.
func handshake(addr string, c *tls.Config) (tls.ConnectionState, error) {
	c.InsecureSkipVerify = true //nolint:gosec // the check is of the protocol, not the peer
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, c)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

// SpeaksTLS reports whether addr completes a TLS handshake of any version.
func SpeaksTLS(addr string) bool {
	_, err := handshake(addr, &tls.Config{MinVersion: tls.VersionTLS10})
	return err == nil
}

// CheckTLSPolicy returns nil when addr serves TLS 1.3, and TLS 1.2 with a
// modern suite, and refuses TLS 1.0 and 1.1 and every one of
// WeakCipherSuites over TLS 1.2. Else it says what was accepted or refused.
func CheckTLSPolicy(addr string) error {
	var errs []error
	if st, err := handshake(addr, &tls.Config{MinVersion: tls.VersionTLS13}); err != nil {
		errs = append(errs, fmt.Errorf("TLS 1.3 refused: %w", err))
	} else if st.Version != tls.VersionTLS13 {
		errs = append(errs, fmt.Errorf("TLS 1.3 asked, %s served", tls.VersionName(st.Version)))
	}
	if st, err := handshake(addr, &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}); err != nil {
		errs = append(errs, fmt.Errorf("TLS 1.2 with Go's default suites refused: %w", err))
	} else if st.Version != tls.VersionTLS12 {
		errs = append(errs, fmt.Errorf("TLS 1.2 asked, %s served", tls.VersionName(st.Version)))
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		if _, err := handshake(addr, &tls.Config{MinVersion: v, MaxVersion: v}); err == nil {
			errs = append(errs, fmt.Errorf("%s accepted", tls.VersionName(v)))
		}
	}
	for _, s := range WeakCipherSuites {
		c := &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{s}}
		if _, err := handshake(addr, c); err == nil {
			errs = append(errs, fmt.Errorf("TLS 1.2 with %s accepted", tls.CipherSuiteName(s)))
		}
	}
	return errors.Join(errs...)
}

// ListeningTCP returns the TCP addresses (host:port, the host as the
// kernel shows it: 0.0.0.0, ::, 127.0.0.1...) that the process pid and its
// descendants (containerd, in a process group of its own) listen on, read
// from /proc.
func ListeningTCP(pid int) ([]string, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	parent := map[int]int{}
	for _, p := range procs {
		if n, err := strconv.Atoi(p.Name()); err == nil {
			parent[n] = parentOf(n)
		}
	}
	inTree := func(n int) bool {
		for ; n > 1; n = parent[n] {
			if n == pid {
				return true
			}
		}
		return false
	}
	inodes := map[string]bool{}
	for n := range parent {
		if !inTree(n) {
			continue
		}
		dir := filepath.Join("/proc", strconv.Itoa(n), "fd")
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
				inodes[strings.TrimSuffix(inode, "]")] = true
			}
		}
	}
	var addrs []string
	// The process's own network namespace: /proc/net is the test
	// process's, whose main thread a test may have moved elsewhere.
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "net", table))
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			const listen = "0A"
			if len(fields) < 10 || fields[3] != listen || !inodes[fields[9]] {
				continue
			}
			if a, err := procAddr(fields[1]); err == nil {
				addrs = append(addrs, a)
			}
		}
		f.Close()
	}
	slices.Sort(addrs)
	return slices.Compact(addrs), nil
}

// parentOf returns pid's parent, or 0.
func parentOf(pid int) int {
	f, err := ProcStat(pid)
	if err != nil || len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// procAddr turns /proc/net/tcp's hex address:port into host:port.
func procAddr(s string) (string, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return "", fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return "", err
	}
	raw := make(net.IP, len(h)/2)
	for i := range raw {
		b, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		if err != nil {
			return "", err
		}
		raw[i] = byte(b)
	}
	// The kernel prints each 32-bit word in host (little-endian) order.
	for i := 0; i+4 <= len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	return net.JoinHostPort(raw.String(), strconv.FormatUint(port, 10)), nil
}
