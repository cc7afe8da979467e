// Command bareproxy is the benchmark's baseline: a plain
// httputil.ReverseProxy to the upstream, tuned as well as such a proxy can
// be, so that stepgate's overhead is measured against the best a Go proxy
// without policy, identity or second-factor checks does on this machine.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/stepgate/stepgate/bench/internal/serve"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bareproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8081", "loopback address to listen on")
	upstream := fs.String("upstream", "http://127.0.0.1:3000", "upstream base URL")
	idle := fs.Int("max-idle", 256, "idle upstream connections kept (total and per host)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	target, err := url.Parse(*upstream)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return fmt.Errorf("-upstream %q: want an absolute http(s) URL", *upstream)
	}

	rp := &httputil.ReverseProxy{
		// Rewrite, not Director: hop-by-hop headers are removed before
		// Rewrite runs, as in stepgate (STYLE.md principle 2).
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: newTransport(*idle),
		// Without a BufferPool every proxied response allocates a fresh
		// 32 KiB copy buffer.
		BufferPool: newBufferPool(32 << 10),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Printf("proxy error: %v", err)
			http.Error(w, "bad gateway", http.StatusBadGateway)
		},
	}

	ln, err := serve.ListenLoopback(*listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           rp,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	log.Printf("bareproxy listening on %s, forwarding to %s", ln.Addr(), target)
	return serve.Run(srv, ln)
}

// newTransport returns an HTTP/1.1 transport whose idle pool is large
// enough for the benchmark's concurrency. The default keeps only 2 idle
// connections per host, so under 64 concurrent clients most requests would
// dial a new upstream connection and the baseline would measure TCP
// handshakes instead of proxying.
func newTransport(maxIdle int) *http.Transport {
	return &http.Transport{
		// Proxy is nil on purpose: the environment's HTTP_PROXY must not
		// divert loopback benchmark traffic.
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          maxIdle,
		MaxIdleConnsPerHost:   maxIdle,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableKeepAlives:     false,
	}
}

// bufferPool implements httputil.BufferPool with a sync.Pool. Put costs
// one 24-byte slice header on the heap, instead of a 32 KiB buffer per
// response.
type bufferPool struct {
	size int
	pool sync.Pool
}

func newBufferPool(size int) *bufferPool {
	p := &bufferPool{size: size}
	p.pool.New = func() any {
		b := make([]byte, size)
		return &b
	}
	return p
}

func (p *bufferPool) Get() []byte { return *(p.pool.Get().(*[]byte)) }

func (p *bufferPool) Put(b []byte) {
	// Buffers of another size are dropped, so the pool never grows or
	// hands out a short buffer.
	if cap(b) != p.size {
		return
	}
	b = b[:p.size]
	p.pool.Put(&b)
}

var _ httputil.BufferPool = (*bufferPool)(nil)
