package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server limits (SPEC §10: no slowloris, no unbounded reads).
const (
	// readHeaderTimeout bounds how long a client may take to send headers.
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds reading a whole request on the demo's sample
	// app; the proxy port takes server.read_timeout (default the same)
	// and server.read_idle_timeout. Hijacked WebSocket connections are
	// not affected (net/http clears the deadlines on Hijack).
	readTimeout = 60 * time.Second
	// idleTimeout closes idle keep-alive connections.
	idleTimeout = 120 * time.Second
	// maxHeaderBytes bounds request headers.
	maxHeaderBytes = 64 << 10
	// The proxy server has no WriteTimeout: responses may stream for long
	// (SSE, downloads, WebSockets, SPEC §7), and a write deadline would cut
	// them mid-way. Slow upstreams are bounded by upstream.timeout up to
	// their response headers; slow readers only hold their own connection.

)

// liveGate serves through the current gate; a reload swaps it atomically,
// so a request sees one whole config, old or new, never a mix.
type liveGate struct {
	cur atomic.Pointer[gateState]
	// draining is set on SIGTERM: /readyz fails from then on while the
	// listeners keep serving for server.shutdown_delay (SPEC §13).
	draining atomic.Bool
}

// gateState is one loaded config and the handler built from it.
type gateState struct {
	cfg     *Config
	handler http.Handler
}

func (l *liveGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := l.cur.Load()
	if s == nil {
		// Deny on doubt: nothing is forwarded before a config is loaded.
		http.Error(w, "stepgate is starting", http.StatusServiceUnavailable)
		return
	}
	s.handler.ServeHTTP(w, r)
}

// store swaps in a new config and handler.
func (l *liveGate) store(cfg *Config, h http.Handler) {
	// The file's line records only locate problems found at load; a
	// config in service never reports one again, so they are not kept
	// (about 360 KB for a 1,000-rule policy).
	cfg.meta.lines = nil
	l.cur.Store(&gateState{cfg: cfg, handler: h})
}

// adminHandler serves /metrics, /healthz and /readyz (SPEC §6, §10), on
// the admin listener only.
func adminHandler(shared *sharedParts, live *liveGate) http.Handler {
	up := &probe{log: shared.logger}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(shared.registry, promhttp.HandlerOpts{
		Registry:          shared.registry,
		EnableOpenMetrics: true,
		Timeout:           10 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", readyz(shared, live, up))
	mux.HandleFunc("GET /{$}", adminIndex)
	return mux
}

// adminIndexText is what the admin listener's / answers: its endpoints,
// so that a person who opens the port in a browser is not left with a 404.
const adminIndexText = `stepgate admin endpoints:

  /metrics   Prometheus metrics (OpenMetrics when asked)
  /healthz   liveness: 200 while the process serves
  /readyz    readiness: 200 when the config, the store and the upstream answer

The proxy itself listens on server.listen; see README "Operations".
`

func adminIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, adminIndexText)
}

// runServe is `stepgate serve`.
func runServe(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs, path := newFlagSet("serve", "serve -config FILE", stderr)
	if err := configFlag(fs, args, path); err != nil {
		return ignoreHelp(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	cfg, err := loadConfig(*path, getenv)
	if err != nil {
		return err
	}
	logger, level := newLogger(cfg.Log, stderr)
	logWarnings(logger, cfg)

	// SIGHUP reloads the config (SPEC §10). Signals arriving during a
	// reload are folded into one more reload.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	trigger := make(chan struct{}, 1)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			select {
			case <-sctx.Done():
				return
			case <-hup:
				select {
				case trigger <- struct{}{}:
				default:
				}
			}
		}
	}()
	return serveWith(sctx, serveOptions{
		cfg: cfg, path: *path, getenv: getenv, logger: logger, level: level, reload: trigger,
	})
}

// logWarnings logs what check would print as warnings: a config that
// works but is probably not what its author meant.
func logWarnings(logger *slog.Logger, cfg *Config) {
	for _, w := range cfg.warnings {
		logger.Warn("config warning", "warning", w.String())
	}
}

// serveOptions is what serveWith runs.
type serveOptions struct {
	cfg *Config // from loadConfig; required
	// path is the file cfg came from; reloads read it again. "" turns
	// reloading off.
	path   string
	getenv func(string) string // for reloads; nil means no environment
	logger *slog.Logger        // required
	// level is logger's level, set from log.level on reload; nil means the
	// level does not change.
	level *slog.LevelVar
	// reload triggers a forced reload on each receive (SIGHUP); nil means
	// only file changes reload.
	reload <-chan struct{}
}

// serveWith runs the proxy and admin servers until ctx ends (SIGTERM or
// SIGINT in main), reloading on file changes and o.reload; then /readyz
// fails, both keep serving for server.shutdown_delay, stop accepting, let
// in-flight requests finish for server.shutdown_grace, close the store and
// return nil.
func serveWith(ctx context.Context, o serveOptions) error {
	cfg, logger := o.cfg, o.logger
	if o.getenv == nil {
		o.getenv = func(string) string { return "" }
	}
	shared, err := newSharedParts(cfg, logger, nil)
	if err != nil {
		return err
	}
	defer shared.Close()
	h, err := buildGate(cfg, shared)
	if err != nil {
		return err
	}
	live := &liveGate{}
	live.store(cfg, h)
	applyRuntime(cfg)
	shared.reloadMetrics.LastSuccess.SetToCurrentTime()

	// Listening before logging "started" makes the line true, and lets a
	// port already in use fail the start instead of a goroutine.
	var lc net.ListenConfig
	pl, err := lc.Listen(ctx, "tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("server.listen: %w", err)
	}
	al, err := lc.Listen(ctx, "tcp", cfg.Server.AdminListen)
	if err != nil {
		pl.Close()
		return fmt.Errorf("server.admin_listen: %w", err)
	}
	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	proxySrv := newProxyServer(observe(live, live, shared.responses, logger), cfg.Server, errLog)
	refused := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stepgate_connections_refused_total",
		Help: "Connections to the proxy port answered 503 and closed because server.max_connections were open.",
	})
	shared.registry.MustRegister(refused)
	pl = newLimitListener(pl, cfg.Server.MaxConnections, logger, refused)
	adminSrv := newAdminServer(adminHandler(shared, live), errLog)
	// The watch is set up before "started" is logged: an edit made after
	// that line is seen (see reloader.watch).
	var rl *reloader
	if o.path != "" {
		rl = &reloader{
			path: o.path, getenv: o.getenv, shared: shared, live: live,
			level: o.level, log: logger, metrics: shared.reloadMetrics,
		}
		rl.watch()
	}
	logger.Info("stepgate started",
		"version", version,
		"listen", pl.Addr().String(),
		"admin_listen", al.Addr().String(),
		"rules", cfg.policy.Len(),
		"store", cfg.Store.Driver,
		"mail", cfg.Mail.Driver,
		"upstream", cfg.Upstream.URL,
		"memory_limit", memoryLimitText(debug.SetMemoryLimit(-1)),
		"config", o.path,
	)

	errc := make(chan error, 2)
	go func() { errc <- proxySrv.Serve(pl) }()
	go func() { errc <- adminSrv.Serve(al) }()

	var reloads sync.WaitGroup
	rctx, stopReloads := context.WithCancel(ctx)
	defer stopReloads()
	if rl != nil {
		reloads.Go(func() { rl.run(rctx, o.reload) })
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	stopReloads()
	reloads.Wait()

	// The delay and grace period are the serving config's: they may have
	// been reloaded. Readiness fails at once; the listeners keep serving
	// for the delay, so that a load balancer following /readyz stops
	// sending new connections before they are refused (SPEC §13).
	live.draining.Store(true)
	sc := live.cur.Load().cfg.Server
	grace, delay := sc.ShutdownGrace, sc.ShutdownDelay
	logger.Info("stepgate stopping", "delay", delay.String(), "grace", grace.String())
	if delay > 0 && serveErr == nil {
		t := time.NewTimer(delay)
		<-t.C
		logger.Info("shutdown delay over; no longer accepting connections", "grace", grace.String())
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// Both stop accepting at once and drain.
	var wg sync.WaitGroup
	var proxyErr, adminErr error
	wg.Go(func() { proxyErr = proxySrv.Shutdown(sctx) })
	wg.Go(func() { adminErr = adminSrv.Shutdown(sctx) })
	wg.Wait()
	if errors.Is(proxyErr, context.DeadlineExceeded) || errors.Is(adminErr, context.DeadlineExceeded) {
		// Requests still running after the grace period are cut; that is
		// the promise of shutdown_grace, not a failure.
		logger.Warn("grace period over; closing the remaining connections", "grace", grace.String())
		proxySrv.Close()
		adminSrv.Close()
		proxyErr, adminErr = nil, nil
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	if err := errors.Join(proxyErr, adminErr); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stepgate stopped")
	return nil
}

// newAdminServer is the admin listener's server: small requests, short
// timeouts.
func newAdminServer(h http.Handler, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          errLog,
	}
}
