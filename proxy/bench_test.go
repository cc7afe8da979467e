package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"testing"
	"time"

	"github.com/stepgate/stepgate/identity"
)

// fixedTransport answers every request in memory, so that benchmarks
// measure the gate and not a network.
type fixedTransport struct{}

func (fixedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Body: http.NoBody, ContentLength: 0, Request: r}, nil
}

// discardWriter is a reusable ResponseWriter.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

func benchGate(b *testing.B, h http.Handler, r *http.Request, want int) {
	b.Helper()
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, r)
	if w.code != want {
		b.Fatalf("got status %d; want %d", w.code, want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

func newBenchRequest(target string) *http.Request {
	r := httptest.NewRequest("GET", target, nil)
	r.Host = "app.example.com"
	r.RemoteAddr = "192.0.2.10:5555"
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "bench")
	return r
}

// BenchmarkReverseProxyBaseline is a bare ReverseProxy{Rewrite: SetURL}
// on the same in-memory transport: subtract it from the Gate benchmarks to
// get the gate's own cost.
func BenchmarkReverseProxyBaseline(b *testing.B) {
	u := mustURL(b, "http://upstream.internal:3000")
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() }, Transport: fixedTransport{}, BufferPool: newBufferPool()}
	benchGate(b, rp, newBenchRequest("/public/x?a=1"), 200)
}

func BenchmarkGateAllow(b *testing.B) {
	g, err := New(Config{Policy: mustPolicy(b, testRules()), Upstream: mustURL(b, "http://upstream.internal:3000"), Transport: fixedTransport{}, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	benchGate(b, g, newBenchRequest("/public/x?a=1"), 200)
}

func BenchmarkGateStepUp(b *testing.B) {
	e, _ := newStepUpEnv(b, "", fixedTransport{})
	r := newBenchRequest("/account/x?a=1")
	alice := identity.Identity{Subject: "alice", Emails: []string{"alice@example.com"}, Session: "s1"}
	r.Header.Set("Authorization", "Bearer "+e.accessToken(b, alice.Subject, alice.Session, alice.Emails...))
	r.Header.Set("X-Second-Factor-Token", e.grant(b, alice).Token)
	benchGate(b, e.gate, r, 200)
}

// BenchmarkGateAllowTimer sets an UpstreamTimeout on a RoundTripper that
// does not bound itself, so every request takes timedTransport's timer
// path (as requests with a body do). With NewTransport, body-less requests
// skip it: compare with BenchmarkGateAllow for what the timer costs.
func BenchmarkGateAllowTimer(b *testing.B) {
	g, err := New(Config{Policy: mustPolicy(b, testRules()), Upstream: mustURL(b, "http://upstream.internal:3000"), Transport: fixedTransport{}, UpstreamTimeout: 30 * time.Second, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	benchGate(b, g, newBenchRequest("/public/x?a=1"), 200)
}

// BenchmarkGateStepUpCookie sends both tokens in one Cookie header, as
// browsers and bench/run.sh do.
func BenchmarkGateStepUpCookie(b *testing.B) {
	e, _ := newStepUpEnv(b, "", fixedTransport{})
	r := newBenchRequest("/account/x?a=1")
	alice := identity.Identity{Subject: "alice", Emails: []string{"alice@example.com"}, Session: "s1"}
	r.Header.Set("Cookie", "theme=dark; access_token="+e.accessToken(b, alice.Subject, alice.Session, alice.Emails...)+"; "+sfCookie+"="+e.grant(b, alice).Token)
	benchGate(b, e.gate, r, 200)
}

// BenchmarkForwardAuthStepUp is BenchmarkGateStepUpCookie asked through
// nginx's auth-request endpoint: the decision without the forwarding.
func BenchmarkForwardAuthStepUp(b *testing.B) {
	e, _ := newStepUpEnv(b, "", fixedTransport{}, func(c *Config) { c.ForwardAuth, c.TrustedProxies = true, loopback() })
	r := newBenchRequest("/.stepup/authz/auth-request")
	r.RemoteAddr = "127.0.0.1:5555"
	alice := identity.Identity{Subject: "alice", Emails: []string{"alice@example.com"}, Session: "s1"}
	r.Header.Set("Cookie", "theme=dark; access_token="+e.accessToken(b, alice.Subject, alice.Session, alice.Emails...)+"; "+sfCookie+"="+e.grant(b, alice).Token)
	r.Header.Set("X-Original-Method", "GET")
	r.Header.Set("X-Original-Url", "https://app.example.com/account/x?a=1")
	benchGate(b, e.gate, r, 200)
}
