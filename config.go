package main

import (
	"strings"
	"time"

	"github.com/stepgate/stepgate/policy"
)

// Config is the whole stepgate configuration, key for key SPEC §3. The
// defaults in configDefaults apply to every key the file leaves out; the
// zero values documented below are what a field holds when a default is
// explicitly overridden with an empty value.
type Config struct {
	Server       ServerConfig       `mapstructure:"server"`
	Upstream     UpstreamConfig     `mapstructure:"upstream"`
	Identity     IdentityConfig     `mapstructure:"identity"`
	SecondFactor SecondFactorConfig `mapstructure:"second_factor"`
	OTP          OTPConfig          `mapstructure:"otp"`
	Mail         MailConfig         `mapstructure:"mail"`
	Store        StoreConfig        `mapstructure:"store"`
	Factors      FactorsConfig      `mapstructure:"factors"`
	Policies     PoliciesConfig     `mapstructure:"policies"`
	Log          LogConfig          `mapstructure:"log"`
	Runtime      RuntimeConfig      `mapstructure:"runtime"`
	UI           UIConfig           `mapstructure:"ui"`

	// meta locates keys in the file for error messages.
	meta configMeta
	// warnings are what validate found suspicious but valid; check
	// prints them, serve and reload log them.
	warnings []Problem
	// policy is compiled by validate; nil until validate succeeds.
	policy *policy.Policy
	// publicKeyPEM is the content of identity.jwt.public_key_file.
	publicKeyPEM []byte
	// logo is the content of ui.logo_file, logoType its Content-Type.
	logo     []byte
	logoType string
	// zone is ui.time_zone, loaded by validate.
	zone *time.Location
	// redisCAPEM is the content of store.redis.tls_ca_file.
	redisCAPEM []byte
}

// ServerConfig is SPEC §3 server.
type ServerConfig struct {
	// Listen is the proxy's address. Default 127.0.0.1:8080.
	Listen string `mapstructure:"listen"`
	// AdminListen serves /metrics, /healthz and /readyz, never the proxy
	// port. Default 127.0.0.1:9090.
	AdminListen string `mapstructure:"admin_listen"`
	// PublicURL is the external base URL; https means Secure cookies.
	PublicURL string `mapstructure:"public_url"`
	// Prefix is the reserved path for stepgate's own pages. Default /.stepup.
	Prefix string `mapstructure:"prefix"`
	// TrustedProxies are CIDRs whose X-Forwarded-* headers are believed;
	// empty means none.
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	// CaseInsensitivePaths matches paths ignoring ASCII case (IIS).
	CaseInsensitivePaths bool `mapstructure:"case_insensitive_paths"`
	// ForwardAuth also answers {prefix}/authz/* (SPEC §12) to
	// TrustedProxies, for nginx, Traefik, Caddy and Envoy in front.
	// Default false.
	ForwardAuth bool `mapstructure:"forward_auth"`
	// ShutdownGrace is how long in-flight requests may run after SIGTERM
	// or SIGINT before their connections are closed. Default 15s; zero
	// closes them at once.
	ShutdownGrace time.Duration `mapstructure:"shutdown_grace"`
	// ShutdownDelay is how long the listeners keep serving after SIGTERM
	// or SIGINT while /readyz already fails, so that a load balancer stops
	// sending new connections before they are refused (SPEC §13); then
	// they stop accepting and drain for ShutdownGrace. Default 0.
	ShutdownDelay time.Duration `mapstructure:"shutdown_delay"`
	// ReadTimeout bounds reading a whole request on the proxy port,
	// headers and body, from the moment its connection is read (net/http
	// Server.ReadTimeout). Default 60s; zero means no total bound (long
	// uploads), ReadIdleTimeout still cuts a stalled one.
	ReadTimeout time.Duration `mapstructure:"read_timeout"`
	// ReadIdleTimeout is the longest pause allowed between two pieces of a
	// request body: a client that stops sending is cut after it, however
	// long ReadTimeout is. Default 30s; zero means none.
	ReadIdleTimeout time.Duration `mapstructure:"read_idle_timeout"`
	// MaxConnections bounds the proxy port's open connections; beyond it
	// new connections are answered 503 and closed (SPEC §13). Default
	// 10000.
	MaxConnections int `mapstructure:"max_connections"`
}

// UIConfig is the ui section: what stepgate's pages and mails show of the
// site they protect (README "Configuration").
type UIConfig struct {
	// AppName names the protected site in page titles, headings and
	// mails ("Acme Portal"). Default "": no name; stepgate's own name is
	// only ever in a small footer.
	AppName string `mapstructure:"app_name"`
	// LogoFile is an image (PNG, JPEG, GIF, WebP or SVG, at most 256 KiB)
	// served at {prefix}/logo and shown beside the name. Default "": none.
	LogoFile string `mapstructure:"logo_file"`
	// TimeZone is the IANA zone ("Europe/Berlin") of the clock times on
	// the pages and in mails, always shown with the zone's name.
	// Default UTC.
	TimeZone string `mapstructure:"time_zone"`
}

// LogConfig is the log section (README "Operations"; not in SPEC §3, which
// only asks for JSON audit logs).
type LogConfig struct {
	// Level is the least severe level written: debug, info, warn or error.
	// Default info. Audit records are written at info or above.
	Level string `mapstructure:"level"`
	// Format is json (default, one object per line) or text (slog's
	// key=value lines, for reading by eye).
	Format string `mapstructure:"format"`
	// Access writes one line per proxied request (method, path without
	// query, status, duration, request id). Default false: audit records
	// cover the security events without logging every request.
	Access bool `mapstructure:"access"`
}

// UpstreamConfig is SPEC §3 upstream.
type UpstreamConfig struct {
	URL string `mapstructure:"url"`
	// Timeout bounds an upstream exchange up to its response headers.
	Timeout time.Duration `mapstructure:"timeout"`
	// ForwardToken sends the valid second-factor token upstream in
	// X-Stepup-Token (SPEC §7). Default false.
	ForwardToken bool `mapstructure:"forward_token"`
}

// IdentityConfig is SPEC §3 identity.
type IdentityConfig struct {
	Source string `mapstructure:"source"` // jwt | header
	// LoginURL is where unauthenticated browsers go; {rd} is the escaped
	// return URL. Empty means a 401 page.
	LoginURL string       `mapstructure:"login_url"`
	JWT      JWTConfig    `mapstructure:"jwt"`
	Header   HeaderConfig `mapstructure:"header"`
}

// JWTConfig is SPEC §3 identity.jwt.
type JWTConfig struct {
	Cookie     string   `mapstructure:"cookie"`
	Algorithms []string `mapstructure:"algorithms"`
	// HMACSecret holds the key after load, whether it came from the file,
	// hmac_secret_file or STEPGATE_IDENTITY_JWT_HMAC_SECRET.
	HMACSecret     string `mapstructure:"hmac_secret"`
	HMACSecretFile string `mapstructure:"hmac_secret_file"`
	PublicKeyFile  string `mapstructure:"public_key_file"`
	JWKSURL        string `mapstructure:"jwks_url"`
	Issuer         string `mapstructure:"issuer"`   // "" means not checked
	Audience       string `mapstructure:"audience"` // "" means not checked
	SubjectClaim   string `mapstructure:"subject_claim"`
	EmailClaim     string `mapstructure:"email_claim"`
	SessionClaim   string `mapstructure:"session_claim"`
	// CacheSize bounds the verified-token cache (entries, about 400 bytes
	// each). Default 10000.
	CacheSize int `mapstructure:"cache_size"`
	// InvalidCacheSize bounds the cache of tokens refused for good (bad
	// signature, malformed, expired; least recently used out first, about
	// 200 bytes each). Default 10000.
	InvalidCacheSize int `mapstructure:"invalid_cache_size"`
	// VerifyConcurrency bounds the RS*/ES*/EdDSA signature checks of
	// uncached tokens that run at once; 0 (the default) means half of
	// GOMAXPROCS, at least 1.
	VerifyConcurrency int `mapstructure:"verify_concurrency"`
	// VerifyWait is the longest a request waits for a verification slot
	// before it is answered 503 with Retry-After. Default 500ms.
	VerifyWait time.Duration `mapstructure:"verify_wait"`
}

// HeaderConfig is SPEC §3 identity.header.
type HeaderConfig struct {
	User           string   `mapstructure:"user"`
	Email          string   `mapstructure:"email"`
	TrustedProxies []string `mapstructure:"trusted_proxies"`
}

// SecondFactorConfig is SPEC §3 second_factor.
type SecondFactorConfig struct {
	// Secret holds the signing key after load, whichever way it was given.
	Secret          string   `mapstructure:"secret"`
	SecretFile      string   `mapstructure:"secret_file"`
	PreviousSecrets []string `mapstructure:"previous_secrets"`
	// Cookie defaults to __Host-stepgate, or to stepgate when public_url
	// is http:// (browsers refuse __Host- cookies without Secure).
	Cookie string        `mapstructure:"cookie"`
	Header string        `mapstructure:"header"`
	TTL    time.Duration `mapstructure:"ttl"`
	// CacheSize bounds the verified-token cache (entries, about 650 bytes
	// each). Default 10000.
	CacheSize int `mapstructure:"cache_size"`
}

// OTPConfig is SPEC §3 otp.
type OTPConfig struct {
	Length             int           `mapstructure:"length"`
	TTL                time.Duration `mapstructure:"ttl"`
	MaxAttempts        int           `mapstructure:"max_attempts"`
	ResendAfter        time.Duration `mapstructure:"resend_after"`
	MaxSendsPerHour    int           `mapstructure:"max_sends_per_hour"`
	MaxFailuresPerHour int           `mapstructure:"max_failures_per_hour"`
	Lockout            time.Duration `mapstructure:"lockout"`
}

// MailConfig is SPEC §3 mail.
type MailConfig struct {
	Driver  string         `mapstructure:"driver"` // smtp | file | log
	From    string         `mapstructure:"from"`
	Subject string         `mapstructure:"subject"`
	SMTP    SMTPConfig     `mapstructure:"smtp"`
	File    MailFileConfig `mapstructure:"file"`
}

// SMTPConfig is SPEC §3 mail.smtp. Password is not in the SPEC example but
// follows its rule that every secret has an inline key and a *_file key.
type SMTPConfig struct {
	Host         string `mapstructure:"host"`
	Port         int    `mapstructure:"port"`
	Username     string `mapstructure:"username"`
	Password     string `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"`
	TLS          string `mapstructure:"tls"` // starttls | tls | none
}

// MailFileConfig is SPEC §3 mail.file.
type MailFileConfig struct {
	Dir string `mapstructure:"dir"`
}

// StoreConfig is SPEC §3 store.
type StoreConfig struct {
	Driver string      `mapstructure:"driver"` // memory | redis
	Redis  RedisConfig `mapstructure:"redis"`
}

// RedisConfig is SPEC §3 store.redis (password as for SMTPConfig).
type RedisConfig struct {
	Addr         string `mapstructure:"addr"`
	Password     string `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"`
	DB           int    `mapstructure:"db"`
	KeyPrefix    string `mapstructure:"key_prefix"`
	// TLS makes every connection to Redis TLS (1.2 or later). Default
	// false: plain TCP, for a Redis on the same host or a private network.
	TLS bool `mapstructure:"tls"`
	// TLSCAFile is a PEM bundle of the CAs that may sign the server's
	// certificate. Empty means the system roots. Needs tls: true.
	TLSCAFile string `mapstructure:"tls_ca_file"`
	// TLSServerName is the name the server's certificate must carry.
	// Empty means the host of addr. Needs tls: true.
	TLSServerName string `mapstructure:"tls_server_name"`
	// Timeout bounds dialing, each command and the wait for a pooled
	// connection. Default 2s.
	Timeout time.Duration `mapstructure:"timeout"`
	// PoolSize is the most connections to Redis per process. Default 0,
	// which means 10 × GOMAXPROCS but at least 64 (redisstore.Options).
	PoolSize int `mapstructure:"pool_size"`
	// RevocationCacheSize bounds the local cache of token ids known not to
	// be revoked, kept current by a Pub/Sub subscription (about 100 bytes
	// each). Default 10000; 0 asks Redis on every step_up request.
	RevocationCacheSize int `mapstructure:"revocation_cache_size"`
}

// PoliciesConfig is SPEC §3 policies.
type PoliciesConfig struct {
	Default string       `mapstructure:"default"`
	Rules   []RuleConfig `mapstructure:"rules"`
	Tests   []TestConfig `mapstructure:"tests"`
}

// RuleConfig is one policies.rules entry.
type RuleConfig struct {
	Name    string        `mapstructure:"name"`
	Hosts   []string      `mapstructure:"hosts"`
	Paths   []string      `mapstructure:"paths"`
	Regex   string        `mapstructure:"regex"`
	Methods []string      `mapstructure:"methods"`
	Action  string        `mapstructure:"action"`
	MaxAge  time.Duration `mapstructure:"max_age"` // 0 means second_factor.ttl
	ACR     string        `mapstructure:"acr"`
	Mode    string        `mapstructure:"mode"` // "" means enforce
	// Factors lists the methods that satisfy the rule (SPEC §11); empty
	// means every method in factors.enabled.
	Factors []string `mapstructure:"factors"`
}

// TestConfig is one policies.tests entry.
type TestConfig struct {
	Request string `mapstructure:"request"`
	Expect  string `mapstructure:"expect"`
	Rule    string `mapstructure:"rule"`
}

// configDefaults holds every SPEC §3 default. Lists of rules and tests have
// none.
var configDefaults = map[string]any{
	"server.listen":                     "127.0.0.1:8080",
	"server.admin_listen":               "127.0.0.1:9090",
	"server.public_url":                 "http://127.0.0.1:8080",
	"server.prefix":                     "/.stepup",
	"server.trusted_proxies":            []string{},
	"server.case_insensitive_paths":     false,
	"server.forward_auth":               false,
	"server.shutdown_grace":             15 * time.Second,
	"server.shutdown_delay":             time.Duration(0),
	"server.read_timeout":               60 * time.Second,
	"server.read_idle_timeout":          30 * time.Second,
	"server.max_connections":            10000,
	"upstream.url":                      "http://127.0.0.1:3000",
	"upstream.timeout":                  30 * time.Second,
	"upstream.forward_token":            false,
	"identity.source":                   "jwt",
	"identity.login_url":                "/login?rd={rd}",
	"identity.jwt.cookie":               "access_token",
	"identity.jwt.algorithms":           []string{"HS256"},
	"identity.jwt.hmac_secret":          "",
	"identity.jwt.hmac_secret_file":     "",
	"identity.jwt.public_key_file":      "",
	"identity.jwt.jwks_url":             "",
	"identity.jwt.issuer":               "",
	"identity.jwt.audience":             "",
	"identity.jwt.subject_claim":        "sub",
	"identity.jwt.email_claim":          "email",
	"identity.jwt.session_claim":        "sid",
	"identity.jwt.cache_size":           10000,
	"identity.jwt.invalid_cache_size":   10000,
	"identity.jwt.verify_concurrency":   0,
	"identity.jwt.verify_wait":          500 * time.Millisecond,
	"identity.header.user":              "X-Forwarded-User",
	"identity.header.email":             "X-Forwarded-Email",
	"identity.header.trusted_proxies":   []string{"127.0.0.1/32"},
	"second_factor.secret":              "",
	"second_factor.secret_file":         "",
	"second_factor.previous_secrets":    []string{},
	"second_factor.cookie":              defaultCookie,
	"second_factor.header":              "X-Second-Factor-Token",
	"second_factor.ttl":                 12 * time.Hour,
	"second_factor.cache_size":          10000,
	"otp.length":                        6,
	"otp.ttl":                           5 * time.Minute,
	"otp.max_attempts":                  5,
	"otp.resend_after":                  30 * time.Second,
	"otp.max_sends_per_hour":            5,
	"otp.max_failures_per_hour":         20,
	"otp.lockout":                       15 * time.Minute,
	"mail.driver":                       "smtp",
	"mail.from":                         "stepgate <no-reply@example.com>",
	"mail.subject":                      "Your verification code",
	"mail.smtp.host":                    "",
	"mail.smtp.port":                    587,
	"mail.smtp.username":                "",
	"mail.smtp.password":                "",
	"mail.smtp.password_file":           "",
	"mail.smtp.tls":                     "starttls",
	"mail.file.dir":                     "",
	"store.driver":                      "memory",
	"store.redis.addr":                  "127.0.0.1:6379",
	"store.redis.password":              "",
	"store.redis.password_file":         "",
	"store.redis.db":                    0,
	"store.redis.key_prefix":            "stepgate:",
	"store.redis.tls":                   false,
	"store.redis.tls_ca_file":           "",
	"store.redis.tls_server_name":       "",
	"store.redis.timeout":               2 * time.Second,
	"store.redis.pool_size":             0,
	"store.redis.revocation_cache_size": 10000,
	"factors.enabled":                   []string{"email"},
	"factors.driver":                    "sqlite",
	"factors.sqlite.path":               "/var/lib/stepgate/factors.db",
	"factors.postgres.dsn":              "",
	"factors.postgres.dsn_file":         "",
	"factors.encryption_key":            "",
	"factors.encryption_key_file":       "",
	"factors.previous_encryption_keys":  []string{},
	"factors.totp.issuer":               "stepgate",
	"factors.totp.period":               30 * time.Second,
	"factors.totp.digits":               6,
	"factors.totp.skew":                 1,
	"factors.passkey.rp_id":             "",
	"factors.passkey.attestation":       "none",
	"factors.passkey.aaguids":           []string{},
	"factors.passkey.metadata_file":     "",
	"policies.default":                  "authenticate",
	"log.level":                         "info",
	"log.format":                        "json",
	"log.access":                        false,
	"runtime.gc_percent":                200,
	"runtime.memory_limit":              "auto",
	"ui.app_name":                       "",
	"ui.logo_file":                      "",
	"ui.time_zone":                      "UTC",
}

const defaultCookie = "__Host-stepgate"

// applyDerivedDefaults sets defaults that depend on other keys.
func (c *Config) applyDerivedDefaults() {
	// The SPEC §3 default cookie __Host-stepgate cannot work on the SPEC
	// default http:// public_url (a __Host- cookie must be Secure), so
	// when the cookie is left to its default on http it becomes stepgate.
	_, inFile := c.meta.lines["second_factor.cookie"]
	_, inEnv := c.meta.env["second_factor.cookie"]
	if !inFile && !inEnv && c.SecondFactor.Cookie == defaultCookie && strings.HasPrefix(strings.ToLower(c.Server.PublicURL), "http://") {
		c.SecondFactor.Cookie = "stepgate"
	}
}

// FactorsConfig is SPEC §11 factors: which second-factor methods exist
// and the durable store of enrolled ones. The store is opened only when a
// stored method (totp) is enabled.
type FactorsConfig struct {
	// Enabled lists the methods: email, totp. Default [email], so that a
	// config written before factors existed keeps working unchanged.
	Enabled []string `mapstructure:"enabled"`
	// Driver is sqlite (default; one process) or postgres (replicas).
	Driver   string                `mapstructure:"driver"`
	SQLite   FactorsSQLiteConfig   `mapstructure:"sqlite"`
	Postgres FactorsPostgresConfig `mapstructure:"postgres"`
	// EncryptionKey seals factor secrets (AES-256-GCM); at least 32
	// bytes; holds the key after load, whichever way it was given.
	EncryptionKey     string `mapstructure:"encryption_key"`
	EncryptionKeyFile string `mapstructure:"encryption_key_file"`
	// PreviousEncryptionKeys still open secrets during a rotation, until
	// `stepgate factors rekey` has sealed everything under the current key.
	PreviousEncryptionKeys []string             `mapstructure:"previous_encryption_keys"`
	TOTP                   FactorsTOTPConfig    `mapstructure:"totp"`
	Passkey                FactorsPasskeyConfig `mapstructure:"passkey"`
}

// FactorsPasskeyConfig is factors.passkey (WebAuthn).
type FactorsPasskeyConfig struct {
	// RPID is the relying party id; "" means the host of
	// server.public_url. A parent domain of that host lets one passkey
	// serve sibling hosts; it must not be a public suffix.
	RPID string `mapstructure:"rp_id"`
	// Attestation is none (default: no attestation asked, the AAGUID is
	// only self-asserted) or direct (needed for aaguids).
	Attestation string `mapstructure:"attestation"`
	// AAGUIDs, when set, are the only authenticator models that may
	// register (with attestation direct and metadata_file).
	AAGUIDs []string `mapstructure:"aaguids"`
	// MetadataFile is a FIDO Metadata Service (MDS3) payload in JSON that
	// ops downloaded and checked; never fetched at run time.
	MetadataFile string `mapstructure:"metadata_file"`
}

// FactorsSQLiteConfig is factors.sqlite.
type FactorsSQLiteConfig struct {
	// Path of the database file, created 0600 when missing. Default
	// /var/lib/stepgate/factors.db.
	Path string `mapstructure:"path"`
}

// FactorsPostgresConfig is factors.postgres.
type FactorsPostgresConfig struct {
	// DSN is a libpq connection string or postgres:// URL; a secret.
	DSN     string `mapstructure:"dsn"`
	DSNFile string `mapstructure:"dsn_file"`
}

// FactorsTOTPConfig is factors.totp. SHA-1 is fixed (app compatibility).
type FactorsTOTPConfig struct {
	// Issuer names the account in authenticator apps. Default stepgate.
	Issuer string        `mapstructure:"issuer"`
	Period time.Duration `mapstructure:"period"` // default 30s
	Digits int           `mapstructure:"digits"` // 6 (default) or 8
	Skew   int           `mapstructure:"skew"`   // steps either side of now; default 1
}
