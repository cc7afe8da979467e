package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"testing"
	"time"

	"github.com/stepgate/stepgate/identity"
)

// BenchmarkLoopback is the end-to-end counterpart of BenchmarkGate*: a real
// listener serving the handler with net/http, a real upstream answering
// 1,024 bytes over loopback, and a keep-alive client sending the headers
// bench/run.sh sends (a Cookie with both tokens), in parallel. What the
// in-memory benchmarks cannot see shows here: the headers written to and
// parsed by the upstream, the response copy, the server's per-connection
// work and GC over the whole process. Compare each case with "bare", a
// ReverseProxy tuned like bench/bareproxy, on the same requests, and
// step_up with "bare_headers", which also carries the contract's headers.
func BenchmarkLoopback(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	up := serveLoopback(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	}))
	upURL := mustURL(b, "http://"+up)
	transport := NewTransport(30 * time.Second)

	e, _ := newStepUpEnv(b, "", nil)
	alice := identity.Identity{Subject: "alice", Emails: []string{"alice@example.com"}, Session: "s1"}
	cookie := "theme=dark; access_token=" + e.accessToken(b, alice.Subject, alice.Session, alice.Emails...) + "; " + sfCookie + "=" + e.grant(b, alice).Token
	gate, err := New(Config{Policy: mustPolicy(b, testRules()), Upstream: upURL, Transport: transport,
		Identity: e.auth, SecondFactor: e.tokens, Logger: quietLogger(), Metrics: NewMetrics(nil)})
	if err != nil {
		b.Fatal(err)
	}
	bare := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(upURL); pr.SetXForwarded() },
		Transport:  transport,
		BufferPool: newBufferPool(),
	}
	// bare_headers is bare plus what SPEC §7 makes a step_up request carry
	// that bare's does not: the six headers added upstream and the
	// request id and Cache-Control answered. step_up minus bare_headers is
	// the gate's own work; bare_headers minus bare is the contract's
	// headers (bench/decompose.sh measures the same split under wrk).
	bareHeaders := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upURL)
			pr.SetXForwarded()
			h := pr.Out.Header
			h["X-Request-Id"] = []string{"0123456789abcdef0123456789abcdef"}
			h["X-Stepup-Rule"] = []string{"account"}
			h["X-Stepup-User"] = []string{alice.Subject}
			h["X-Stepup-Email"] = []string{alice.Emails[0]}
			h["X-Stepup-Auth-Time"] = []string{"1764633600"}
			h["X-Stepup-Method"] = []string{"email"}
		},
		ModifyResponse: func(res *http.Response) error {
			res.Header["Cache-Control"] = []string{"private"}
			res.Header["X-Request-Id"] = []string{"0123456789abcdef0123456789abcdef"}
			return nil
		},
		Transport:  transport,
		BufferPool: newBufferPool(),
	}
	cases := []struct {
		name string
		h    http.Handler
		path string
	}{
		{"bare", bare, "/account/x"},
		{"bare_headers", bareHeaders, "/account/x"},
		{"allow", gate, "/public/x"},
		{"step_up", gate, "/account/x"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			addr := serveLoopback(b, c.h)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
			b.Cleanup(client.CloseIdleConnections)
			req := func() (*http.Response, error) {
				r, _ := http.NewRequest("GET", "http://"+addr+c.path+"?a=1", nil)
				r.Host = "app.example.com"
				r.Header.Set("Cookie", cookie)
				r.Header.Set("User-Agent", "bench")
				return client.Do(r)
			}
			if res, err := req(); err != nil || res.StatusCode != 200 {
				b.Fatalf("%s: %v %v; want 200", c.name, res, err)
			} else {
				res.Body.Close()
			}
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := req()
					if err != nil {
						b.Error(err)
						return
					}
					n, _ := io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 || n != 1024 {
						b.Errorf("status %d, %d bytes", res.StatusCode, n)
						return
					}
				}
			})
		})
	}
}

// serveLoopback serves h on a fresh loopback port until the benchmark ends.
func serveLoopback(b *testing.B, h http.Handler) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
