package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestTimedTransportBounded checks when the per-request timer may be left
// to the Transport: only a body-less request on an *http.Transport whose
// own timeouts are within UpstreamTimeout.
func TestTimedTransportBounded(t *testing.T) {
	const timeout = 30 * time.Second
	tests := []struct {
		name    string
		base    http.RoundTripper
		timeout time.Duration
		body    bool
		want    bool
	}{
		{name: "NewTransport same timeout", base: NewTransport(timeout), timeout: timeout, want: true},
		{name: "NewTransport shorter timeout", base: NewTransport(time.Second), timeout: timeout, want: true},
		{name: "NewTransport tiny timeout", base: NewTransport(50 * time.Millisecond), timeout: 50 * time.Millisecond, want: true},
		{name: "with body", base: NewTransport(timeout), timeout: timeout, body: true},
		{name: "no header timeout", base: NewTransport(0), timeout: timeout},
		{name: "longer header timeout", base: NewTransport(time.Minute), timeout: timeout},
		{name: "handshake longer than timeout", base: &http.Transport{ResponseHeaderTimeout: time.Second, TLSHandshakeTimeout: 10 * time.Second}, timeout: 2 * time.Second},
		{name: "other RoundTripper", base: fixedTransport{}, timeout: timeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://upstream.internal/x", nil)
			r.Body = nil // as the ReverseProxy sends a request without a body
			if tt.body {
				r = httptest.NewRequest("POST", "http://upstream.internal/x", strings.NewReader("a=1"))
			}
			tr := &timedTransport{base: tt.base, timeout: tt.timeout}
			if got := tr.bounded(r); got != tt.want {
				t.Errorf("bounded: got %v; want %v", got, tt.want)
			}
		})
	}
}

// TestUpstreamTimeoutTimerPath checks that UpstreamTimeout still answers
// 504 where the Transport does not bound the exchange itself: a request
// with a body, and a Transport without ResponseHeaderTimeout.
func TestUpstreamTimeoutTimerPath(t *testing.T) {
	const timeout = 50 * time.Millisecond
	// The upstream reads the body, then answers nothing until the gate
	// gives up (it sees the connection close) or the test ends.
	release := make(chan struct{})
	seen := make(chan string, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- r.Method + " " + string(b)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(release) })
	tests := []struct {
		name      string
		transport http.RoundTripper
		req       string
		seen      string
	}{
		{name: "POST with body", transport: NewTransport(timeout), req: reqLine("POST", "/block", "Content-Type: text/plain", "Content-Length: 3") + "a=1", seen: "POST a=1"},
		{name: "GET, no header timeout", transport: NewTransport(0), req: get("/block"), seen: "GET "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL), Transport: tt.transport, UpstreamTimeout: timeout})
			start := time.Now()
			res := raw(t, srv, tt.req)
			if res.Status != http.StatusGatewayTimeout {
				t.Fatalf("got status %d; want 504", res.Status)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("504 after %v; want about %v", d, timeout)
			}
			select {
			case got := <-seen:
				if got != tt.seen {
					t.Errorf("upstream got %q; want %q", got, tt.seen)
				}
			default:
				t.Errorf("upstream received nothing; want %q", tt.seen)
			}
		})
	}
}
