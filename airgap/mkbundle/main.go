// Command mkbundle packs a folder into the payload format of package bundle,
// which the Makefile appends to the kasa binary.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/kasa-io/kasa/pkg/bundle"
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
	flag.Parse()
	if *out == "" || *dir == "" {
		return errors.New("usage: mkbundle -o OUT -C DIR")
	}
	f, err := os.Create(*out + ".tmp")
	if err != nil {
		return err
	}
	if err := bundle.Write(f, *dir); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(*out+".tmp", *out)
}
