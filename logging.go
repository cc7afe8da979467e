package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stepgate/stepgate/respond"
)

// parseLevel reads log.level.
func parseLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown level %q (debug, info, warn or error)", s)
}

// newLogger builds the process's logger from cfg (which validate checked).
// The level lives in the returned LevelVar so that a reload can change it;
// the format cannot change without a restart.
func newLogger(cfg LogConfig, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	if l, err := parseLevel(cfg.Level); err == nil {
		level.Set(l)
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), level
	}
	return slog.New(slog.NewJSONHandler(w, opts)), level
}

// observe wraps the proxy's handler: it counts every response by status
// code (stepgate_http_responses_total, which the upstream-error alerts
// use) and, when the live config has log.access, writes one access line.
// The access line never carries the query string, cookies or tokens.
//
// Per request it allocates only the statusWriter. That one is not pooled:
// a pooled writer that a handler kept past ServeHTTP (a leaked goroutine,
// a future middleware) would write into another user's response, and one
// small allocation is not worth that risk.
func observe(next http.Handler, live *liveGate, responses *prometheus.CounterVec, logger *slog.Logger) http.Handler {
	counters := newStatusCounters(responses)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		status := sw.status
		switch {
		case sw.hijacked && status == 0:
			// The ReverseProxy writes 101 on the hijacked connection itself.
			status = http.StatusSwitchingProtocols
		case status == 0:
			status = http.StatusOK
		}
		counters.inc(status)
		if s := live.cur.Load(); s == nil || !s.cfg.Log.Access {
			return
		}
		logger.LogAttrs(r.Context(), slog.LevelInfo, "access",
			slog.String("request_id", respond.LogText(w.Header().Get("X-Request-Id"), respond.MaxLoggedRequestID)),
			slog.String("method", r.Method),
			slog.String("path", accessPath(r)),
			slog.Int("status", status),
			slog.Int64("bytes", sw.bytes),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.String("client", clientHost(r.RemoteAddr)),
			slog.String("user_agent", respond.LogText(r.UserAgent(), respond.MaxLoggedUserAgent)),
		)
	})
}

// Statuses statusCounters caches: every code net/http's WriteHeader accepts
// short of the rare 600-999.
const (
	minCachedStatus = 100
	maxCachedStatus = 599
)

// statusCounters is a CounterVec by status code whose children are looked
// up once per code, so the request path does no hashing and no strconv
// allocation. Children are resolved on first use rather than up front, so
// /metrics shows only the codes that occurred, as before.
type statusCounters struct {
	vec *prometheus.CounterVec
	// byStatus[code-minCachedStatus] is the code's counter; nil until the
	// code is first seen. Two requests resolving one code at once both get
	// the same child from the CounterVec, so either store is right.
	byStatus [maxCachedStatus - minCachedStatus + 1]atomic.Pointer[counter]
}

// counter boxes a prometheus.Counter (an interface) for atomic.Pointer.
type counter struct{ prometheus.Counter }

func newStatusCounters(vec *prometheus.CounterVec) *statusCounters {
	return &statusCounters{vec: vec}
}

func (c *statusCounters) inc(status int) {
	if status < minCachedStatus || status > maxCachedStatus {
		c.vec.WithLabelValues(strconv.Itoa(status)).Inc()
		return
	}
	slot := &c.byStatus[status-minCachedStatus]
	ctr := slot.Load()
	if ctr == nil {
		ctr = &counter{c.vec.WithLabelValues(strconv.Itoa(status))}
		slot.Store(ctr)
	}
	ctr.Inc()
}

// accessPath is the path part of the request target, which is all the
// access log may show: never the query, which may carry secrets
// (access_token=...), nor the user information or host of an
// absolute-form target ("http://user:pass@host/x" is logged as "/x").
func accessPath(r *http.Request) string {
	p := r.RequestURI
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if !strings.HasPrefix(p, "/") {
		if _, rest, ok := strings.Cut(p, "://"); ok {
			p = "/"
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				p = rest[i:]
			}
		} else if i := strings.LastIndexByte(p, '@'); i >= 0 {
			p = p[i+1:] // rootless "http:user:pass@host/x"
		}
	}
	const max = 512
	if len(p) > max {
		p = p[:max] + "…"
	}
	return p
}

// clientHost drops the port from a RemoteAddr.
func clientHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// statusWriter records the status and size of a response. It unwraps for
// http.ResponseController, so flushing (streams, SSE) keeps working, and
// it hijacks itself to note WebSocket upgrades.
type statusWriter struct {
	http.ResponseWriter
	status   int
	bytes    int64
	hijacked bool
}

func (w *statusWriter) WriteHeader(code int) {
	// Only the final status counts: 1xx responses may precede it.
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Hijack is http.Hijacker, for WebSocket upgrades (SPEC §7).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach Flush and the deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
