package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stepgate/stepgate/challenge"
	"github.com/stepgate/stepgate/challenge/mailer"
	"github.com/stepgate/stepgate/challenge/redisstore"
	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/passkey"
	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/policy"
	"github.com/stepgate/stepgate/proxy"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/secondfactor"
	"github.com/stepgate/stepgate/templates"
)

// This file is every conversion of a Config into the packages' own
// configs, loggers included: serve, reload, health and demo only call it.

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
	// verifyShed counts token verifications shed by the verification
	// budget (identity.jwt.verify_concurrency, verify_wait).
	verifyShed prometheus.Counter
	// factorStore keeps enrolled factors; nil when no stored method
	// (totp) is enabled. keyring seals their secrets.
	factorStore factors.Store
	keyring     *factors.Keyring
	// passkeys is the WebAuthn relying party; nil when passkey is not in
	// factors.enabled. It keeps its challenges in store.
	passkeys *passkey.RP
}

// Close releases the stores.
func (s *sharedParts) Close() {
	s.store.Close()
	if s.factorStore != nil {
		s.factorStore.Close()
	}
}

// newSharedParts builds the long-lived parts from cfg. A non-nil sender
// replaces the one mail.* names (the demo's dev inbox); nil builds that one.
func newSharedParts(cfg *Config, logger *slog.Logger, sender challenge.Sender) (*sharedParts, error) {
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
	verifyShed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stepgate_token_verifications_shed_total",
		Help: "Access-token signature checks refused because identity.jwt.verify_concurrency checks were running for longer than identity.jwt.verify_wait (answered 503 with Retry-After).",
	})
	reg.MustRegister(verifyShed)

	if sender == nil {
		var err error
		if sender, err = newSender(cfg, logger); err != nil {
			return nil, err
		}
	}
	store, err := newStore(cfg)
	if err != nil {
		return nil, err
	}
	factorStore, keyring, err := openFactors(cfg, logger)
	if err != nil {
		store.Close()
		return nil, err
	}
	if factorStore != nil {
		reg.MustRegister(newEnrolledCollector(factorStore))
	}
	var passkeys *passkey.RP
	if slices.Contains(cfg.Factors.Enabled, secondfactor.MethodPasskey) {
		pc, err := cfg.passkeyConfig()
		if err == nil {
			passkeys, err = passkey.New(pc, factorStore, keyring, store, challenge.ErrNoCeremony)
		}
		if err != nil {
			store.Close()
			factorStore.Close()
			return nil, err
		}
	}
	return &sharedParts{
		factorStore:      factorStore,
		passkeys:         passkeys,
		keyring:          keyring,
		logger:           logger,
		registry:         reg,
		transport:        proxy.NewTransport(cfg.Upstream.Timeout),
		store:            store,
		sender:           sender,
		proxyMetrics:     proxy.NewMetrics(reg),
		challengeMetrics: challenge.NewMetrics(reg),
		reloadMetrics:    newReloadMetrics(reg),
		responses:        responses,
		verifyShed:       verifyShed,
	}, nil
}

// newSender builds the mail sender mail.driver names, logging to logger.
func newSender(cfg *Config, logger *slog.Logger) (challenge.Sender, error) {
	m := cfg.Mail
	switch m.Driver {
	case "smtp":
		s, err := mailer.NewSMTPSender(mailer.SMTPConfig{
			Host: m.SMTP.Host, Port: m.SMTP.Port, Username: m.SMTP.Username,
			Password: m.SMTP.Password, TLS: m.SMTP.TLS, From: m.From,
			Logger: logger,
		})
		if err != nil {
			return nil, fmt.Errorf("mail.smtp: %w", err)
		}
		return s, nil
	case "file":
		s, err := mailer.NewFileSender(m.File.Dir, m.From)
		if err != nil {
			return nil, fmt.Errorf("mail.file: %w", err)
		}
		return s, nil
	case "log":
		return mailer.NewLogSender(logger, m.From), nil
	}
	return nil, fmt.Errorf("mail.driver: unknown driver %q", m.Driver)
}

// newStore builds the challenge store store.driver names.
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
			RevocationCache: r.RevocationCacheSize,
			// A loss of Redis's state locks every user out for
			// otp.lockout: no lockout it lost is lifted early.
			StateLossLockout: cfg.OTP.Lockout,
		})
		if err != nil {
			return nil, fmt.Errorf("store.redis: %w", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("store.driver: unknown driver %q", cfg.Store.Driver)
}

// redisTLS is the TLS config for Redis, nil when store.redis.tls is false.
// RootCAs nil means the system roots; redisstore fills an empty ServerName
// from the address.
func (c *Config) redisTLS() (*tls.Config, error) {
	r := c.Store.Redis
	if !r.TLS {
		return nil, nil
	}
	// RFC 8996: TLS 1.0 and 1.1 are deprecated.
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.TLSServerName}
	if r.TLSCAFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.redisCAPEM) {
			return nil, fmt.Errorf("%s holds no PEM certificate", r.TLSCAFile)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// parsePrefixes parses CIDRs; a bare address is its own /32 or /128.
func parsePrefixes(list []string) ([]netip.Prefix, int, error) {
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, i, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, -1, nil
}

// identityConfig converts to the identity package's config; JWKS fetch
// failures go to logger.
func (c *Config) identityConfig(logger *slog.Logger) (identity.Config, error) {
	trusted, _, err := parsePrefixes(c.Identity.Header.TrustedProxies)
	if err != nil {
		return identity.Config{}, err
	}
	j := c.Identity.JWT
	ic := identity.Config{
		Source: c.Identity.Source,
		JWT: identity.JWTConfig{
			Cookie:           j.Cookie,
			Algorithms:       j.Algorithms,
			PublicKeyPEM:     c.publicKeyPEM,
			JWKSURL:          j.JWKSURL,
			Issuer:           j.Issuer,
			Audience:         j.Audience,
			SubjectClaim:     j.SubjectClaim,
			EmailClaim:       j.EmailClaim,
			SessionClaim:     j.SessionClaim,
			Logger:           logger,
			CacheSize:        j.CacheSize,
			InvalidCacheSize: j.InvalidCacheSize,
			// VerifyConcurrency 0 is the identity package's default.
			VerifyConcurrency: j.VerifyConcurrency,
			VerifyWait:        j.VerifyWait,
		},
		Header: identity.HeaderConfig{
			User:           c.Identity.Header.User,
			Email:          c.Identity.Header.Email,
			TrustedProxies: trusted,
		},
	}
	if j.HMACSecret != "" {
		ic.JWT.HMACSecret = []byte(j.HMACSecret)
	}
	return ic, nil
}

// challengeConfig converts to the challenge package's config.
func (c *Config) challengeConfig(shared *sharedParts, auth *identity.Authenticator, tokens *secondfactor.Tokens) challenge.Config {
	return challenge.Config{
		Secret: []byte(c.SecondFactor.Secret),
		Tokens: tokens,
		OTP: challenge.OTPConfig{
			Length:             c.OTP.Length,
			TTL:                c.OTP.TTL,
			MaxAttempts:        c.OTP.MaxAttempts,
			ResendAfter:        c.OTP.ResendAfter,
			MaxSendsPerHour:    c.OTP.MaxSendsPerHour,
			MaxFailuresPerHour: c.OTP.MaxFailuresPerHour,
			Lockout:            c.OTP.Lockout,
		},
		MailSubject:  c.Mail.Subject,
		Sender:       shared.sender,
		Store:        shared.store,
		Prefix:       c.Server.Prefix,
		Authenticate: auth.Authenticate,
		LoginURL:     c.Identity.LoginURL,
		Metrics:      shared.challengeMetrics,
		Logger:       shared.logger,
		Methods:      c.enabledMethods(),
		RuleMethods:  c.ruleMethods,
		RuleFor:      c.ruleFor,
		Factors:      shared.factorStore,
		Keyring:      shared.keyring,
		Passkeys:     shared.passkeys,
		TOTP:         c.totpParams(),
		TOTPIssuer:   c.Factors.TOTP.Issuer,
		UI:           challenge.UIConfig{AppName: c.UI.AppName, Logo: c.logo, LogoType: c.logoType, TimeZone: c.zone},
		Areas:        c.stepUpAreas(),
	}
}

// stepUpAreas are the step_up rules with the max_age each accepts, for the
// status page.
func (c *Config) stepUpAreas() []challenge.Area {
	var out []challenge.Area
	for _, r := range c.Policies.Rules {
		if r.Action != "step_up" {
			continue
		}
		age := r.MaxAge
		if age == 0 {
			age = c.SecondFactor.TTL
		}
		out = append(out, challenge.Area{Rule: r.Name, MaxAge: age})
	}
	return out
}

// enabledMethods is factors.enabled, strongest first.
func (c *Config) enabledMethods() []string {
	var out []string
	for _, m := range knownMethods {
		if slices.Contains(c.Factors.Enabled, m) {
			out = append(out, m)
		}
	}
	return out
}

// ruleMethods is the methods of the rule that decides the return path rd
// on r's host (challenge.Config.RuleMethods); nil for any enabled method.
func (c *Config) ruleMethods(r *http.Request, rd string) []string {
	if c.policy == nil || strings.HasPrefix(rd, c.Server.Prefix+"/") || rd == c.Server.Prefix {
		return nil
	}
	t, err := policy.ParseTarget(rd)
	if err != nil {
		return nil
	}
	d := c.policy.Match(policy.Request{Host: r.Host, Method: http.MethodGet, Path: t.MatchPath})
	if d.Action != policy.StepUp {
		return nil
	}
	return d.FactorList()
}

// ruleFor is the step_up rule deciding the return path rd on r's host, and
// its max_age (challenge.Config.RuleFor), as the gate would decide a GET
// of rd. c is the config of the handler in service: a reload builds a new
// challenge handler from the new config and swaps it in with the gate
// (liveGate), so the answer always follows the policy the gate applies.
func (c *Config) ruleFor(r *http.Request, rd string) (string, time.Duration, bool) {
	if c.policy == nil || strings.HasPrefix(rd, c.Server.Prefix+"/") || rd == c.Server.Prefix {
		return "", 0, false
	}
	t, err := policy.ParseTarget(rd)
	if err != nil {
		return "", 0, false
	}
	d := c.policy.Match(policy.Request{Host: r.Host, Method: http.MethodGet, Path: t.MatchPath})
	if d.Action != policy.StepUp {
		return "", 0, false
	}
	age := d.MaxAge
	if age == 0 {
		age = c.SecondFactor.TTL
	}
	return d.Rule, age, true
}

// secondFactorConfig converts to the secondfactor package's config; the
// store is the revocation list.
func (c *Config) secondFactorConfig(revocations secondfactor.Revocations) secondfactor.Config {
	prev := make([][]byte, len(c.SecondFactor.PreviousSecrets))
	for i, s := range c.SecondFactor.PreviousSecrets {
		prev[i] = []byte(s)
	}
	return secondfactor.Config{
		Secret:          []byte(c.SecondFactor.Secret),
		PreviousSecrets: prev,
		CookieName:      c.SecondFactor.Cookie,
		HeaderName:      c.SecondFactor.Header,
		TTL:             c.SecondFactor.TTL,
		SecureCookie:    c.secureCookies(),
		Revocations:     revocations,
		CacheSize:       c.SecondFactor.CacheSize,
	}
}

// secureCookies reports whether stepgate's cookies are Secure: when the
// public URL is https.
func (c *Config) secureCookies() bool {
	return strings.HasPrefix(strings.ToLower(c.Server.PublicURL), "https://")
}

// buildGate builds the request handler for cfg, which must come from
// loadConfig (validated, policy compiled). It has no side effects, so a
// reload can build a candidate and drop it on error.
func buildGate(cfg *Config, shared *sharedParts) (http.Handler, error) {
	if cfg.policy == nil {
		return nil, errors.New("config not validated")
	}
	ic, err := cfg.identityConfig(shared.logger)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	// The counter outlives the Authenticator: a reload builds a new one
	// (with its own verification slots) and the count goes on.
	ic.JWT.Shed = shared.verifyShed
	auth, err := identity.New(ic)
	if err != nil {
		return nil, err
	}
	tokens, err := secondfactor.New(cfg.secondFactorConfig(shared.store))
	if err != nil {
		return nil, err
	}
	ch, err := challenge.New(cfg.challengeConfig(shared, auth, tokens))
	if err != nil {
		return nil, fmt.Errorf("second factor: %w", err)
	}
	pages, err := respond.ParsePages(templates.FS, cfg.Server.Prefix, shared.logger)
	if err != nil {
		return nil, fmt.Errorf("pages: %w", err)
	}
	// The gate's own pages (sign in first, denied, refused) name the site
	// too, as the /.stepup pages do.
	logo := ""
	if len(cfg.logo) > 0 {
		logo = "/logo"
	}
	pages.SetApp(cfg.UI.AppName, logo)
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
		ForwardAuth:     cfg.Server.ForwardAuth,
		Identity:        auth,
		SecondFactor:    tokens,
		ForwardToken:    cfg.Upstream.ForwardToken,
		Internal:        ch.Handler(),
		LoginURL:        cfg.Identity.LoginURL,
		Pages:           pages,
		Metrics:         shared.proxyMetrics,
		Logger:          shared.logger,
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}
