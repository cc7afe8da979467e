// Package challenge is the ceremonies that grant a second factor: one-time
// codes sent by email, their throttles, the short-lived Store that keeps
// them, CSRF, and stepgate's own pages and API under the prefix.
package challenge

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/stepgate/stepgate/challenge/mailer"
	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/passkey"
	"github.com/stepgate/stepgate/factors/totp"
	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/secondfactor"
)

// OTPConfig is SPEC §3 otp.
type OTPConfig struct {
	Length             int
	TTL                time.Duration
	MaxAttempts        int
	ResendAfter        time.Duration
	MaxSendsPerHour    int
	MaxFailuresPerHour int
	Lockout            time.Duration
}

// Config configures a Service. Zero values are not defaulted here, and
// values are not validated: the config loader (package main) sets every
// default and checks every value, once, at load.
type Config struct {
	// Secret keys code MACs and CSRF tokens (second_factor.secret); at
	// least 32 bytes.
	Secret []byte
	// Tokens mints, verifies and sets the second-factor token; required.
	Tokens      *secondfactor.Tokens
	OTP         OTPConfig
	MailSubject string
	Sender      Sender
	Store       Store
	// Prefix is the reserved path ("/.stepup"); Handler serves below it.
	Prefix string
	// Authenticate returns the primary identity (identity.Authenticator).
	Authenticate func(*http.Request) (identity.Identity, error)
	// LoginURL is identity.login_url with {rd}; "" means answer 401.
	LoginURL string
	// Templates overrides the embedded pages when non-nil.
	Templates fs.FS
	// UI is what the pages and mails show of the protected site
	// (ui.* keys). The zero value names no site and shows times in UTC.
	UI UIConfig
	// Areas are the policy's step_up rules, for the status page's "how
	// long your confirmation still counts" per area. Nil lists none.
	Areas []Area
	// Metrics counts sends and verifications. Nil means unregistered metrics.
	Metrics *Metrics
	// Logger receives the audit records. Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Passkeys is the WebAuthn relying party (factors/passkey); nil means
	// passkeys are off and their pages and API answer 404.
	Passkeys *passkey.RP

	// Methods are the enabled second-factor methods (factors.enabled),
	// strongest first; nil means email only.
	Methods []string
	// RuleMethods returns the methods that satisfy the rule deciding the
	// return path rd (SPEC §11 factors), so the challenge page offers only
	// those; nil, or a nil answer, means Methods.
	RuleMethods func(r *http.Request, rd string) []string
	// RuleFor returns the step_up rule deciding the return path rd on r's
	// host under the live policy (the one the gate decides with, so a
	// reload applies): its name and max_age. ok is false when rd is not
	// decided by a step_up rule. Nil means unknown; the challenge page
	// then does not say the page's limit. A rule name in the query is
	// never trusted: the rule comes only from rd.
	RuleFor func(r *http.Request, rd string) (rule string, maxAge time.Duration, ok bool)
	// Factors is the enrolled-factor store; required when Methods has totp.
	Factors factors.Store
	// Keyring seals and opens factor secrets; required with Factors.
	Keyring *factors.Keyring
	// TOTP are the parameters of new TOTP factors (factors.totp).
	TOTP totp.Params
	// TOTPIssuer labels the account in authenticator apps.
	TOTPIssuer string
}

// Service is safe for concurrent use.
type Service struct {
	cfg Config
	h   *handlerState // built by initHandler (handler.go)

	// otpKey keys code MACs; derived from Secret (code.go).
	otpKey []byte
	// metrics is cfg.Metrics, or unregistered collectors when that is nil.
	metrics *Metrics
	// log is cfg.Logger, or slog.Default() when that is nil.
	log *slog.Logger
	// now is cfg.Now, or time.Now when that is nil.
	now func() time.Time
	// mailTimeout bounds one Sender.Send call (defaultMailTimeout).
	mailTimeout time.Duration
}

// defaultMailTimeout bounds a whole send, on top of the senders' own
// per-call timeouts, so that a slow mail server never holds a request
// (SPEC §9).
const defaultMailTimeout = 20 * time.Second

// New validates cfg and parses the templates once.
func New(cfg Config) (*Service, error) {
	s, err := newService(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.initHandler(); err != nil {
		return nil, err
	}
	return s, nil
}

// newService validates cfg and builds everything but the pages.
func newService(cfg Config) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Service{
		cfg:         cfg,
		otpKey:      deriveKey(cfg.Secret, otpKeyLabel),
		metrics:     cfg.Metrics,
		log:         cfg.Logger,
		now:         cfg.Now,
		mailTimeout: defaultMailTimeout,
	}
	if s.metrics == nil {
		s.metrics = NewMetrics(nil)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// validate checks that the required dependencies are there. Values (OTP
// length, TTLs, limits, the subject line) are validated once, where the
// config is loaded (package main); a zero value here is not defaulted.
func (c *Config) validate() error {
	var errs []error
	if len(c.Secret) == 0 {
		errs = append(errs, errors.New("challenge: no secret"))
	}
	if c.Tokens == nil {
		errs = append(errs, errors.New("challenge: no second-factor tokens"))
	}
	if c.Sender == nil {
		errs = append(errs, errors.New("challenge: no mail sender"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("challenge: no store"))
	}
	if c.Authenticate == nil {
		errs = append(errs, errors.New("challenge: no authenticator"))
	}
	if slices.Contains(c.Methods, secondfactor.MethodTOTP) && (c.Factors == nil || c.Keyring == nil) {
		errs = append(errs, errors.New("challenge: totp is enabled but there is no factor store or keyring"))
	}
	return errors.Join(errs...)
}

// Meta is request context for audit records.
type Meta struct {
	RequestID string
	Client    string // client address
	UserAgent string
	Rule      string
}

// metaKey is the context key of a Meta, for audit records of calls whose
// signature has no Meta (Revoke).
type metaKey struct{}

// withMeta returns ctx carrying m.
func withMeta(ctx context.Context, m Meta) context.Context {
	return context.WithValue(ctx, metaKey{}, m)
}

// metaFrom returns the Meta ctx carries, or the zero Meta.
func metaFrom(ctx context.Context) Meta {
	m, _ := ctx.Value(metaKey{}).(Meta)
	return m
}

// Revoke revokes g until it would expire. The audit record takes its
// request id, client and user agent from a Meta in ctx, when there is one.
func (s *Service) Revoke(ctx context.Context, g secondfactor.Grant) error {
	if g.ID == "" || !g.ExpiresAt.After(s.now()) {
		// Nothing to do: an expired token is refused anyway.
		return nil
	}
	id := identity.Identity{Subject: g.Subject}
	if err := s.cfg.Tokens.Revoke(ctx, g); err != nil {
		s.audit(ctx, slog.LevelError, "token revoke failed", "token_revoked", "store_error", id, metaFrom(ctx), err)
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	s.audit(ctx, slog.LevelInfo, "token revoked", "token_revoked", "ok", id, metaFrom(ctx), nil)
	return nil
}

// Ready reports whether the store, and the factor store when there is
// one, are reachable.
func (s *Service) Ready(ctx context.Context) error {
	if err := s.cfg.Store.Ping(ctx); err != nil {
		return err
	}
	if s.cfg.Factors != nil {
		if err := s.cfg.Factors.Ping(ctx); err != nil {
			return fmt.Errorf("factor store: %w", err)
		}
	}
	return nil
}

// Sender delivers mail: SMTP, .eml files, the log, or the demo inbox.
type Sender interface {
	Send(ctx context.Context, m mailer.Message) error
}

// UIConfig is the ui section: the site's name, logo and time zone.
type UIConfig struct {
	// AppName names the protected site in titles, headings and mails
	// ("Acme Portal"); "" names none.
	AppName string
	// Logo is an image served at Prefix+"/logo" and shown beside the
	// name; nil shows none. LogoType is its Content-Type.
	Logo     []byte
	LogoType string
	// TimeZone is the zone of the clock times on pages and in mails; nil
	// means UTC. The zone's name is always shown with the time.
	TimeZone *time.Location
}

// Area is one step_up rule as the status page names it.
type Area struct {
	Rule   string        // the rule's name
	MaxAge time.Duration // how old a second factor it accepts
}

// zone is UI.TimeZone or UTC.
func (c *Config) zone() *time.Location {
	if c.UI.TimeZone != nil {
		return c.UI.TimeZone
	}
	return time.UTC
}

// audit writes one audit record: who, where from, what and how it ended,
// then the ceremony's own attributes (extra) and the error; never a code,
// token or cookie value (SPEC §9). Every ceremony audits through it.
func (s *Service) audit(ctx context.Context, lvl slog.Level, msg, event, outcome string, id identity.Identity, m Meta, cause error, extra ...slog.Attr) {
	attrs := []slog.Attr{
		slog.String("event", event),
		slog.String("user", id.Subject),
		slog.String("rule", m.Rule),
		slog.String("client", m.Client),
		slog.String("request_id", m.RequestID),
		slog.String("user_agent", m.UserAgent),
		slog.String("outcome", outcome),
	}
	attrs = append(attrs, extra...)
	if cause != nil {
		attrs = append(attrs, slog.String("error", cause.Error()))
	}
	s.log.LogAttrs(ctx, lvl, msg, attrs...)
}
