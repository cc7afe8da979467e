package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/stepgate/stepgate/demo"
)

// The demo's policy: one rule per area of the sample app (SPEC §2).
const (
	demoAdminMaxAge   = 10 * time.Minute
	demoPaymentMaxAge = 2 * time.Minute
)

// inboxPath is the dev inbox under the prefix. It exists only in demo mode:
// it shows every code to whoever can reach it.
const inboxPath = "/dev/inbox"

// runDemo runs `stepgate demo` (SPEC §2): the proxy, a sample upstream with
// a demo login and a dev inbox instead of SMTP, with no setup. It reads no
// environment (getenv is unused) so that STEPGATE_* variables meant for
// serve cannot change the demo.
func runDemo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "proxy `address` (loopback only; port 0 picks a free one)")
	adminListen := fs.String("admin-listen", "127.0.0.1:9090", "admin `address` for /metrics, /healthz, /readyz (loopback only)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: stepgate demo [-listen ADDR] [-admin-listen ADDR]")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return ignoreHelp(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo: unexpected arguments %q", fs.Args())
	}
	for _, a := range []struct{ flag, addr string }{{"-listen", *listen}, {"-admin-listen", *adminListen}} {
		if err := checkLoopback(a.addr); err != nil {
			return fmt.Errorf("demo: %s: %w", a.flag, err)
		}
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	return serveDemo(ctx, *listen, *adminListen, logger, stdout, nil)
}

// checkLoopback refuses addresses other machines could reach: the dev
// inbox hands out every code, so the demo stays on this machine.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address; the demo's dev inbox shows every code, so it only listens on this machine", addr)
	}
	return nil
}

// serveDemo runs the sample app, the proxy and the admin server until ctx
// ends. The proxy is built by the same functions as `serve` (a validated
// Config, newSharedParts, buildGate, adminHandler); only the mail sender
// is the dev inbox, and the inbox page is mounted in front of the gate.
// tweak, when not nil, changes the config before it is validated again
// (tests use it for short limits); `stepgate demo` passes nil.
func serveDemo(ctx context.Context, listen, adminListen string, logger *slog.Logger, stdout io.Writer, tweak func(*Config)) error {
	// Fresh secrets per run (crypto/rand): nothing to configure, nothing
	// left behind. The access-token key and the second-factor key differ,
	// as validate requires.
	hmacSecret, sfSecret := randomSecret(), randomSecret()
	// Enrolled authenticator apps live in a SQLite file of this run,
	// removed at the end, under a random key.
	factorDir, err := os.MkdirTemp("", "stepgate-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(factorDir)

	var lc net.ListenConfig
	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	listenOn := func(addr string) (net.Listener, error) {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err == nil {
			listeners = append(listeners, l)
		}
		return l, err
	}
	// Listening first lets the config carry the real ports when port 0
	// was asked for, and makes a port in use fail the start.
	appL, err := listenOn("127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo app: %w", err)
	}
	pl, err := listenOn(listen)
	if err != nil {
		closeAll()
		return fmt.Errorf("demo: -listen: %w", err)
	}
	al, err := listenOn(adminListen)
	if err != nil {
		closeAll()
		return fmt.Errorf("demo: -admin-listen: %w", err)
	}

	cfg, err := demoConfig(pl.Addr().String(), al.Addr().String(), "http://"+appL.Addr().String(), hmacSecret, sfSecret, filepath.Join(factorDir, "factors.db"))
	if err != nil {
		closeAll()
		return fmt.Errorf("demo config: %w", err)
	}
	if tweak != nil {
		tweak(cfg)
		ps := &problems{meta: &cfg.meta}
		cfg.validate(ps)
		if err := ps.err(); err != nil {
			closeAll()
			return fmt.Errorf("demo config: %w", err)
		}
	}
	app, err := demo.NewApp(demo.AppConfig{
		HMACSecret: []byte(hmacSecret),
		Cookie:     cfg.Identity.JWT.Cookie,
		Prefix:     cfg.Server.Prefix,
		Logger:     logger,
	})
	if err != nil {
		closeAll()
		return err
	}
	inbox, err := demo.NewInbox(0, cfg.Server.Prefix, logger)
	if err != nil {
		closeAll()
		return fmt.Errorf("demo inbox: %w", err)
	}

	// The dev inbox is the sender: the demo config says mail.driver "log"
	// (validate knows no inbox driver), and newSharedParts uses the inbox
	// instead of building that sender.
	shared, err := newSharedParts(cfg, logger, inbox)
	if err != nil {
		closeAll()
		return err
	}
	defer shared.Close()
	gate, err := buildGate(cfg, shared)
	if err != nil {
		closeAll()
		return err
	}
	live := &liveGate{}
	live.store(cfg, gate)
	// The config in force was loaded now, as in serve.
	shared.reloadMetrics.LastSuccess.SetToCurrentTime()

	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	// The sample app is an upstream, not stepgate: it gets plain server
	// limits. The proxy and admin servers are exactly serve's.
	appSrv := &http.Server{
		Handler:           app,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      time.Minute,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
	}
	servers := []*http.Server{
		appSrv,
		newProxyServer(observe(withInbox(withInbox(live, cfg.Server.Prefix+totpCodesPath, totpCodes(shared.factorStore, shared.keyring, cfg.Factors.TOTP.Skew, cfg.Server.Prefix)), cfg.Server.Prefix+inboxPath, inbox), live, shared.responses, logger), cfg.Server, errLog),
		newAdminServer(adminHandler(shared, live), errLog),
	}

	logger.Info("stepgate demo started",
		"version", version,
		"listen", pl.Addr().String(),
		"admin_listen", al.Addr().String(),
		"upstream", cfg.Upstream.URL,
		"rules", cfg.policy.Len(),
		"store", cfg.Store.Driver,
		"mail", "dev inbox",
	)
	printTour(stdout, "http://"+pl.Addr().String(), "http://"+al.Addr().String(), cfg.Server.Prefix)

	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() { errc <- s.Serve(listeners[i]) }()
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	logger.Info("stepgate demo stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	// The proxy first, so no request reaches a stopped app.
	for _, i := range []int{1, 2, 0} {
		errs = append(errs, servers[i].Shutdown(sctx))
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("demo: %w", serveErr)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("demo shutdown: %w", err)
	}
	return nil
}

// withInbox serves exactly path with the dev inbox and everything else
// with next. The gate answers the whole prefix itself (SPEC §6), so the
// inbox must be picked off before it; any other spelling of the path falls
// through to the gate, which knows no such page.
func withInbox(next http.Handler, path string, inbox http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path && r.URL.RawPath == "" {
			inbox.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// demoConfig builds the demo's Config the way loadConfig builds one from a
// file: the SPEC §3 defaults, the demo's values on top, then the same
// derived defaults and validation (policy compiled, policy tests run).
func demoConfig(listen, adminListen, upstream, hmacSecret, sfSecret, factorDB string) (*Config, error) {
	cfg, err := defaultConfig("(demo)")
	if err != nil {
		return nil, err
	}
	cfg.Server.Listen = listen
	cfg.Server.AdminListen = adminListen
	cfg.Server.PublicURL = "http://" + listen
	cfg.Upstream.URL = upstream
	cfg.Upstream.Timeout = 10 * time.Second
	cfg.Identity.Source = "jwt"
	cfg.Identity.LoginURL = "/login?rd={rd}"
	cfg.Identity.JWT.Algorithms = []string{"HS256"}
	cfg.Identity.JWT.HMACSecret = hmacSecret
	cfg.SecondFactor.Secret = sfSecret
	// The dev inbox is the sender (see serveDemo).
	cfg.Mail.Driver = "log"
	cfg.Mail.From = "stepgate demo <no-reply@stepgate.invalid>"
	cfg.Mail.Subject = "Your stepgate demo code"
	cfg.UI.AppName = "Acme Legacy Portal"
	cfg.Store.Driver = "memory"
	cfg.Factors.Enabled = []string{"totp", "email"}
	if pk := demoPasskeyURL(listen); pk != "" {
		// Browsers allow passkeys on http://localhost but never on an IP
		// address: the public URL (the passkeys' origin and RP ID) names
		// localhost; the demo still answers on 127.0.0.1 for the rest.
		cfg.Server.PublicURL = pk
		cfg.Factors.Enabled = []string{"passkey", "totp", "email"}
	}
	cfg.Factors.Driver = "sqlite"
	cfg.Factors.SQLite.Path = factorDB
	cfg.Factors.EncryptionKey = randomSecret()
	cfg.Factors.TOTP.Issuer = "stepgate demo"
	cfg.Policies = PoliciesConfig{
		Default: "authenticate",
		Rules: []RuleConfig{
			{Name: "home", Paths: []string{"/"}, Action: "allow"},
			{Name: "login", Paths: []string{"/login", "/logout", "/assets/**", "/favicon.ico"}, Action: "allow"},
			{Name: "public", Paths: []string{"/public/**"}, Action: "allow"},
			{Name: "account", Paths: []string{"/account/**"}, Action: "authenticate"},
			{Name: "admin", Paths: []string{"/admin/**"}, Action: "step_up", MaxAge: demoAdminMaxAge},
			{Name: "payments", Paths: []string{"/payments/**"}, Methods: []string{"GET", "POST"}, Action: "step_up", MaxAge: demoPaymentMaxAge},
			{Name: "vault", Paths: []string{"/vault/**"}, Action: "step_up", MaxAge: demoAdminMaxAge, Factors: []string{"totp"}},
		},
		Tests: []TestConfig{
			{Request: "GET http://127.0.0.1/", Expect: "allow", Rule: "home"},
			{Request: "GET http://127.0.0.1/public/docs", Expect: "allow", Rule: "public"},
			{Request: "GET http://127.0.0.1/account", Expect: "authenticate", Rule: "account"},
			{Request: "GET http://127.0.0.1/admin/users", Expect: "step_up", Rule: "admin"},
			{Request: "POST http://127.0.0.1/payments", Expect: "step_up", Rule: "payments"},
			{Request: "GET http://127.0.0.1/vault", Expect: "step_up", Rule: "vault"},
			{Request: "GET http://127.0.0.1/elsewhere", Expect: "authenticate"},
		},
	}
	if err := cfg.finish(&problems{meta: &cfg.meta}); err != nil {
		return nil, err
	}
	return cfg, nil
}

// randomSecret is 256 bits from crypto/rand, hex-encoded.
func randomSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}

// printTour prints where the demo runs and a short walk through it.
func printTour(w io.Writer, base, admin, prefix string) {
	fmt.Fprintf(w, `stepgate demo is running on %[1]s/
(admin endpoints: %[2]s/metrics, /healthz, /readyz)

A three-minute tour:
  1. Open %[1]s/
     A pretend legacy app, with stepgate in front of it.
  2. Public is open to everyone; Account asks you to sign in:
     click "Sign in as demo" (user demo, two email addresses).
  3. Open Admin: stepgate asks for a second factor.
     Pick an address and send a code.
  4. Read the code in the dev inbox, %[1]s%[3]s%[4]s
     and type it in.
  5. The admin page opens and lists the X-Stepup-* headers the app got.
  6. Payments wants a code no older than 2 minutes; %[1]s%[3]s/
     shows your step-up status and drops the second factor on request.
  7. Vault accepts only an authenticator app (factors: [totp]). Add one at
     %[1]s%[3]s/factors: scan the QR code with your phone, or use the
     demo-only code page %[1]s%[3]s%[5]s instead of a phone.
%[6]s
Secrets are random for this run, state lives in memory, and mail never
leaves this process. The dev inbox and the code page exist only in demo mode.
Press Ctrl+C to stop.
`, base, admin, prefix, inboxPath, totpCodesPath, passkeyTour(base, prefix))
}

// demoPasskeyURL is the demo's public URL with passkeys: localhost on the
// port of listen when listen is 127.0.0.1 or localhost (which localhost
// reaches), else "" (no passkeys: [::1] or 127.0.0.2 are not localhost
// to every browser).
func demoPasskeyURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || (host != "127.0.0.1" && host != "localhost") {
		return ""
	}
	return "http://localhost:" + port
}

// passkeyTour is the tour's passkey step, when the demo has passkeys.
func passkeyTour(base, prefix string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	pk := demoPasskeyURL(u.Host)
	if pk == "" {
		return ""
	}
	return fmt.Sprintf(`  8. Passkeys work on localhost only (browsers refuse them on 127.0.0.1):
     open %[1]s%[2]s/factors/passkey, sign in again, confirm with a code,
     and create a passkey with this computer's screen lock, a phone or a
     security key. Admin then offers "Use a passkey" first.
`, pk, prefix)
}
