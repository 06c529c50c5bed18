package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kasa-io/kasa/tests/harness"
	"github.com/kasa-io/kasa/tests/harness/hosts"
)

// benchUp measures kasa up from this machine to three test hosts (a server
// and two agents, reached as root with a key): the first run, binary
// uploads included, to every node Ready, and a second run that changes
// nothing. With a release (dist, its dist/VERSION folder), kasa up runs
// from the release's artifact, and uploads it, as a user's would.
func benchUp(bin, dist string, add func(name, value, target string)) (err error) {
	ctx := context.Background()
	const network = hosts.Prefix + "bench-up"
	if err := hosts.Cleanup(network); err != nil {
		return err
	}
	nw, err := hosts.NewNetwork(network, "172.31.247.0/24")
	if err != nil {
		return err
	}
	home, err := os.MkdirTemp("", "kasa-bench-up-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	var hs []*hosts.Host
	defer func() {
		for i := len(hs) - 1; i >= 0; i-- {
			_, _, _ = hs[i].Exec(ctx, "sh", "-c", "[ -x /usr/local/bin/kasa-uninstall.sh ] && /usr/local/bin/kasa-uninstall.sh; [ -x /usr/local/bin/kasa-agent-uninstall.sh ] && /usr/local/bin/kasa-agent-uninstall.sh; true")
		}
		err = errors.Join(err, nw.Close())
	}()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	signer, _ := ssh.NewSignerFromKey(priv)
	authorized := ssh.MarshalAuthorizedKey(signer.PublicKey())
	names := []string{"srv", "ag1", "ag2"}
	hs = make([]*hosts.Host, len(names))
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hs[i], errs[i] = nw.StartHost(ctx, name, hosts.HostOptions{})
			if errs[i] == nil {
				errs[i] = hs[i].WriteFile(ctx, "/root/.ssh/authorized_keys", authorized, 0o600)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	args := []string{"up", "--server", "root@" + hs[0].IP, "--agent", "root@" + hs[1].IP, "--agent", "root@" + hs[2].IP,
		"--server-arg", "--data-dir=" + hostDataDir, "--server-arg", "--resolv-conf=" + hosts.PodResolvConf,
		"--agent-arg", "--data-dir=" + hostDataDir, "--agent-arg", "--resolv-conf=" + hosts.PodResolvConf, "--accept-new-host-keys"}
	env := append(harness.HermeticEnv(), "HOME="+home, "SSH_AUTH_SOCK=")
	if dist != "" {
		bin = filepath.Join(dist, "kasa-"+runtime.GOARCH)
		// The artifact unpacks kasa before it runs: into a data dir of
		// the bench's, not this machine's.
		env = append(env, "KASA_DATA_DIR="+filepath.Join(home, "data"))
	}
	st, err := os.Stat(bin)
	if err != nil {
		return err
	}
	run := func() (time.Duration, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("kasa up: %w\n%s", err, out)
		}
		return time.Since(start), nil
	}
	first, err := run()
	if err != nil {
		return err
	}
	add(fmt.Sprintf("kasa up: one server and two agents to all Ready (uploads of %s, %.1f MB, included)", filepath.Base(bin), float64(st.Size())/1e6), secs(first), "< 90 s; < 150 MB uploaded")
	again, err := run()
	if err != nil {
		return err
	}
	add("kasa up: the same again, nothing to change", secs(again), "< 3 s")
	return nil
}
