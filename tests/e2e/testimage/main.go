// Command testimage is the program of the end-to-end suites' test image,
// built from source by the suite itself (no registry): an HTTP server that
// answers with its host name, and a client for the same.
//
//	testimage serve [:8080]   answer GET / with "hello from <hostname>"
//	testimage get URL         print the body of URL; exit 1 on failure
//	testimage write FILE TEXT write TEXT to FILE
//	testimage cat FILE        print FILE
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		args = []string{"serve"}
	}
	switch args[0] {
	case "serve":
		addr := ":8080"
		if len(args) > 1 {
			addr = args[1]
		}
		host, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Printf("request %s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
			fmt.Fprintf(w, "hello from %s\n", host)
		})
		fmt.Println("serving on", addr)
		srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
		if err := srv.ListenAndServe(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "get":
		if len(args) < 2 {
			fmt.Fprintln(os.Stderr, "usage: testimage get URL")
			os.Exit(2)
		}
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Print(string(body))
		if resp.StatusCode != http.StatusOK {
			fmt.Fprintln(os.Stderr, resp.Status)
			os.Exit(1)
		}
	case "write":
		if len(args) < 3 {
			fmt.Fprintln(os.Stderr, "usage: testimage write FILE TEXT")
			os.Exit(2)
		}
		if err := os.WriteFile(args[1], []byte(args[2]), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "cat":
		if len(args) < 2 {
			fmt.Fprintln(os.Stderr, "usage: testimage cat FILE")
			os.Exit(2)
		}
		b, err := os.ReadFile(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Print(string(b))
	default:
		fmt.Fprintln(os.Stderr, "usage: testimage serve [ADDR] | get URL | write FILE TEXT | cat FILE")
		os.Exit(2)
	}
}
