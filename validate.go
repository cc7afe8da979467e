package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stepgate/stepgate/identity"
)

// minSecret is the shortest accepted signing key: 256 bits, the HS256 key
// size RFC 7518 §3.2 requires.
const minSecret = 32

// maxVerifyConcurrency bounds identity.jwt.verify_concurrency: more checks
// at once than any machine has CPUs is no bound at all.
const maxVerifyConcurrency = 4096

// maxVerifyWait bounds identity.jwt.verify_wait: a longer wait holds a
// connection and a goroutine per waiting request for nothing a client
// retrying after Retry-After would not get.
const maxVerifyWait = 10 * time.Second

// jwtAlgorithms are the access-token algorithms SPEC §3 allows.
var jwtAlgorithms = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "EdDSA"}

// validate checks every key and compiles the policy (and runs its tests),
// adding every problem to ps. It has no side effect beyond setting
// c.policy, so a reload can validate a candidate without touching what
// serves.
func (c *Config) validate(ps *problems) {
	c.validateServer(ps)
	c.validateIdentity(ps)
	c.validateSecondFactor(ps)
	c.validateOTP(ps)
	c.validateMail(ps)
	c.validateStore(ps)
	c.validateFactors(ps)
	c.validatePolicies(ps)
	c.validateLog(ps)
	c.validateRuntime(ps)
	c.validateCaches(ps)
	c.validateUI(ps)
}

// maxLogo bounds ui.logo_file.
const maxLogo = 256 << 10

func (c *Config) validateUI(ps *problems) {
	u := c.UI
	if u.AppName != "" && (!utf8.ValidString(u.AppName) || strings.ContainsAny(u.AppName, "\r\n") || len(u.AppName) > 80) {
		ps.add("ui.app_name", "must be one line of at most 80 bytes")
	}
	z, err := time.LoadLocation(u.TimeZone)
	switch {
	case u.TimeZone == "":
		c.zone = time.UTC
	case err != nil || u.TimeZone == "Local":
		ps.add("ui.time_zone", "%q is not an IANA time zone such as UTC or Europe/Berlin", u.TimeZone)
	default:
		c.zone = z
	}
	if u.LogoFile != "" {
		b, err := readLimited(u.LogoFile, maxLogo)
		if err != nil {
			ps.add("ui.logo_file", "%v", err)
			return
		}
		ct := http.DetectContentType(b)
		if strings.HasSuffix(strings.ToLower(u.LogoFile), ".svg") && strings.Contains(string(b[:min(len(b), 512)]), "<svg") {
			ct = "image/svg+xml"
		}
		if !strings.HasPrefix(ct, "image/") {
			ps.add("ui.logo_file", "%s is not an image (%s)", u.LogoFile, ct)
			return
		}
		c.logo, c.logoType = b, ct
	}
}

func (c *Config) validateLog(ps *problems) {
	if _, err := parseLevel(c.Log.Level); err != nil {
		ps.add("log.level", "%v", err)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		ps.add("log.format", "unknown format %q (json or text)", c.Log.Format)
	}
}

func (c *Config) validateServer(ps *problems) {
	s := c.Server
	if s.Listen == "" {
		ps.add("server.listen", "required")
	} else if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		ps.add("server.listen", "%q is not host:port", s.Listen)
	}
	if s.AdminListen == "" {
		ps.add("server.admin_listen", "required")
	} else if _, _, err := net.SplitHostPort(s.AdminListen); err != nil {
		ps.add("server.admin_listen", "%q is not host:port", s.AdminListen)
	} else if s.AdminListen == s.Listen && !strings.HasSuffix(s.Listen, ":0") {
		// SPEC §3: the admin endpoints are never served on the proxy port.
		ps.add("server.admin_listen", "must differ from server.listen (%s)", s.Listen)
	}
	if err := checkHTTPURL(s.PublicURL); err != nil {
		ps.add("server.public_url", "%v", err)
	}
	switch {
	case !strings.HasPrefix(s.Prefix, "/"):
		ps.add("server.prefix", "%q must start with /", s.Prefix)
	case s.Prefix == "/" || strings.HasSuffix(s.Prefix, "/") || strings.Contains(s.Prefix, "//") || strings.ContainsAny(s.Prefix, "?#%\\ "):
		ps.add("server.prefix", "%q must be a plain path like /.stepup (no trailing /, ?, #, %%, \\ or space)", s.Prefix)
	}
	checkPrefixes(s.TrustedProxies, "server.trusted_proxies", ps)
	if s.ForwardAuth && len(s.TrustedProxies) == 0 {
		// SPEC §12: the endpoints answer only trusted proxies; with none,
		// every call would be refused.
		ps.add("server.forward_auth", "needs server.trusted_proxies: the outer proxy's addresses, the only peers answered")
	}
	if err := checkHTTPURL(c.Upstream.URL); err != nil {
		ps.add("upstream.url", "%v", err)
	}
	if s.ShutdownGrace < 0 {
		ps.add("server.shutdown_grace", "must not be negative")
	}
	if s.ShutdownDelay < 0 {
		ps.add("server.shutdown_delay", "must not be negative")
	}
	if s.ReadTimeout < 0 {
		ps.add("server.read_timeout", "must not be negative (0 means no total bound)")
	}
	if s.ReadIdleTimeout < 0 {
		ps.add("server.read_idle_timeout", "must not be negative (0 means none)")
	}
	if s.ReadTimeout == 0 && s.ReadIdleTimeout == 0 {
		// SPEC §10: no slowloris. One of the two must bound a body.
		ps.add("server.read_idle_timeout", "must be set when server.read_timeout is 0: otherwise a client could hold a connection forever by sending a body byte by byte, or not at all")
	}
	if s.MaxConnections < 1 {
		ps.add("server.max_connections", "must be at least 1")
	}
	if c.Upstream.Timeout <= 0 {
		ps.add("upstream.timeout", "must be more than 0")
	}
}

// checkHTTPURL accepts an absolute http(s) URL with a host.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q must be an http:// or https:// URL with a host", s)
	}
	if u.User != nil {
		return fmt.Errorf("%q must not carry credentials", s)
	}
	return nil
}

func checkPrefixes(list []string, key string, ps *problems) {
	if _, i, err := parsePrefixes(list); err != nil {
		ps.add(fmt.Sprintf("%s[%d]", key, i), "%v", err)
	}
}

func (c *Config) validateIdentity(ps *problems) {
	id := c.Identity
	if id.LoginURL != "" && !strings.HasPrefix(id.LoginURL, "/") {
		if err := checkHTTPURL(id.LoginURL); err != nil {
			ps.add("identity.login_url", "%q must be a path or an http(s) URL", id.LoginURL)
		}
	}
	switch id.Source {
	case "jwt":
		j := id.JWT
		n := len(ps.list)
		if len(j.Algorithms) == 0 {
			ps.add("identity.jwt.algorithms", "at least one algorithm is required")
		}
		hmac, public := false, false
		for i, a := range j.Algorithms {
			switch {
			case strings.EqualFold(a, "none"):
				// RFC 8725 §3.1: never accept unsigned tokens.
				ps.add(fmt.Sprintf("identity.jwt.algorithms[%d]", i), `"none" is never accepted`)
			case !slices.Contains(jwtAlgorithms, a):
				ps.add(fmt.Sprintf("identity.jwt.algorithms[%d]", i), "unknown algorithm %q (one of %s)", a, strings.Join(jwtAlgorithms, ", "))
			case strings.HasPrefix(a, "HS"):
				hmac = true
			default:
				public = true
			}
		}
		switch {
		case ps.has("identity.jwt.hmac_secret_file") || ps.has("identity.jwt.public_key_file"):
			// The key file could not be read: that one problem says it.
		case j.HMACSecret == "" && j.PublicKeyFile == "" && j.JWKSURL == "":
			ps.add("identity.jwt", "no key source: set hmac_secret(_file), public_key_file or jwks_url")
		default:
			if hmac && j.HMACSecret == "" {
				ps.add("identity.jwt.algorithms", "HS* algorithms need identity.jwt.hmac_secret or hmac_secret_file")
			}
			if public && j.PublicKeyFile == "" && j.JWKSURL == "" {
				ps.add("identity.jwt.algorithms", "RS*/ES*/EdDSA algorithms need identity.jwt.public_key_file or jwks_url")
			}
		}
		if j.HMACSecret != "" && len(j.HMACSecret) < minSecret {
			ps.add(c.secretSource("identity.jwt.hmac_secret", "identity.jwt.hmac_secret_file"), "secret is %d bytes; at least %d are required", len(j.HMACSecret), minSecret)
		}
		if j.JWKSURL != "" {
			if err := checkHTTPURL(j.JWKSURL); err != nil {
				ps.add("identity.jwt.jwks_url", "%v", err)
			}
		}
		if j.SubjectClaim == "" {
			ps.add("identity.jwt.subject_claim", "required")
		}
		if j.VerifyConcurrency < 0 || j.VerifyConcurrency > maxVerifyConcurrency {
			ps.add("identity.jwt.verify_concurrency", "%d: want 0 (half of GOMAXPROCS, at least 1) to %d; it must not be negative", j.VerifyConcurrency, maxVerifyConcurrency)
		}
		if j.VerifyWait < time.Millisecond || j.VerifyWait > maxVerifyWait {
			ps.add("identity.jwt.verify_wait", "%v: want 1ms to %v (how long a request waits for a signature check slot)", j.VerifyWait, maxVerifyWait)
		}
		if len(ps.list) == n {
			c.checkAuthenticator(ps, "identity.jwt")
		}
	case "header":
		h := id.Header
		n := len(ps.list)
		if h.User == "" {
			ps.add("identity.header.user", "required")
		}
		if len(h.TrustedProxies) == 0 {
			// Without trusted peers anyone could claim any identity.
			ps.add("identity.header.trusted_proxies", "required when identity.source is header")
		}
		checkPrefixes(h.TrustedProxies, "identity.header.trusted_proxies", ps)
		if len(ps.list) == n {
			c.checkAuthenticator(ps, "identity.header")
		}
	default:
		ps.add("identity.source", "unknown source %q (jwt or header)", id.Source)
	}
}

// checkAuthenticator builds the authenticator once so that key material
// that does not parse is found by check, not at start-up.
func (c *Config) checkAuthenticator(ps *problems, key string) {
	ic, err := c.identityConfig(nil)
	if err == nil {
		_, err = identity.New(ic)
	}
	if err != nil {
		// key already says identity.<source>; identity's own prefix
		// ("identity: jwt: ") would say it again.
		msg := strings.TrimPrefix(err.Error(), "identity: "+c.Identity.Source+": ")
		if errors.Is(err, identity.ErrPublicKey) {
			key = "identity.jwt.public_key_file"
			msg = strings.TrimPrefix(msg, identity.ErrPublicKey.Error()+": ")
		}
		ps.add(key, "%s", msg)
	}
}

func (c *Config) validateSecondFactor(ps *problems) {
	sf := c.SecondFactor
	src := c.secretSource("second_factor.secret", "second_factor.secret_file")
	switch {
	case ps.has("second_factor.secret_file"):
		// The secret file could not be read: that one problem says it.
	case sf.Secret == "":
		ps.add(src, "missing: set second_factor.secret, second_factor.secret_file or %s", envName("second_factor.secret"))
	case len(sf.Secret) < minSecret:
		ps.add(src, "secret is %d bytes; at least %d are required", len(sf.Secret), minSecret)
	}
	if sf.Secret != "" && sf.Secret == c.Identity.JWT.HMACSecret {
		// One key for both would let whoever mints access tokens (the
		// identity provider) mint second factors too, and the other way
		// round: the two factors would no longer be independent.
		ps.add(src, "must differ from identity.jwt.hmac_secret")
	}
	for i, s := range sf.PreviousSecrets {
		if len(s) < minSecret {
			ps.add(fmt.Sprintf("second_factor.previous_secrets[%d]", i), "secret is %d bytes; at least %d are required", len(s), minSecret)
		}
	}
	if sf.Cookie == "" {
		ps.add("second_factor.cookie", "required")
	} else if strings.HasPrefix(sf.Cookie, "__Host-") && !strings.HasPrefix(strings.ToLower(c.Server.PublicURL), "https://") {
		// RFC 6265bis §4.1.3.2: a __Host- cookie must be Secure, which an
		// http:// origin cannot set, so the browser would drop it.
		ps.add("second_factor.cookie", "%q needs an https:// server.public_url; use a name without __Host- on http", sf.Cookie)
	} else if !validToken(sf.Cookie) {
		ps.add("second_factor.cookie", "%q is not a valid cookie name", sf.Cookie)
	}
	if sf.Header == "" || !validToken(sf.Header) {
		ps.add("second_factor.header", "%q is not a valid header name", sf.Header)
	}
	if sf.TTL <= 0 {
		ps.add("second_factor.ttl", "must be more than 0")
	}
}

// validToken reports whether s is an RFC 9110 §5.6.2 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= 0x20 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

func (c *Config) validateOTP(ps *problems) {
	o := c.OTP
	if o.Length < 6 || o.Length > 10 {
		// NIST SP 800-63B §5.1.4: at least six digits.
		ps.add("otp.length", "%d must be between 6 and 10", o.Length)
	}
	if o.TTL <= 0 {
		ps.add("otp.ttl", "must be more than 0")
	}
	if o.MaxAttempts < 1 {
		ps.add("otp.max_attempts", "must be at least 1")
	}
	if o.MaxSendsPerHour < 1 {
		ps.add("otp.max_sends_per_hour", "must be at least 1")
	}
	if o.MaxFailuresPerHour < 1 {
		ps.add("otp.max_failures_per_hour", "must be at least 1")
	}
	if o.Lockout <= 0 {
		ps.add("otp.lockout", "must be more than 0")
	}
}

func (c *Config) validateMail(ps *problems) {
	m := c.Mail
	if _, err := mail.ParseAddress(m.From); err != nil {
		ps.add("mail.from", "%q is not one address: %v", m.From, err)
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		ps.add("mail.subject", "must be one line")
	}
	switch m.Driver {
	case "smtp":
		if m.SMTP.Host == "" {
			ps.add("mail.smtp.host", "required when mail.driver is smtp")
		}
		if m.SMTP.Port < 1 || m.SMTP.Port > 65535 {
			ps.add("mail.smtp.port", "%d is not a port", m.SMTP.Port)
		}
		switch m.SMTP.TLS {
		case "starttls", "tls", "none":
		default:
			ps.add("mail.smtp.tls", "unknown mode %q (starttls, tls or none)", m.SMTP.TLS)
		}
	case "file":
		if m.File.Dir == "" {
			ps.add("mail.file.dir", "required when mail.driver is file")
		} else if fi, err := os.Stat(m.File.Dir); err != nil || !fi.IsDir() {
			ps.add("mail.file.dir", "%q is not an existing directory", m.File.Dir)
		}
	case "log":
	default:
		ps.add("mail.driver", "unknown driver %q (smtp, file or log)", m.Driver)
	}
}

func (c *Config) validateStore(ps *problems) {
	switch c.Store.Driver {
	case "memory":
	case "redis":
		if _, _, err := net.SplitHostPort(c.Store.Redis.Addr); err != nil {
			ps.add("store.redis.addr", "%q is not host:port", c.Store.Redis.Addr)
		}
		if c.Store.Redis.DB < 0 {
			ps.add("store.redis.db", "must not be negative")
		}
		c.validateRedisTLS(ps)
		if c.Store.Redis.Timeout <= 0 {
			// Zero would not mean "no timeout" but redisstore's 2s; a
			// Redis call without a bound would hold requests when Redis
			// hangs (SPEC §10).
			ps.add("store.redis.timeout", "must be more than 0")
		}
		if c.Store.Redis.RevocationCacheSize < 0 {
			ps.add("store.redis.revocation_cache_size", "must not be negative (0 asks Redis on every step_up request)")
		}
		if c.Store.Redis.PoolSize < 0 {
			ps.add("store.redis.pool_size", "must not be negative (0 means 10 × GOMAXPROCS, at least 64)")
		}
	default:
		ps.add("store.driver", "unknown driver %q (memory or redis)", c.Store.Driver)
	}
}

// validateRedisTLS checks the store.redis.tls* keys.
func (c *Config) validateRedisTLS(ps *problems) {
	r := c.Store.Redis
	if !r.TLS {
		// A CA or server name without tls: true would leave the
		// connection in plain text while its author believes it is
		// verified: refuse rather than guess.
		if r.TLSCAFile != "" {
			ps.add("store.redis.tls_ca_file", "set store.redis.tls: true to use it (the connection is plain TCP otherwise)")
		}
		if r.TLSServerName != "" {
			ps.add("store.redis.tls_server_name", "set store.redis.tls: true to use it (the connection is plain TCP otherwise)")
		}
		return
	}
	if r.TLSServerName != "" && strings.ContainsAny(r.TLSServerName, ":/ ") {
		ps.add("store.redis.tls_server_name", "%q must be a host name only, without port or scheme", r.TLSServerName)
	}
	// A file that could not be read has its problem already.
	if r.TLSCAFile != "" && c.redisCAPEM != nil {
		if _, err := c.redisTLS(); err != nil {
			ps.add("store.redis.tls_ca_file", "%v", err)
		}
	}
}

// acrPrefix names a method as an RFC 9470 acr value.
const acrPrefix = "urn:stepgate:method:"

// acrValues is what the RFC 9470 401 of a rule with factors (and no acr of
// its own) announces: one acr value per method, in the rule's order,
// space-separated as acr_values is (README "Per-rule factors").
func acrValues(methods []string) string {
	vals := make([]string, len(methods))
	for i, m := range methods {
		vals[i] = acrPrefix + m
	}
	return strings.Join(vals, " ")
}
