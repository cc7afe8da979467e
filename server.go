package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepgate/stepgate/proxy"
)

// newProxyServer is the proxy listener's server, for serve and demo alike:
// bounded header reads and sizes, the body read bounds of s (read_timeout,
// read_idle_timeout), and no WriteTimeout so that streams and WebSockets
// are not cut (upstream.timeout bounds slow upstreams).
func newProxyServer(h http.Handler, s ServerConfig, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           readIdle(h, s.ReadTimeout, s.ReadIdleTimeout),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       s.ReadTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
		// Without it net/http answers `OPTIONS *` itself with 200; the
		// gate refuses it with 400 like any target that is not origin-form
		// (SPEC §4).
		DisableGeneralOptionsHandler: true,
	}
}

// readIdle cuts a request body that pauses longer than idle between two
// reads (server.read_idle_timeout): before each Read of the body the
// connection's read deadline is moved to now+idle, but never past the
// request's own bound (about total after the handler starts; net/http's
// ReadTimeout counts from the first byte of the request). A slow but
// steady upload is never cut by idle; one that stalls is. Either cut is
// answered 408 with Connection: close (net/http alone would answer 200 to
// a handler that saw the client as gone). Both 0 returns h.
func readIdle(h http.Handler, total, idle time.Duration) http.Handler {
	if idle <= 0 && total <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		b := &idleBody{rc: r.Body, ctl: http.NewResponseController(w), idle: idle}
		if total > 0 {
			b.limit = time.Now().Add(total)
		}
		r.Body = b
		cw := &cutWriter{ResponseWriter: w}
		h.ServeHTTP(cw, r)
		if b.cut.Load() && !cw.wrote {
			// The handler saw the cut as the client going away and wrote
			// nothing; net/http would answer 200 to a request it never
			// read whole.
			w.Header().Set("Connection", "close")
			http.Error(w, "request body timed out", http.StatusRequestTimeout)
		}
	})
}

// cutWriter records whether the handler answered.
type cutWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *cutWriter) WriteHeader(code int) { w.wrote = true; w.ResponseWriter.WriteHeader(code) }
func (w *cutWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush, Hijack and the
// deadlines.
func (w *cutWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// idleBody moves the read deadline before each Read (see readIdle).
type idleBody struct {
	rc    io.ReadCloser
	ctl   *http.ResponseController
	idle  time.Duration
	limit time.Time   // zero: no total bound
	cut   atomic.Bool // a Read hit the deadline
}

func (b *idleBody) Read(p []byte) (int, error) {
	d := b.limit
	if b.idle > 0 {
		if next := time.Now().Add(b.idle); d.IsZero() || next.Before(d) {
			d = next
		}
	}
	// An error means the connection cannot take deadlines (HTTP/2 or a
	// test's recorder); the server's ReadTimeout still bounds it.
	_ = b.ctl.SetReadDeadline(d)
	n, err := b.rc.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		b.cut.Store(true)
		err = fmt.Errorf("%w: %w", proxy.ErrBodyTimeout, err)
	}
	return n, err
}

func (b *idleBody) Close() error { return b.rc.Close() }

// refusedBody and refusedResponse are what a connection beyond
// server.max_connections reads before it is closed.
const refusedBody = "too many open connections\n"

var refusedResponse = "HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Retry-After: 1\r\n" +
	"Connection: close\r\n" +
	"Content-Length: " + strconv.Itoa(len(refusedBody)) + "\r\n" +
	"\r\n" + refusedBody

// Refusal limits: a refused connection gets refuseTimeout to send its
// request and read the 503; at most maxRefusing are answered at once, and
// beyond that further ones are closed without an answer, so a flood of
// connections costs a bounded number of goroutines.
const (
	refuseTimeout = time.Second
	maxRefusing   = 64
)

// limitListener accepts at most max open connections (server.max_connections,
// SPEC §13). Accept keeps accepting beyond it, so the kernel's backlog never
// fills with connections that would hang, but answers each extra one with a
// 503 (after reading what the client sent within refuseTimeout, so that it
// is not reset before it reads the answer) and closes it. Counting is O(1):
// a connection's slot is freed when it is closed, by the server or by a
// handler that hijacked it (WebSockets).
type limitListener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	refusing atomic.Int64
	log      *slog.Logger
	// refused counts refused connections (stepgate_connections_refused_total);
	// nil: not counted.
	refused interface{ Inc() }
	// warned rate-limits the log line to one per minute.
	warned atomic.Int64
}

func newLimitListener(l net.Listener, max int, log *slog.Logger, refused interface{ Inc() }) *limitListener {
	return &limitListener{Listener: l, max: int64(max), log: log, refused: refused}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.refuse(c)
	}
}

// refuse answers c with a 503 and closes it, in the background.
func (l *limitListener) refuse(c net.Conn) {
	if l.refused != nil {
		l.refused.Inc()
	}
	if now := time.Now().Unix(); l.log != nil && l.warned.Load() < now-60 {
		l.warned.Store(now)
		l.log.Warn("server.max_connections reached; refusing new connections with 503", "max_connections", l.max)
	}
	if l.refusing.Add(1) > maxRefusing {
		l.refusing.Add(-1)
		c.Close()
		return
	}
	go func() {
		defer l.refusing.Add(-1)
		defer c.Close()
		// Read (up to 4 KiB, for at most 50 ms) what the client sent
		// first: closing a socket with unread data resets it, and the
		// client could lose the 503. Nothing is written before the read,
		// so only the read needs a deadline here.
		var buf [4096]byte
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = c.Read(buf[:])
		// The 503 and the drain share refuseTimeout.
		_ = c.SetDeadline(time.Now().Add(refuseTimeout))
		_, _ = io.WriteString(c, refusedResponse)
		if tc, ok := c.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
			// Drain until the client closes or the deadline passes, so the
			// close is clean.
			_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
		}
	}()
}

// limitConn frees its slot once, on the first Close.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
