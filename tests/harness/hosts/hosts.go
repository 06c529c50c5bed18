// Package hosts gives tests machines of their own to run kasa on: Docker
// containers that boot systemd and sshd from the image that
// scripts/build-host-image.sh builds, each with its own address on a bridge
// network, its own file system and a Docker volume on /var/lib (containerd's
// overlayfs snapshotter cannot sit on the container's overlay root).
//
// The containers are run as /work/shared/ENVIRONMENT.md says a nested node
// needs: every capability but CAP_SYS_RESOURCE (which this machine lacks),
// seccomp, AppArmor and the masked /proc paths unconfined, a private cgroup
// namespace (never the machine's cgroups), tmpfs on /run and /run/lock, and
// /dev/kmsg. The image's entrypoint makes "/" shared and the container's
// own cgroup mounts writable before it starts systemd.
//
// A host's kernel is the machine's: settings under /proc/sys outside
// net.* (each host has its own network namespace) are global, so a kubelet
// in a host changes them for the machine, as it would on the machine
// itself; `kasa killall` in the host restores those kasa records.
//
// Everything the package creates carries the label kasa-test=1 and a name
// that begins with its network's name, which begins with Prefix; Cleanup
// removes what a killed run left. The package calls the docker client; the
// engine must answer and the image exist (Available says what to do if
// not). One run at a time may use a given network name and subnet.
package hosts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const (
	// Label marks every container, volume and network of the package (as
	// Label=1); Cleanup removes nothing without it.
	Label = "kasa-test"
	// NetworkLabel names the network a container or volume belongs to.
	NetworkLabel = "kasa-test.network"
	// Prefix begins every network's name, and so every container's and
	// volume's.
	Prefix = "kasa-test-"
	// DefaultSubnet is clear of kasa's pod and service networks
	// (10.42.0.0/16, 10.43.0.0/16) and of Docker's default bridge
	// (172.17.0.0/16).
	DefaultSubnet = "172.31.240.0/24"
	// PodResolvConf is a resolv.conf without loopback servers that StartHost
	// writes in every host, for kasa's --resolv-conf: Docker gives a host
	// 127.0.0.11 (its embedded DNS), which pods cannot reach. It names the
	// network's gateway, an address of this machine, so that no lookup
	// leaves the machine.
	PodResolvConf = "/etc/kasa-test/resolv.conf"
	// ImageRepo is the repository of the host image.
	ImageRepo = "kasa-test-host"

	buildScript = "scripts/build-host-image.sh"
	// How to get a docker engine and the image, for error messages.
	buildHint = "run: sudo " + buildScript + " (it installs docker.io, starts dockerd and builds the image)"
)

// ErrUnavailable is returned by Available when Docker or the image is missing.
var ErrUnavailable = errors.New("test hosts unavailable")

// Image returns the reference of the host image: $KASA_HOST_IMAGE when set,
// else the tag that scripts/build-host-image.sh builds,
// kasa-test-host:<first 12 hex digits of the script's sha256>. The script
// is found above the working directory (tests run in their package's).
func Image() (string, error) {
	if img := os.Getenv("KASA_HOST_IMAGE"); img != "" {
		return img, nil
	}
	script, err := findScript()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(script)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return ImageRepo + ":" + hex.EncodeToString(sum[:])[:12], nil
}

func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, buildScript)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s not found above the working directory (set KASA_HOST_IMAGE to name the image)", buildScript)
		}
		dir = parent
	}
}

// Available checks that the docker client is installed, the engine
// answers and the host image exists; its error says how to get them.
func Available(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("%w: no docker client: %s", ErrUnavailable, buildHint)
	}
	v, _, err := docker(ctx, nil, "version", "--format", "{{.Server.Version}}")
	if err == nil && strings.TrimSpace(v) == "" {
		err = errors.New("no server version")
	}
	if err != nil {
		return fmt.Errorf("%w: the Docker engine does not answer (%w): %s", ErrUnavailable, err, buildHint)
	}
	img, err := Image()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if _, _, err := docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", img); err != nil {
		return fmt.Errorf("%w: image %s is missing: %s", ErrUnavailable, img, buildHint)
	}
	return nil
}

// docker runs the docker client and returns its output; a failure carries
// the command and the client's error output.
func docker(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errOut
	err = cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		err = fmt.Errorf("docker %s: %w: %s", shortArgs(args), err, strings.TrimSpace(lastLines(errOut.String(), 10)))
	}
	return out.String(), errOut.String(), err
}

// shortArgs is args for an error message: the first few, each cut short.
func shortArgs(args []string) string {
	var out []string
	for i, a := range args {
		if i == 8 {
			out = append(out, "...")
			break
		}
		if len(a) > 80 {
			a = a[:77] + "..."
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Cleanup removes every container, volume and network that carries Label
// and whose name begins with prefix: what a killed run left behind. It
// stops at nothing else, so it must not be given the prefix of a run that
// is still going.
func Cleanup(prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	list := func(args ...string) []string {
		out, _, err := docker(ctx, nil, args...)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		var names []string
		for _, n := range strings.Fields(out) {
			if strings.HasPrefix(n, prefix) {
				names = append(names, n)
			}
		}
		return names
	}
	filter := "label=" + Label
	if cs := list("container", "ls", "--all", "--filter", filter, "--format", "{{.Names}}"); len(cs) > 0 {
		if _, _, err := docker(ctx, nil, append([]string{"container", "rm", "--force", "--volumes"}, cs...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if vs := list("volume", "ls", "--filter", filter, "--format", "{{.Name}}"); len(vs) > 0 {
		if _, _, err := docker(ctx, nil, append([]string{"volume", "rm", "--force"}, vs...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if ns := list("network", "ls", "--filter", filter, "--format", "{{.Name}}"); len(ns) > 0 {
		if _, _, err := docker(ctx, nil, append([]string{"network", "rm"}, ns...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Leftovers lists the containers, volumes and networks that carry Label
// and whose names begin with prefix, as "kind name".
func Leftovers(ctx context.Context, prefix string) ([]string, error) {
	var found []string
	for _, k := range []struct{ kind, format string }{
		{"container", "{{.Names}}"}, {"volume", "{{.Name}}"}, {"network", "{{.Name}}"},
	} {
		args := []string{k.kind, "ls", "--filter", "label=" + Label, "--format", k.format}
		if k.kind == "container" {
			args = append(args, "--all")
		}
		out, _, err := docker(ctx, nil, args...)
		if err != nil {
			return nil, err
		}
		for _, n := range strings.Fields(out) {
			if strings.HasPrefix(n, prefix) {
				found = append(found, k.kind+" "+n)
			}
		}
	}
	return found, nil
}
