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
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stepgate/stepgate/challenge"
	"github.com/stepgate/stepgate/challenge/redisstore"
	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/proxy"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/templates"
)

// Server limits (SPEC §10: no slowloris, no unbounded reads).
const (
	// readHeaderTimeout bounds how long a client may take to send headers.
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds reading a whole request, body included. Uploads
	// slower than this are cut; hijacked WebSocket connections are not
	// affected (net/http clears the deadlines on Hijack).
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

// sharedParts is what outlives a config reload: pooled upstream connections,
// the challenge store (pending codes, counters), metrics, the mail sender
// and the logger. A change to the keys that built them (upstream.timeout,
// store.*, mail.*) needs a restart.
type sharedParts struct {
	logger           *slog.Logger
	registry         *prometheus.Registry
	transport        *http.Transport
	store            challenge.Store
	sender           challenge.Sender
	proxyMetrics     *proxy.Metrics
	challengeMetrics *challenge.Metrics
	reloadMetrics    *reloadMetrics
	// responses counts the proxy port's responses by status code.
	responses *prometheus.CounterVec
}

// newSharedParts builds the long-lived parts from cfg.
func newSharedParts(cfg *Config, logger *slog.Logger) (*sharedParts, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stepgate_build_info",
		Help: "Build information; always 1.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	reg.MustRegister(buildInfo)
	responses := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stepgate_http_responses_total",
		Help: "Responses on the proxy port by status code, stepgate's own (400, 401, 403, 502, 504) and the upstream's.",
	}, []string{"code"})
	reg.MustRegister(responses)

	sender, err := newSender(cfg, logger)
	if err != nil {
		return nil, err
	}
	store, err := newStore(cfg)
	if err != nil {
		return nil, err
	}
	return &sharedParts{
		logger:           logger,
		registry:         reg,
		transport:        proxy.NewTransport(cfg.Upstream.Timeout),
		store:            store,
		sender:           sender,
		proxyMetrics:     proxy.NewMetrics(reg),
		challengeMetrics: challenge.NewMetrics(reg),
		reloadMetrics:    newReloadMetrics(reg),
		responses:        responses,
	}, nil
}

func newSender(cfg *Config, logger *slog.Logger) (challenge.Sender, error) {
	m := cfg.Mail
	switch m.Driver {
	case "smtp":
		s, err := challenge.NewSMTPSender(challenge.SMTPConfig{
			Host: m.SMTP.Host, Port: m.SMTP.Port, Username: m.SMTP.Username,
			Password: m.SMTP.Password, TLS: m.SMTP.TLS, From: m.From,
		})
		if err != nil {
			return nil, fmt.Errorf("mail.smtp: %w", err)
		}
		return s, nil
	case "file":
		s, err := challenge.NewFileSender(m.File.Dir, m.From)
		if err != nil {
			return nil, fmt.Errorf("mail.file: %w", err)
		}
		return s, nil
	case "log":
		return challenge.NewLogSender(logger, m.From), nil
	}
	return nil, fmt.Errorf("mail.driver: unknown driver %q", m.Driver)
}

func newStore(cfg *Config) (challenge.Store, error) {
	switch cfg.Store.Driver {
	case "memory":
		return challenge.NewMemoryStore(0), nil
	case "redis":
		r := cfg.Store.Redis
		tlsConfig, err := cfg.redisTLS()
		if err != nil {
			return nil, fmt.Errorf("store.redis: %w", err)
		}
		s, err := redisstore.New(redisstore.Options{
			Addr: r.Addr, Password: r.Password, DB: r.DB, KeyPrefix: r.KeyPrefix,
			TLS: tlsConfig, Timeout: r.Timeout, PoolSize: r.PoolSize,
		})
		if err != nil {
			return nil, fmt.Errorf("store.redis: %w", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("store.driver: unknown driver %q", cfg.Store.Driver)
}

// buildGate builds the request handler for cfg, which must come from
// loadConfig (validated, policy compiled). It has no side effects, so a
// reload can build a candidate and drop it on error.
func buildGate(cfg *Config, shared *sharedParts) (http.Handler, error) {
	if cfg.policy == nil {
		return nil, errors.New("config not validated")
	}
	ic, err := cfg.identityConfig()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	auth, err := identity.New(ic)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	prev := make([][]byte, len(cfg.SecondFactor.PreviousSecrets))
	for i, s := range cfg.SecondFactor.PreviousSecrets {
		prev[i] = []byte(s)
	}
	secure := strings.HasPrefix(strings.ToLower(cfg.Server.PublicURL), "https://")
	ch, err := challenge.New(challenge.Config{
		Secret:          []byte(cfg.SecondFactor.Secret),
		PreviousSecrets: prev,
		CookieName:      cfg.SecondFactor.Cookie,
		HeaderName:      cfg.SecondFactor.Header,
		TokenTTL:        cfg.SecondFactor.TTL,
		SecureCookie:    secure,
		OTP: challenge.OTPConfig{
			Length:             cfg.OTP.Length,
			TTL:                cfg.OTP.TTL,
			MaxAttempts:        cfg.OTP.MaxAttempts,
			ResendAfter:        cfg.OTP.ResendAfter,
			MaxSendsPerHour:    cfg.OTP.MaxSendsPerHour,
			MaxFailuresPerHour: cfg.OTP.MaxFailuresPerHour,
			Lockout:            cfg.OTP.Lockout,
		},
		MailSubject:  cfg.Mail.Subject,
		Sender:       shared.sender,
		Store:        shared.store,
		Prefix:       cfg.Server.Prefix,
		Authenticate: auth.Authenticate,
		LoginURL:     cfg.Identity.LoginURL,
		Metrics:      shared.challengeMetrics,
		Logger:       shared.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("second factor: %w", err)
	}
	pages, err := respond.ParsePages(templates.FS, cfg.Server.Prefix, shared.logger)
	if err != nil {
		return nil, fmt.Errorf("pages: %w", err)
	}
	upstream, err := url.Parse(cfg.Upstream.URL)
	if err != nil {
		return nil, fmt.Errorf("upstream.url: %w", err)
	}
	trusted, _, err := parsePrefixes(cfg.Server.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("server.trusted_proxies: %w", err)
	}
	g, err := proxy.New(proxy.Config{
		Policy:          cfg.policy,
		Upstream:        upstream,
		Transport:       shared.transport,
		UpstreamTimeout: cfg.Upstream.Timeout,
		Prefix:          cfg.Server.Prefix,
		TrustedProxies:  trusted,
		Identity:        auth,
		Challenge:       ch,
		LoginURL:        cfg.Identity.LoginURL,
		Pages:           pages,
		Metrics:         shared.proxyMetrics,
		Logger:          shared.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return g, nil
}

// liveGate serves through the current gate; a reload swaps it atomically,
// so a request sees one whole config, old or new, never a mix.
type liveGate struct {
	cur atomic.Pointer[gateState]
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
	return mux
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
// SIGINT in main), reloading on file changes and o.reload; then it stops
// accepting, lets in-flight requests finish for server.shutdown_grace,
// closes the store and returns nil.
func serveWith(ctx context.Context, o serveOptions) error {
	cfg, logger := o.cfg, o.logger
	if o.getenv == nil {
		o.getenv = func(string) string { return "" }
	}
	shared, err := newSharedParts(cfg, logger)
	if err != nil {
		return err
	}
	defer shared.store.Close()
	h, err := buildGate(cfg, shared)
	if err != nil {
		return err
	}
	live := &liveGate{}
	live.store(cfg, h)
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
	proxySrv := newProxyServer(observe(live, live, shared.responses, logger), errLog)
	adminSrv := newAdminServer(adminHandler(shared, live), errLog)
	logger.Info("stepgate started",
		"version", version,
		"listen", pl.Addr().String(),
		"admin_listen", al.Addr().String(),
		"rules", cfg.policy.Len(),
		"store", cfg.Store.Driver,
		"mail", cfg.Mail.Driver,
		"upstream", cfg.Upstream.URL,
		"config", o.path,
	)

	errc := make(chan error, 2)
	go func() { errc <- proxySrv.Serve(pl) }()
	go func() { errc <- adminSrv.Serve(al) }()

	var reloads sync.WaitGroup
	rctx, stopReloads := context.WithCancel(ctx)
	defer stopReloads()
	if o.path != "" {
		rl := &reloader{
			path: o.path, getenv: o.getenv, shared: shared, live: live,
			level: o.level, log: logger, metrics: shared.reloadMetrics,
		}
		rl.remember()
		reloads.Go(func() { rl.run(rctx, o.reload) })
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	stopReloads()
	reloads.Wait()

	// The grace period is the serving config's: it may have been reloaded.
	grace := live.cur.Load().cfg.Server.ShutdownGrace
	logger.Info("stepgate stopping", "grace", grace.String())
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// The admin server stops first so that readiness fails while the
	// proxy drains; both stop accepting at once.
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

// newProxyServer is the proxy listener's server, for serve and demo alike:
// bounded header reads and sizes, and no WriteTimeout so that streams and
// WebSockets are not cut (upstream.timeout bounds slow upstreams).
func newProxyServer(h http.Handler, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
		// Without it net/http answers `OPTIONS *` itself with 200; the
		// gate refuses it with 400 like any target that is not origin-form
		// (SPEC §4).
		DisableGeneralOptionsHandler: true,
	}
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
