// Command mkbundle makes the payload of package bundle, which the Makefile
// appends to the kasa program and the release appends to the launcher.
//
//	mkbundle -o OUT -C DIR            pack and compress DIR (quickly) into OUT
//	mkbundle -tar -C DIR              write DIR's tar stream to standard output
//	mkbundle -seal -o OUT             read a zstd stream of that tar from standard
//	                                  input and write it with its trailer to OUT
//
// The release compresses with the zstd program between -tar and -seal, at
// levels that Go's encoder does not reach (scripts/release.sh).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/kasa-io/kasa/pkg/bundle"
	"github.com/kasa-io/kasa/pkg/fileutil"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkbundle:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("o", "", "payload file to write")
	dir := flag.String("C", "", "folder to pack")
	tarOnly := flag.Bool("tar", false, "write the folder's tar stream to standard output, uncompressed")
	seal := flag.Bool("seal", false, "read a zstd stream from standard input and write it with the trailer to -o")
	flag.Parse()
	switch {
	case *tarOnly && *dir != "" && *out == "" && !*seal:
		w := bufio.NewWriterSize(os.Stdout, 1<<20)
		if err := bundle.Pack(w, *dir); err != nil {
			return err
		}
		return w.Flush()
	case *seal && *out != "" && *dir == "" && !*tarOnly:
		return fileutil.WriteFileWith(*out, 0o644, func(w io.Writer) error { return bundle.Seal(w, bufio.NewReaderSize(os.Stdin, 1<<20)) })
	case *out != "" && *dir != "" && !*tarOnly && !*seal:
		return fileutil.WriteFileWith(*out, 0o644, func(w io.Writer) error {
			bw := bufio.NewWriterSize(w, 1<<20)
			if err := bundle.Write(bw, *dir); err != nil {
				return err
			}
			return bw.Flush()
		})
	}
	return errors.New("usage: mkbundle -o OUT -C DIR | -tar -C DIR | -seal -o OUT")
}
