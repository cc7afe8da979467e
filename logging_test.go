package main

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stepgate/stepgate/respond"
)

// nopWriter is an http.ResponseWriter that allocates nothing, so that
// allocation counts measure observe alone.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// statusHandler answers every request with its status.
type statusHandler int

func (s statusHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(int(s))
}

func newResponses() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stepgate_http_responses_total"}, []string{"code"})
}

// liveWithAccess returns a liveGate whose config has log.access set to on.
func liveWithAccess(on bool) *liveGate {
	live := &liveGate{}
	live.cur.Store(&gateState{cfg: &Config{Log: LogConfig{Access: on}}})
	return live
}

func TestObserveAllocs(t *testing.T) {
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	w := &nopWriter{h: http.Header{}}
	r := httptest.NewRequest("GET", "/admin", nil)
	tests := []struct {
		status int
		want   float64
	}{
		// One allocation, the statusWriter, which must not be shared
		// between requests (see observe).
		{http.StatusOK, 1},
		{http.StatusFound, 1},
		{http.StatusNotFound, 1},
		{http.StatusBadGateway, 1},
		{599, 1},
	}
	for _, tt := range tests {
		responses := newResponses()
		h := observe(statusHandler(tt.status), liveWithAccess(false), responses, logger)
		h.ServeHTTP(w, r) // resolves the counter once
		if got := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, r) }); got > tt.want {
			t.Errorf("status %d: got %v allocations per request; want at most %v", tt.status, got, tt.want)
		}
		if got := testutil.ToFloat64(responses.WithLabelValues(strconv.Itoa(tt.status))); got != 102 {
			t.Errorf("status %d: counter got %v; want 102", tt.status, got)
		}
	}
}

// hijackWriter is a ResponseWriter that can be hijacked, like net/http's.
type hijackWriter struct {
	nopWriter
	conn net.Conn
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

func TestObserveCounts(t *testing.T) {
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string // the code label counted
	}{
		{"nothing written", func(http.ResponseWriter, *http.Request) {}, "200"},
		{"body only", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("x")) }, "200"},
		{"not found", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(404) }, "404"},
		{"early hints, then 200", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusOK)
		}, "200"},
		{"highest cached", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(599) }, "599"},
		// net/http accepts codes up to 999; they are counted uncached.
		{"beyond the cache", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(600) }, "600"},
		{"hijacked", func(w http.ResponseWriter, _ *http.Request) {
			c, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("Hijack: %v", err)
				return
			}
			c.Close()
		}, "101"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			responses := newResponses()
			h := observe(tt.handler, liveWithAccess(false), responses, logger)
			client, server := net.Pipe()
			defer client.Close()
			w := &hijackWriter{nopWriter: nopWriter{h: http.Header{}}, conn: server}
			for range 3 {
				h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
			}
			if got := testutil.CollectAndCount(responses); got != 1 {
				t.Errorf("series: got %d; want 1 (only code %s)", got, tt.want)
			}
			if got := testutil.ToFloat64(responses.WithLabelValues(tt.want)); got != 3 {
				t.Errorf("code %s: got %v; want 3", tt.want, got)
			}
		})
	}
}

// TestObserveConcurrent resolves the same and different codes from many
// goroutines at once; under -race this checks the lazy cache, and the
// counts check that no increment is lost while a code is first resolved.
func TestObserveConcurrent(t *testing.T) {
	responses := newResponses()
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	codes := []int{200, 302, 404, 502, 700}
	const perCode = 200
	h := observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.WriteHeader(code)
	}), liveWithAccess(false), responses, logger)
	var wg sync.WaitGroup
	for _, c := range codes {
		req := httptest.NewRequest("GET", "/?code="+strconv.Itoa(c), nil)
		for range 4 {
			wg.Go(func() {
				w := &nopWriter{h: http.Header{}}
				for range perCode / 4 {
					h.ServeHTTP(w, req)
				}
			})
		}
	}
	wg.Wait()
	for _, c := range codes {
		if got := testutil.ToFloat64(responses.WithLabelValues(strconv.Itoa(c))); got != perCode {
			t.Errorf("code %d: got %v; want %d", c, got, perCode)
		}
	}
}

// TestObserveAccessLog checks that the access line has the status and no
// query string.
func TestObserveAccessLog(t *testing.T) {
	var buf strings.Builder
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	h := observe(statusHandler(http.StatusForbidden), liveWithAccess(true), newResponses(), logger)
	h.ServeHTTP(&nopWriter{h: http.Header{}}, httptest.NewRequest("GET", "/admin?code=123456", nil))
	line := buf.String()
	if !strings.Contains(line, `"status":403`) || !strings.Contains(line, `"path":"/admin"`) {
		t.Errorf("access line: got %s; want status 403 and path /admin", line)
	}
	if strings.Contains(line, "123456") {
		t.Errorf("access line: got %s; want no query string", line)
	}
}

// TestAccessLogCapsUserAgent: a client's 64 KiB User-Agent and a request
// id are logged capped and without control characters (respond.LogText).
func TestAccessLogCapsUserAgent(t *testing.T) {
	var buf strings.Builder
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	h := observe(statusHandler(http.StatusOK), liveWithAccess(true), newResponses(), logger)
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("User-Agent", strings.Repeat("Mozilla\n\x1b", 64<<10/9))
	w := &nopWriter{h: http.Header{"X-Request-Id": {strings.Repeat("id\r\n", 100)}}}
	h.ServeHTTP(w, r)
	var rec struct {
		UA  string `json:"user_agent"`
		RID string `json:"request_id"`
	}
	if err := json.Unmarshal([]byte(buf.String()), &rec); err != nil {
		t.Fatalf("access line %.200q: %v", buf.String(), err)
	}
	if !strings.HasPrefix(rec.UA, "MozillaMozilla") || len(rec.UA) > respond.MaxLoggedUserAgent+len("…") || strings.ContainsAny(rec.UA, "\n\x1b") {
		t.Errorf("user_agent logged as %d bytes %.60q; want at most %d, no control characters", len(rec.UA), rec.UA, respond.MaxLoggedUserAgent+len("…"))
	}
	if len(rec.RID) > respond.MaxLoggedRequestID+len("…") || strings.ContainsAny(rec.RID, "\r\n") {
		t.Errorf("request_id logged as %.60q; want capped, no control characters", rec.RID)
	}
}

func BenchmarkObserve(b *testing.B) {
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := observe(statusHandler(http.StatusOK), liveWithAccess(false), newResponses(), logger)
	w := &nopWriter{h: http.Header{}}
	r := httptest.NewRequest("GET", "/", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// TestAccessPathOnlyPath: the access log names the path part of the target
// only: no query, no user information or host of absolute-form targets.
func TestAccessPathOnlyPath(t *testing.T) {
	for _, tt := range []struct{ uri, want string }{
		{"/x?access_token=s3cret", "/x"},
		{"http://user:s3cret@app.example/x?access_token=s3cret", "/x"},
		{"http://app.example", "/"},
		{"http:user:s3cret@app.example/x?access_token=s3cret", "app.example/x"},
		{"*", "*"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RequestURI = tt.uri
		if got := accessPath(r); got != tt.want {
			t.Errorf("accessPath(%q): got %q; want %q", tt.uri, got, tt.want)
		}
	}
}
