package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Health checks of the admin listener (SPEC §6, §10).
const (
	// probeEvery is how long an upstream probe's result is reused: however
	// often /readyz is asked (every replica, every kubelet, every
	// load-balancer), the upstream sees at most one dial per interval.
	probeEvery = 5 * time.Second
	// probeTimeout bounds one upstream dial.
	probeTimeout = 2 * time.Second
	// storeTimeout bounds the store ping of one /readyz.
	storeTimeout = 2 * time.Second
)

// probe checks that the upstream accepts TCP connections. A TCP
// dial rather than an HTTP request: it needs no knowledge of the app's
// routes, leaves nothing in its access log, and cannot be answered by a
// policy. Results are cached for every; callers that arrive during a probe
// wait for it instead of dialling too (no stampede).
type probe struct {
	// dial connects; nil means a net.Dialer.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// now is the clock; nil means time.Now.
	now func() time.Time
	// every is how long a result is reused; zero means probeEvery.
	every time.Duration
	// log receives a line when the result changes; nil means none.
	log *slog.Logger

	mu      sync.Mutex // held during a probe, so concurrent callers share it
	addr    string     // address of the cached result
	at      time.Time  // when the cached result was taken
	lastErr error
	probed  bool
}

// check returns the cached result for addr, probing first when it is older
// than every or for another address (upstream.url changed on reload).
func (p *probe) check(ctx context.Context, addr string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock()
	every := p.every
	if every == 0 {
		every = probeEvery
	}
	if p.probed && p.addr == addr && now.Sub(p.at) < every && !now.Before(p.at) {
		return p.lastErr
	}
	dial := p.dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, err := dial(dctx, "tcp", addr)
	if err == nil {
		conn.Close()
	}
	if ctx.Err() != nil {
		// The asker went away: its cancellation says nothing about the
		// upstream, so nothing is cached.
		return ctx.Err()
	}
	changed := !p.probed || (p.lastErr == nil) != (err == nil) || p.addr != addr
	p.addr, p.at, p.lastErr, p.probed = addr, p.clock(), err, true
	if changed && p.log != nil {
		if err != nil {
			p.log.Warn("upstream unreachable", "addr", addr, "err", err)
		} else {
			p.log.Info("upstream reachable", "addr", addr)
		}
	}
	return err
}

func (p *probe) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

// upstreamAddr is host:port of an upstream URL, with the scheme's port
// when none is given.
func upstreamAddr(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", errors.New("no host")
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// healthz answers while the process serves HTTP at all (liveness): it
// checks nothing else, so that a store or upstream outage never gets
// every replica restarted.
func healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "ok\n")
}

// readyz answers 200 when a config is loaded, the store answers a ping and
// the upstream accepts connections (readiness); otherwise 503 naming the
// failed check. Causes go to the log, never to whoever asks.
func readyz(shared *sharedParts, live *liveGate, up *probe) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		s := live.cur.Load()
		if s == nil {
			http.Error(w, "config not loaded", http.StatusServiceUnavailable)
			return
		}
		if live.draining.Load() {
			// SIGTERM: take this instance out of rotation while it still
			// serves (server.shutdown_delay).
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
		defer cancel()
		if err := shared.store.Ping(ctx); err != nil {
			shared.logger.Warn("readyz: store unreachable", "err", err)
			http.Error(w, "store unreachable", http.StatusServiceUnavailable)
			return
		}
		if shared.factorStore != nil {
			if err := shared.factorStore.Ping(ctx); err != nil {
				shared.logger.Warn("readyz: factor store unreachable", "err", err)
				http.Error(w, "factor store unreachable", http.StatusServiceUnavailable)
				return
			}
		}
		addr, err := upstreamAddr(s.cfg.Upstream.URL)
		if err == nil {
			err = up.check(r.Context(), addr)
		}
		if err != nil {
			// probe logs the cause once per change, not once per ask.
			http.Error(w, "upstream unreachable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	}
}
