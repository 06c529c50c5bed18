// Command kasa-launcher is the program at the front of a kasa release
// artifact (scripts/release.sh). The artifact is this small program with a
// bundle appended (package bundle): kasa's own program, the upstream
// programs it runs beside itself and the system images, compressed at zstd's
// highest levels. On each start the launcher finds the data dir as kasa
// does (package settings), unpacks the bundle into <data-dir>/data/<hash>/
// unless an earlier start did, and replaces itself with bin/kasa from
// there, with the same arguments, so that `kasa`, `kubectl` and the
// other links behave as kasa itself. The unpacked kasa learns which file it
// came from through KASA_ARTIFACT (kasa up uploads that file).
//
// k3s ships its binary the same way; it is why a release is a third of
// the size of the program that `make` builds.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/kasa-io/kasa/pkg/bundle"
	"github.com/kasa-io/kasa/pkg/settings"
	"github.com/kasa-io/kasa/pkg/version"
)

func main() {
	if err := run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "kasa: %v\n", err)
		os.Exit(1)
	}
}

func run(argv []string) error {
	// Answered without unpacking: install.sh asks it to see that the
	// artifact runs on this machine at all.
	if len(argv) == 2 && argv[1] == "--version" {
		fmt.Println(version.String())
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	p, err := bundle.Find(exe)
	if err != nil {
		return fmt.Errorf("%s: %w", exe, err)
	}
	dir, err := unpack(p, argv)
	if err != nil {
		return err
	}
	env := append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, bundle.ArtifactEnv+"=")
	}), bundle.ArtifactEnv+"="+exe)
	prog := filepath.Join(dir, "bin", "kasa")
	if err := syscall.Exec(prog, argv, env); err != nil {
		return fmt.Errorf("start %s: %w", prog, err)
	}
	return nil
}

// unpack unpacks the bundle into the data dir that the command will use.
// A user who may not write there (kubectl as a user on a server whose
// root has not started kasa yet, or kasa up from a workstation) gets it in
// a cache folder of their own instead.
func unpack(p *bundle.Payload, argv []string) (string, error) {
	dataDir, err := dataDirOf(argv)
	if err != nil {
		// A bad config file is kasa's to report, with its own words.
		dataDir = settings.DefaultDataDir
	}
	dir, err := p.Unpack(dataDir)
	if err == nil || !errors.Is(err, os.ErrPermission) {
		return dir, err
	}
	cache, cerr := os.UserCacheDir()
	if cerr != nil {
		return "", fmt.Errorf("%w; and no cache folder to unpack into instead: %w", err, cerr)
	}
	return p.Unpack(filepath.Join(cache, "kasa"))
}

// tools are the commands whose arguments all belong to another program:
// kasa reads none of its flags there (pkg/cli/tools, pkg/cli/kubectl).
var tools = []string{"kubectl", "crictl", "ctr"}

// dataDirOf finds the data dir as the command in argv will: --data-dir
// and --config on kasa's own command line, else KASA_DATA_DIR, else the
// config files, else the default. Flags it does not know are kasa's to
// judge, not the launcher's.
func dataDirOf(argv []string) (string, error) {
	fs := pflag.NewFlagSet("kasa", pflag.ContinueOnError)
	fs.ParseErrorsAllowlist.UnknownFlags = true
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	resolve := settings.BindDataDir(fs, os.LookupEnv)
	name := filepath.Base(argv[0])
	args := argv[1:]
	asTool := slices.Contains(tools, name) || strings.HasPrefix(name, "kubectl-")
	if !asTool && len(args) > 0 && !slices.Contains(tools, args[0]) {
		_ = fs.Parse(args) // a bad command line is kasa's to report
	}
	return resolve()
}
