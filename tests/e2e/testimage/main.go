// Command testimage is the program of the end-to-end suites' test image,
// built from source by the suite itself (no registry): an HTTP server that
// answers with its host name, and a client for the same.
//
//	testimage serve [:8080 ...]  answer GET / with "hello from <hostname>" on
//	                             each address, and echo UDP on the same ports
//	testimage get URL         print the body of URL; exit 1 on failure
//	testimage probe TARGET... connect to each tcp:HOST:PORT or udp:HOST:PORT
//	                          (1 s each, all at once) and print a line
//	                          "TARGET ok|refused|timeout|error ..." each
//	testimage bench N URL     GET URL N times, each on a new connection, and
//	                          print "p50 <ms> p99 <ms>"
//	testimage watch TARGET    probe TARGET every 50 ms until it turns ok or
//	                          stops being ok, for a minute at most, and print
//	                          "<before> <after> <unix time in ns>"
//	testimage write FILE TEXT write TEXT to FILE
//	testimage cat FILE        print FILE
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		args = []string{"serve"}
	}
	switch args[0] {
	case "serve":
		addrs := args[1:]
		if len(addrs) == 0 {
			addrs = []string{":8080"}
		}
		host, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Printf("request %s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
			fmt.Fprintf(w, "hello from %s\n", host)
		})
		errs := make(chan error, 2*len(addrs))
		for _, addr := range addrs {
			fmt.Println("serving on", addr)
			srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
			go func() { errs <- srv.ListenAndServe() }()
			go func() { errs <- echoUDP(addr, host) }()
		}
		fmt.Fprintln(os.Stderr, <-errs)
		os.Exit(1)
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
	case "probe":
		var wg sync.WaitGroup
		results := make([]string, len(args)-1)
		for i, target := range args[1:] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = target + " " + probe(target)
			}()
		}
		wg.Wait()
		fmt.Println(strings.Join(results, "\n"))
	case "bench":
		if len(args) < 3 {
			fmt.Fprintln(os.Stderr, "usage: testimage bench N URL")
			os.Exit(2)
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "bench: N must be a positive number")
			os.Exit(2)
		}
		// A new connection each time: each request's first packet goes
		// through the node's rules, as a new client's would.
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		took := make([]time.Duration, 0, n)
		for range n {
			start := time.Now()
			resp, err := c.Get(args[2])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		ms := func(d time.Duration) string {
			return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64)
		}
		fmt.Printf("p50 %s p99 %s\n", ms(took[n/2]), ms(took[n*99/100]))
	case "watch":
		if len(args) < 2 {
			fmt.Fprintln(os.Stderr, "usage: testimage watch TARGET")
			os.Exit(2)
		}
		// ok or not: refused and timeout are one outcome (the kernel
		// rate-limits the ICMP errors behind refused).
		first := probe(args[1])
		for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if now := probe(args[1]); (now == "ok") != (first == "ok") {
				fmt.Println(first, now, time.Now().UnixNano())
				return
			}
		}
		fmt.Fprintln(os.Stderr, "no change in a minute:", first)
		os.Exit(1)
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
		fmt.Fprintln(os.Stderr, "usage: testimage serve [ADDR...] | get URL | probe TARGET... | bench N URL | watch TARGET | write FILE TEXT | cat FILE")
		os.Exit(2)
	}
}

// echoUDP answers each datagram to addr with "hello from host".
func echoUDP(addr, host string) error {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		_, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		_, _ = c.WriteTo([]byte("hello from "+host+"\n"), from)
	}
}

// probe connects to target (tcp:HOST:PORT or udp:HOST:PORT) and says how
// it went: ok, refused (a reset or an ICMP unreachable), timeout (no
// answer within a second) or error and the error.
func probe(target string) string {
	proto, addr, ok := strings.Cut(target, ":")
	if !ok || (proto != "tcp" && proto != "udp") {
		return "error: want tcp:HOST:PORT or udp:HOST:PORT"
	}
	deadline := time.Now().Add(time.Second)
	c, err := net.DialTimeout(proto, addr, time.Second)
	if err == nil && proto == "udp" {
		_ = c.SetDeadline(deadline)
		if _, err = c.Write([]byte("ping")); err == nil {
			buf := make([]byte, 1500)
			_, err = c.Read(buf)
		}
	}
	if c != nil {
		c.Close()
	}
	var ne net.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "error " + err.Error()
	}
}
