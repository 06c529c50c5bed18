// Package containerd runs containerd v2 as a supervised child process of
// kasa, with a configuration that kasa writes: the CRI plugin, the overlayfs
// snapshotter, runc with the cgroupfs driver, kasa's pause image and its
// registry settings. containerd, its runc shim and runc come from the bundle.
package containerd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kasa-io/kasa/pkg/fileutil"
	"github.com/kasa-io/kasa/pkg/supervisor"
)

// PauseImage is the sandbox image, built from source into the bundle.
const PauseImage = "kasa.local/pause:3.10.2"

// Config says where containerd keeps its state and finds its parts.
type Config struct {
	// BinDir holds containerd, containerd-shim-runc-v2, runc and the CNI plugins.
	BinDir string
	// Root is containerd's persistent state (<data-dir>/agent/containerd).
	Root string
	// RunDir holds the socket and the volatile state (/run/kasa/containerd).
	RunDir string
	// ConfigDir receives config.toml; RegistryDir the hosts.toml folders.
	ConfigDir   string
	RegistryDir string
	// CNIConfDir is where the network's CNI configuration is written.
	CNIConfDir string
	// RestrictOOMScoreAdj is needed where kasa cannot lower oom_score_adj
	// (no CAP_SYS_RESOURCE: containers, some VMs).
	RestrictOOMScoreAdj bool
	// Env is the child's base environment; the CLI layer passes kasa's own
	// without its KASA_* settings. BinDir is put first on its PATH.
	Env    []string
	Log    *slog.Logger
	Output io.Writer
}

// Socket is containerd's CRI and API endpoint.
func (c Config) Socket() string { return filepath.Join(c.RunDir, "containerd.sock") }

// Endpoint is Socket as a URL, as the kubelet and crictl take it.
func (c Config) Endpoint() string { return "unix://" + c.Socket() }

var configTemplate = template.Must(template.New("config").Parse(`# Written by kasa at every start; edits are lost.
version = 3
root = "{{.Root}}"
state = "{{.RunDir}}/state"

[grpc]
  address = "{{.Socket}}"

[ttrpc]
  address = "{{.Socket}}.ttrpc"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{{.PauseImage}}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{{.RegistryDir}}"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = {{.RestrictOOMScoreAdj}}
  enable_selinux = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{{.BinDir}}"]
    conf_dir = "{{.CNIConfDir}}"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = "{{.BinDir}}/containerd-shim-runc-v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{{.BinDir}}/runc"
        Root = "{{.RunDir}}/runc"

[plugins.'io.containerd.shim.v1.manager']
  socket_dir = "{{.RunDir}}/s"

[plugins.'io.containerd.nri.v1.nri']
  disable = true
`))

// Render returns config.toml for c.
func (c Config) Render() ([]byte, error) {
	var b bytes.Buffer
	err := configTemplate.Execute(&b, struct {
		Config
		Socket     string
		PauseImage string
	}{c, c.Socket(), PauseImage})
	return b.Bytes(), err
}

// Process returns the supervised containerd child, after writing its
// configuration.
func (c Config) Process() (*supervisor.Process, error) {
	for _, d := range []string{c.Root, c.RunDir, c.ConfigDir, c.RegistryDir, c.CNIConfDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	cfg, err := c.Render()
	if err != nil {
		return nil, err
	}
	file := filepath.Join(c.ConfigDir, "config.toml")
	if err := fileutil.WriteFile(file, cfg, 0o600); err != nil {
		return nil, err
	}
	return &supervisor.Process{
		ComponentName: "containerd",
		Path:          filepath.Join(c.BinDir, "containerd"),
		Args:          []string{"--config", file},
		Env:           withPath(c.Env, c.BinDir),
		Output:        c.Output,
		Ready:         func(ctx context.Context) error { return Ping(ctx, c.Socket()) },
		StopTimeout:   10 * time.Second,
		Log:           c.Log,
	}, nil
}

// withPath returns env with dir first on its PATH: the shim finds runc and
// the CNI plugins there too.
func withPath(env []string, dir string) []string {
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = p
			continue
		}
		out = append(out, kv)
	}
	return append(out, "PATH="+dir+":"+path)
}

// Ping asks containerd's CRI service for its version.
func Ping(ctx context.Context, socket string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	v, err := runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return err
	}
	if v.RuntimeName != "containerd" {
		return fmt.Errorf("%s answers as %q, not containerd", socket, v.RuntimeName)
	}
	return nil
}
