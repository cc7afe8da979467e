// Command upstream is the benchmark's back end: an HTTP/1.1 server that
// answers every request with the same 1,024-byte body, so that what the
// benchmark measures is the proxy in front of it, not the application.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/stepgate/stepgate/bench/internal/serve"
)

// bodySize is the size of every response body: about one small HTML page
// or JSON document.
const bodySize = 1024

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:3000", "loopback address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}

	body := append(bytes.Repeat([]byte("x"), bodySize-1), '\n')
	length := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The request body is drained (bounded) so that the connection can
		// be reused; the benchmark sends none.
		_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 1<<20))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Length", length)
		_, _ = w.Write(body)
	})

	ln, err := serve.ListenLoopback(*listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		// IdleTimeout outlives the proxies' idle pools, so that the upstream
		// is never the side that closes a pooled connection mid-benchmark.
		IdleTimeout:    5 * time.Minute,
		MaxHeaderBytes: 64 << 10,
	}
	log.Printf("upstream listening on %s", ln.Addr())
	return serve.Run(srv, ln)
}
