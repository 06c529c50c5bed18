// Command mkairgap merges image archives (OCI archives, as airgap/mkimage
// -oci writes them) into one that holds every image under every name it had:
// the release's kasa-airgap-images-ARCH archive, which `ctr images import`
// and a node's <data-dir>/agent/images/ folder take whole. Blobs are copied
// as they are, each once; layers are not compressed again.
//
//	mkairgap -o OUT.tar IN.tar...
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/kasa-io/kasa/airgap/internal/ocitar"
	"github.com/kasa-io/kasa/pkg/fileutil"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkairgap:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkairgap", flag.ContinueOnError)
	out := fs.String("o", "", "archive to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		return errors.New("usage: mkairgap -o OUT.tar IN.tar [IN.tar]")
	}
	return fileutil.WriteFileWith(*out, 0o644, func(w io.Writer) error { return ocitar.Merge(w, fs.Args()) })
}
