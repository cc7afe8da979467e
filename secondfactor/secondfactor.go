// Package secondfactor is the second-factor token: it mints and verifies
// the signed token a ceremony grants, sets and clears its cookie, caches
// verified tokens, and asks a Revocations list; it is the hot path's only
// view of the second factor.
package secondfactor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Revocations is the revocation list a Tokens needs: challenge.Store and
// its Redis implementation satisfy it.
type Revocations interface {
	// Revoke marks a token id revoked for ttl (until the token would expire).
	Revoke(ctx context.Context, jti string, ttl time.Duration) error
	// Epoch returns the store's state generation: an opaque random value
	// created with the store's state, which changes whenever that state is
	// lost (a Redis restarted empty or flushed, a new process for the
	// memory store). Every token names the epoch it was minted in, so that
	// a revocation lost with the state can never make a token valid again
	// (SPEC §13).
	Epoch(ctx context.Context) (string, error)
	// Revoked reports whether the token jti, minted in epoch, must be
	// refused: its id was revoked, or the store's epoch is no longer epoch
	// (its revocations were lost since). It is on the hot path.
	Revoked(ctx context.Context, jti, epoch string) (bool, error)
}

// Config configures Tokens. Values (secret length, names, TTL) are
// validated once, where the config is loaded (package main); New only
// checks that the required parts are there.
type Config struct {
	// Secret signs tokens; at least 32 bytes (RFC 7518 §3.2).
	Secret []byte
	// PreviousSecrets still verify tokens (key rotation, SPEC §3); nil: none.
	PreviousSecrets [][]byte
	// CookieName carries the token; required.
	CookieName string
	// HeaderName carries the token for API clients; required.
	HeaderName string
	// TTL is how long a minted token lives; more than 0.
	TTL time.Duration
	// SecureCookie marks the cookie Secure (public_url is https).
	SecureCookie bool
	// Revocations is the revocation list; required.
	Revocations Revocations
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// CacheSize bounds the verified-token cache (second_factor.cache_size):
	// about 650 bytes per entry for a 300-byte token. 0 means 10,000.
	CacheSize int
}

// Grant is a valid second factor.
type Grant struct {
	Token     string
	ID        string // jti
	Subject   string
	Session   string
	AuthTime  time.Time
	ExpiresAt time.Time
	// Method is the factor that granted it: MethodEmail, MethodTOTP,
	// MethodPasskey (the token's "method" claim).
	Method string
}

// Methods (SPEC §11). A rule's factors list names them.
const (
	MethodEmail   = "email"
	MethodTOTP    = "totp"
	MethodPasskey = "passkey"
)

var (
	// ErrTokenInvalid is wrapped by every refusal of a token.
	ErrTokenInvalid = errors.New("invalid second-factor token")
	// ErrUnavailable means the revocation list could not be read or
	// written; callers deny.
	ErrUnavailable = errors.New("revocation list unavailable")
)

// Tokens mints and verifies second-factor tokens. It is safe for
// concurrent use.
type Tokens struct {
	cfg Config
	// keys verify tokens: Secret first, then PreviousSecrets.
	keys jwt.VerificationKeySet
	// parser pins HS256 and requires exp and iss (SPEC §8).
	parser *jwt.Parser
	// cache holds verified tokens for the hot path (cache.go).
	cache *tokenCache
	// now is cfg.Now, or time.Now when that is nil.
	now func() time.Time
}

// New builds Tokens from cfg.
func New(cfg Config) (*Tokens, error) {
	var errs []error
	if len(cfg.Secret) == 0 {
		errs = append(errs, errors.New("secondfactor: no secret"))
	}
	if cfg.CookieName == "" || cfg.HeaderName == "" {
		errs = append(errs, errors.New("secondfactor: no cookie or header name"))
	}
	if cfg.CacheSize < 0 {
		errs = append(errs, errors.New("secondfactor: negative cache size"))
	}
	if cfg.Revocations == nil {
		errs = append(errs, errors.New("secondfactor: no revocation list"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	t := &Tokens{cfg: cfg, now: cfg.Now, cache: newTokenCache(cmp.Or(cfg.CacheSize, defaultCacheSize))}
	if t.now == nil {
		t.now = time.Now
	}
	t.keys.Keys = append(t.keys.Keys, cfg.Secret)
	for _, p := range cfg.PreviousSecrets {
		t.keys.Keys = append(t.keys.Keys, p)
	}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithTimeFunc(func() time.Time { return t.now() }),
	)
	return t, nil
}

// TTL is how long a minted token lives (second_factor.ttl).
func (t *Tokens) TTL() time.Duration { return t.cfg.TTL }

// Revoke revokes g until it would expire. Errors wrap ErrUnavailable.
func (t *Tokens) Revoke(ctx context.Context, g Grant) error {
	ttl := g.ExpiresAt.Sub(t.now())
	if g.ID == "" || ttl <= 0 {
		// Nothing to do: an expired token is refused anyway.
		return nil
	}
	if err := t.cfg.Revocations.Revoke(ctx, g.ID, ttl); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// SetCookie sets the second-factor cookie for g (SPEC §8 attributes).
func (t *Tokens) SetCookie(w http.ResponseWriter, g Grant) {
	maxAge := int(g.ExpiresAt.Sub(t.now()) / time.Second)
	if maxAge <= 0 {
		// An expired grant must not leave a cookie behind; 0 would mean
		// "no Max-Age" to net/http.
		maxAge = -1
	}
	http.SetCookie(w, t.cookie(g.Token, g.ExpiresAt, maxAge))
}

// ClearCookie removes the second-factor cookie: same name, path and
// attributes, Max-Age=-1 (RFC 6265 §5.2.2).
func (t *Tokens) ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, t.cookie("", time.Unix(0, 0), -1))
}

func (t *Tokens) cookie(value string, expires time.Time, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     t.cfg.CookieName,
		Value:    value,
		Path:     "/",
		Expires:  expires,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   t.cfg.SecureCookie,
		SameSite: http.SameSiteLaxMode,
	}
}

// HeaderName is the header API clients send the token in.
func (t *Tokens) HeaderName() string { return t.cfg.HeaderName }
