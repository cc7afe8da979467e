package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestHeaderStripping(t *testing.T) {
	up := newUpstream(t)
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL)})

	res := raw(t, srv, get("/public/h",
		"X-Stepup-User: mallory",
		"x-stepup-rule: admin",
		"X_Stepup_User: mallory",
		"X-STEPUP-AUTH-TIME: 1",
		"X-Stepup-Token: forged",
		"X-Original-URL: /admin",
		"X_Original_URL: /admin",
		"X-Rewrite-URL: /admin",
		"x_rewrite_url: /admin",
		"X_Request_Id: forged",
		"Connection: X-Stepup-Rule, X-Request-Id",
		"X-Keep: yes",
	))
	if res.Status != 200 {
		t.Fatalf("got status %d; want 200", res.Status)
	}
	s := up.take(t)
	for name, vs := range s.Header {
		n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		switch {
		case n == "x-stepup-rule":
			if len(vs) != 1 || vs[0] != "public" || name != "X-Stepup-Rule" {
				t.Errorf("upstream %s: got %q; want only X-Stepup-Rule: public", name, vs)
			}
		case n == "x-request-id":
			if name != "X-Request-Id" || len(vs) != 1 || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(vs[0]) {
				t.Errorf("upstream %s: got %q; want one generated id", name, vs)
			}
		case strings.HasPrefix(n, "x-stepup-"), n == "x-original-url", n == "x-rewrite-url":
			t.Errorf("upstream got %s: %q; want it stripped", name, vs)
		}
	}
	if got := s.Header.Get("X-Keep"); got != "yes" {
		t.Errorf("X-Keep: got %q; want %q (unrelated headers pass)", got, "yes")
	}
	if got, want := res.Header.Get("X-Request-Id"), s.Header.Get("X-Request-Id"); got != want || len(res.Header["X-Request-Id"]) != 1 {
		t.Errorf("response X-Request-Id: got %q; want exactly the upstream's %q", res.Header["X-Request-Id"], want)
	}
}

func TestForwardedHeaders(t *testing.T) {
	up := newUpstream(t)
	client := []string{
		"X-Forwarded-For: 203.0.113.7",
		"X-Forwarded-Proto: https",
		"X-Forwarded-Host: public.example.com",
		"X_Forwarded_For: 198.51.100.1",
		"Forwarded: for=203.0.113.7",
		"X-Real-IP: 203.0.113.7",
		"X-Request-Id: trace-42",
	}
	tests := []struct {
		name    string
		trusted bool
		xff     string
		proto   string
		host    string
		fwd     string
		realIP  string
		reqID   string // "" means a generated one
	}{
		{name: "untrusted", xff: "127.0.0.1", proto: "http", host: "app.example.com"},
		// X-Forwarded-Host is the decided host even from a trusted proxy (SPEC §7).
		{name: "trusted", trusted: true, xff: "203.0.113.7, 127.0.0.1", proto: "https", host: "app.example.com",
			fwd: "for=203.0.113.7", realIP: "203.0.113.7", reqID: "trace-42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Upstream: mustURL(t, up.URL)}
			if tt.trusted {
				cfg.TrustedProxies = loopback()
			}
			_, srv := newGate(t, cfg)
			res := raw(t, srv, get("/public/f", client...))
			if res.Status != 200 {
				t.Fatalf("got status %d; want 200", res.Status)
			}
			h := up.take(t).Header
			for _, c := range []struct{ name, want string }{
				{"X-Forwarded-For", tt.xff}, {"X-Forwarded-Proto", tt.proto}, {"X-Forwarded-Host", tt.host},
				{"Forwarded", tt.fwd}, {"X-Real-Ip", tt.realIP},
			} {
				if got := strings.Join(h[c.name], ", "); got != c.want {
					t.Errorf("%s: got %q; want %q", c.name, got, c.want)
				}
			}
			if v, ok := h["X_forwarded_for"]; ok {
				t.Errorf("X_Forwarded_For: got %q; want it stripped", v)
			}
			id := h.Get("X-Request-Id")
			if tt.reqID != "" && id != tt.reqID {
				t.Errorf("X-Request-Id: got %q; want %q", id, tt.reqID)
			}
			if tt.reqID == "" && (id == "trace-42" || len(id) != 32) {
				t.Errorf("X-Request-Id: got %q; want a generated 32-hex id", id)
			}
			if got := res.Header.Get("X-Request-Id"); got != id {
				t.Errorf("response X-Request-Id: got %q; want %q", got, id)
			}
		})
	}
}

func TestRequestIDFromTrustedIsValidated(t *testing.T) {
	up := newUpstream(t)
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL), TrustedProxies: loopback()})
	res := raw(t, srv, get("/public/x", "X-Request-Id: a\"b<script>"))
	s := up.take(t)
	if got := s.Header.Get("X-Request-Id"); len(got) != 32 || got != res.Header.Get("X-Request-Id") {
		t.Errorf("X-Request-Id: got upstream %q, response %q; want the same generated id", got, res.Header.Get("X-Request-Id"))
	}
}

// leaks are strings an upstream failure must never show a client.
var leaks = []string{"127.0.0.1", "dial tcp", "connection refused", "context deadline", "timeout awaiting", "localhost"}

func TestUpstreamErrors(t *testing.T) {
	// A port that was just closed: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	up := newUpstream(t)

	tests := []struct {
		name     string
		upstream string
		timeout  time.Duration
		path     string
		status   int
	}{
		{name: "refused", upstream: closed, path: "/public/x", status: 502},
		{name: "timeout", upstream: up.URL, timeout: 50 * time.Millisecond, path: "/block", status: 504},
	}
	for _, tt := range tests {
		for _, accept := range []string{"text/html", "application/json"} {
			t.Run(tt.name+" "+accept, func(t *testing.T) {
				_, srv := newGate(t, Config{Upstream: mustURL(t, tt.upstream), UpstreamTimeout: tt.timeout})
				res := raw(t, srv, get(tt.path, "Accept: "+accept))
				if res.Status != tt.status {
					t.Fatalf("got status %d; want %d", res.Status, tt.status)
				}
				if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, strings.Split(accept, "/")[0]) && !strings.Contains(ct, strings.Split(accept, "/")[1]) {
					t.Errorf("Content-Type: got %q; want %s", ct, accept)
				}
				for _, l := range leaks {
					if strings.Contains(res.Body, l) {
						t.Errorf("body leaks %q: %q", l, res.Body)
					}
				}
				if res.Header.Get("X-Request-Id") == "" {
					t.Errorf("no X-Request-Id on the error response")
				}
			})
		}
	}
}

// TestTransportHeaderTimeout checks the Transport's ResponseHeaderTimeout
// alone (no UpstreamTimeout) also answers 504.
func TestTransportHeaderTimeout(t *testing.T) {
	up := newUpstream(t)
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL), Transport: NewTransport(50 * time.Millisecond)})
	if res := raw(t, srv, get("/block")); res.Status != 504 {
		t.Fatalf("got status %d; want 504", res.Status)
	}
}

func TestPrefixNeverForwarded(t *testing.T) {
	up := newUpstream(t)
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL)})
	for _, target := range []string{"/.stepup", "/.stepup/", "/.stepup/challenge?rd=/", "//.stepup/x", "/%2estepup/x", "/.STEPUP/x", "/.stepup;x/challenge"} {
		t.Run(target, func(t *testing.T) {
			res := raw(t, srv, get(target))
			if res.Status != 404 {
				t.Errorf("got status %d; want 404 (no challenge configured)", res.Status)
			}
			up.none(t)
		})
	}
	// A path that only starts like the prefix is the upstream's.
	res := raw(t, srv, get("/.stepupx"))
	if res.Status != 200 {
		t.Fatalf("/.stepupx: got status %d; want 200", res.Status)
	}
	if s := up.take(t); s.RequestURI != "/.stepupx" {
		t.Errorf("got %q; want %q", s.RequestURI, "/.stepupx")
	}
}

func TestUpgrade(t *testing.T) {
	up := newUpstream(t)
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL)})

	t.Run("websocket allowed", func(t *testing.T) {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: app.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("got status %d; want 101", res.StatusCode)
		}
		s := up.take(t)
		if s.Header.Get("Upgrade") != "websocket" || s.Header.Get("X-Stepup-Rule") != "default" {
			t.Errorf("upstream headers: got Upgrade %q, X-Stepup-Rule %q; want websocket, default", s.Header.Get("Upgrade"), s.Header.Get("X-Stepup-Rule"))
		}
		io.WriteString(conn, "ping\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "echo ping\n" {
			t.Errorf("echo: got %q, %v; want %q", line, err, "echo ping\n")
		}
	})
	t.Run("websocket denied", func(t *testing.T) {
		res := raw(t, srv, get("/admin/ws", "Upgrade: websocket", "Connection: Upgrade"))
		if res.Status != 403 {
			t.Errorf("got status %d; want 403", res.Status)
		}
		up.none(t)
	})
	for _, h := range [][]string{
		{"Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"},
		{"Upgrade: websocket, h2c", "Connection: Upgrade"},
		{"Upgrade: foo"},
		{"Upgrade: websocket", "Upgrade: h2c", "Connection: Upgrade"},
	} {
		t.Run("refused "+h[0], func(t *testing.T) {
			res := raw(t, srv, get("/public/x", h...))
			if res.Status != 400 {
				t.Errorf("got status %d; want 400", res.Status)
			}
			up.none(t)
		})
	}
}

func TestAuditAndMetrics(t *testing.T) {
	up := newUpstream(t)
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL), Metrics: m})

	send := []struct {
		target string
		status int
		fwd    bool
	}{
		{"/audit/x", 200, true},
		{"/audit/y", 200, true},
		{"/admin", 403, false},
		{"/public/x", 200, true},
		{"/elsewhere", 200, true},
		{"/a/%2e%2e/admin", 400, false},
		{"/profile/me", 401, false}, // no identity configured
		{"/account/x", 401, false},
	}
	for _, s := range send {
		res := raw(t, srv, get(s.target))
		if res.Status != s.status {
			t.Fatalf("%s: got status %d; want %d", s.target, res.Status, s.status)
		}
		if s.fwd {
			got := up.take(t)
			if s.target == "/audit/x" && got.Header.Get("X-Stepup-Rule") != "audit" {
				t.Errorf("audited request X-Stepup-Rule: got %q; want %q", got.Header.Get("X-Stepup-Rule"), "audit")
			}
		} else {
			up.none(t)
		}
	}
	for _, c := range []struct {
		rule, decision string
		want           float64
	}{
		{"audit", Audited, 2},
		{"admin", Denied, 1},
		{"public", Forwarded, 1},
		{"default", Forwarded, 1},
		{"none", Rejected, 1},
		{"profile", Unauthenticated, 1},
		{"account", Unauthenticated, 1},
	} {
		if got := testutil.ToFloat64(m.Requests.WithLabelValues(c.rule, c.decision)); got != c.want {
			t.Errorf("requests_total{rule=%q,decision=%q}: got %v; want %v", c.rule, c.decision, got, c.want)
		}
	}
	if got := testutil.CollectAndCount(m.Requests); got != 7 {
		t.Errorf("requests_total series: got %d; want 7 (each request counted once)", got)
	}
	// Four requests reached the upstream.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "stepgate_upstream_duration_seconds" {
			if got := mf.GetMetric()[0].GetHistogram().GetSampleCount(); got != 4 {
				t.Errorf("upstream duration samples: got %d; want 4", got)
			}
		}
	}
}

// TestNonOriginFormDirect calls ServeHTTP with targets a server may hand
// over: they are refused without reaching the upstream.
func TestNonOriginFormDirect(t *testing.T) {
	up := newUpstream(t)
	g, _ := newGate(t, Config{Upstream: mustURL(t, up.URL)})
	for _, c := range []struct{ method, uri string }{
		{"OPTIONS", "*"}, {"GET", ""}, {"GET", "http://app.example.com/public/x"}, {"CONNECT", "app.example.com:443"}, {"GET", "public/x"},
	} {
		r := httptest.NewRequest("GET", "/public/x", nil)
		r.Method, r.RequestURI = c.method, c.uri
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code != 400 {
			t.Errorf("%s %q: got status %d; want 400", c.method, c.uri, w.Code)
		}
		up.none(t)
	}
}

func TestUpstreamBasePath(t *testing.T) {
	up := newUpstream(t)
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL+"/app/")})
	res := raw(t, srv, get("/public/a%40b?x=1"))
	if res.Status != 200 {
		t.Fatalf("got status %d; want 200", res.Status)
	}
	if got, want := up.take(t).RequestURI, "/app/public/a%40b?x=1"; got != want {
		t.Errorf("upstream RequestURI: got %q; want %q", got, want)
	}
}

// TestStreamingNotCut checks that an event stream is flushed to the client
// as it comes and that UpstreamTimeout, which bounds only the wait for
// response headers, does not cut it.
func TestStreamingNotCut(t *testing.T) {
	const timeout = 50 * time.Millisecond
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "data: two\n\n")
	}))
	defer up.Close()
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL), UpstreamTimeout: timeout})

	res, err := http.Get(srv.URL + "/public/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: one\n" {
		t.Fatalf("first event: got %q, %v; want %q", line, err, "data: one\n")
	}
	// Let the header timeout pass several times over while the stream is open.
	<-time.After(3 * timeout)
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\ndata: two\n\n" {
		t.Errorf("rest of stream: got %q, %v; want %q", rest, err, "\ndata: two\n\n")
	}
}
