// Package challenge is the second factor: one-time codes sent by email,
// their throttles, the Store that keeps them, mail senders, the
// second-factor token, and stepgate's own pages and API under the prefix.
//
// API CONTRACT (frozen; other packages build against it). Bodies are stubs
// until the challenge work lands.
package challenge

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/stepgate/stepgate/identity"
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

// Config configures a Service. Zero values are not defaulted here: the
// config loader sets every default.
type Config struct {
	Secret          []byte   // signs tokens and keys code MACs; at least 32 bytes
	PreviousSecrets [][]byte // still accepted for verification
	CookieName      string
	HeaderName      string
	TokenTTL        time.Duration
	SecureCookie    bool // public_url is https
	OTP             OTPConfig
	MailSubject     string
	Sender          Sender
	Store           Store
	// Prefix is the reserved path ("/.stepup"); Handler serves below it.
	Prefix string
	// Authenticate returns the primary identity (identity.Authenticator).
	Authenticate func(*http.Request) (identity.Identity, error)
	// LoginURL is identity.login_url with {rd}; "" means answer 401.
	LoginURL string
	// Templates overrides the embedded pages when non-nil.
	Templates fs.FS
	// Metrics counts sends and verifications. Nil means unregistered metrics.
	Metrics *Metrics
	// Logger receives the audit records. Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Grant is a valid second factor.
type Grant struct {
	Token     string
	ID        string // jti
	Subject   string
	Session   string
	AuthTime  time.Time
	ExpiresAt time.Time
}

// Service is safe for concurrent use.
type Service struct {
	cfg Config
	h   *handlerState // built by initHandler (handler.go)
}

// New validates cfg and parses the templates once.
func New(cfg Config) (*Service, error) { panic("unimplemented") }

// Meta is request context for audit records.
type Meta struct {
	RequestID string
	Client    string // client address
	UserAgent string
	Rule      string
}

// Send issues a code to id.Emails[index]. Errors: *LimitError (throttled or
// locked), ErrMailUnavailable, ErrStoreUnavailable, ErrBadEmail.
func (s *Service) Send(ctx context.Context, id identity.Identity, index int, m Meta) (expiresIn time.Duration, err error) {
	panic("unimplemented")
}

// Verify consumes code and mints a Grant. Errors: *CodeError (wrong code,
// wrapping ErrInvalidCode), ErrNoCode (none pending: expired, dead, used),
// *LimitError (locked), ErrStoreUnavailable.
func (s *Service) Verify(ctx context.Context, id identity.Identity, code string, m Meta) (Grant, error) {
	panic("unimplemented")
}

// Check is the hot path: it finds a valid second-factor token for id in the
// request (every cookie named CookieName, then HeaderName) no older than
// maxAge and not revoked. A store failure counts as not found (deny).
func (s *Service) Check(r *http.Request, id identity.Identity, maxAge time.Duration) (Grant, bool) {
	panic("unimplemented")
}

// Validate verifies token for id (for /api/validate).
func (s *Service) Validate(ctx context.Context, token string, id identity.Identity) (Grant, error) {
	panic("unimplemented")
}

// Revoke revokes g until it would expire.
func (s *Service) Revoke(ctx context.Context, g Grant) error { panic("unimplemented") }

// Ready reports whether the store is reachable.
func (s *Service) Ready(ctx context.Context) error { panic("unimplemented") }

// CodeError is a wrong code.
type CodeError struct {
	AttemptsLeft int
}

func (e *CodeError) Error() string { return "invalid code" }
func (e *CodeError) Unwrap() error { return ErrInvalidCode }

var (
	ErrInvalidCode      = errors.New("invalid code")
	ErrMailUnavailable  = errors.New("mail delivery unavailable")
	ErrStoreUnavailable = errors.New("challenge store unavailable")
	ErrBadEmail         = errors.New("no such address")
	ErrTokenInvalid     = errors.New("invalid second-factor token")
)

// Message is one mail.
type Message struct {
	To      string
	Subject string
	Text    string
	HTML    string
}

// Sender delivers mail: SMTP, .eml files, the log, or the demo inbox.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// Metrics are the challenge's Prometheus collectors.
type Metrics struct{}
