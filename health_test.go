package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeConn is what the fake dialer returns.
type fakeConn struct{ net.Conn }

func (fakeConn) Close() error { return nil }

// TestProbeCaches: within the interval one dial serves every caller; after
// it, or for another address, the next caller dials again.
func TestProbeCaches(t *testing.T) {
	var dials atomic.Int32
	var fail atomic.Bool
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	p := &probe{
		dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			if fail.Load() {
				return nil, errors.New("refused")
			}
			return fakeConn{}, nil
		},
		now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
	}
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ctx := context.Background()

	if err := p.check(ctx, "up:80"); err != nil {
		t.Fatalf("first check: %v", err)
	}
	fail.Store(true)
	for range 10 {
		if err := p.check(ctx, "up:80"); err != nil {
			t.Fatalf("cached check: got %v; want the cached success", err)
		}
	}
	if got := dials.Load(); got != 1 {
		t.Errorf("dials within the interval: got %d; want 1", got)
	}
	advance(probeEvery)
	if err := p.check(ctx, "up:80"); err == nil {
		t.Errorf("after the interval: got nil; want the new failure")
	}
	if err := p.check(ctx, "other:80"); err == nil || dials.Load() != 3 {
		t.Errorf("another address: got %v after %d dials; want a fresh dial", err, dials.Load())
	}
}

// TestProbeNoStampede: callers that arrive during a slow probe wait for it
// and share its result; the upstream sees one dial.
func TestProbeNoStampede(t *testing.T) {
	var dials atomic.Int32
	entered := make(chan struct{})
	release := make(chan struct{})
	p := &probe{dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			close(entered)
		}
		<-release
		return fakeConn{}, nil
	}}
	const callers = 20
	errs := make(chan error, callers)
	go func() { errs <- p.check(context.Background(), "up:80") }()
	<-entered
	for range callers - 1 {
		go func() { errs <- p.check(context.Background(), "up:80") }()
	}
	close(release)
	for range callers {
		if err := <-errs; err != nil {
			t.Errorf("check: %v", err)
		}
	}
	if got := dials.Load(); got != 1 {
		t.Errorf("dials: got %d; want 1", got)
	}
}

func TestUpstreamAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://app:3000/base", "app:3000"},
		{"http://app", "app:80"},
		{"https://app", "app:443"},
		{"http://[::1]", "[::1]:80"},
	} {
		if got, err := upstreamAddr(tc.in); err != nil || got != tc.want {
			t.Errorf("upstreamAddr(%q): got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestReadyz checks each readiness condition on the real handler.
func TestReadyz(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer upstream.Close()
	cfg, err := loadConfig(writeConfig(t, baseSections+baseRules+"upstream:\n  url: "+upstream.URL+"\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := newSharedParts(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.store.Close()
	live := &liveGate{}
	// every of 1ns: each ask probes, so the test sees changes at once.
	h := readyz(shared, live, &probe{every: time.Nanosecond})
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != 503 || !strings.Contains(body, "config not loaded") {
		t.Errorf("before a config: got %d %q; want 503 config not loaded", code, body)
	}
	gate, err := buildGate(cfg, shared)
	if err != nil {
		t.Fatal(err)
	}
	live.store(cfg, gate)
	if code, body := get(); code != 200 || body != "ok\n" {
		t.Errorf("all up: got %d %q; want 200 ok", code, body)
	}
	upstream.Close()
	if code, body := get(); code != 503 || !strings.Contains(body, "upstream unreachable") || strings.Contains(body, "127.0.0.1") {
		t.Errorf("upstream down: got %d %q; want 503 upstream unreachable, no address", code, body)
	}
}

// TestHealthAndReadyOnAdminOnly: the admin listener answers /healthz and
// /readyz; the proxy port does not serve them (they go to the policy).
func TestHealthAndReadyOnAdminOnly(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "upstream")
	}))
	defer upstream.Close()
	s := startOps(t, writeConfig(t, baseSections+baseRules+`
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
upstream:
  url: `+upstream.URL+`
`), noEnv)
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, "http://"+s.admin+p); code != 200 || body != "ok\n" {
			t.Errorf("admin %s: got %d %q; want 200 ok", p, code, body)
		}
		if code, body := httpGet(t, "http://"+s.listen+p); body == "ok\n" {
			t.Errorf("proxy port %s: got %d %q; want the policy's answer", p, code, body)
		}
	}
	// The admin / is a short index of the endpoints, not a 404; other
	// paths still are.
	if code, body := httpGet(t, "http://"+s.admin+"/"); code != 200 || !strings.Contains(body, "/metrics") || !strings.Contains(body, "/healthz") || !strings.Contains(body, "/readyz") {
		t.Errorf("admin /: got %d %q; want 200 listing /metrics, /healthz, /readyz", code, body)
	}
	if code, _ := httpGet(t, "http://"+s.admin+"/nothing"); code != 404 {
		t.Errorf("admin /nothing: got %d; want 404", code)
	}
}

// TestHealthcheckCommand: exit 0 on 200, an error otherwise.
func TestHealthcheckCommand(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	out, _, err := runCmd(t, nil, "healthcheck", "-url", srv.URL+"/healthz")
	if err != nil || out != "ok\n" {
		t.Errorf("healthy: got %q, %v; want ok, nil", out, err)
	}
	status.Store(503)
	if _, _, err := runCmd(t, nil, "healthcheck", "-url", srv.URL+"/healthz"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("unhealthy: got %v; want an error naming 503", err)
	}
	srv.Close()
	if _, _, err := runCmd(t, nil, "healthcheck", "-url", srv.URL+"/healthz", "-timeout", "2s"); err == nil {
		t.Errorf("unreachable: got nil; want an error")
	}
}
