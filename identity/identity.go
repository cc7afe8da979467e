// Package identity finds out who the user is: a JWT access token (HMAC
// secret, PEM public key or JWKS) or headers set by a trusted SSO proxy.
//
// API CONTRACT (frozen; other packages build against it).
package identity

import (
	"errors"
	"net/http"
	"net/netip"
	"time"
)

// Identity is the primary identity of a request.
type Identity struct {
	Subject string
	Emails  []string // validated addresses; the first is the primary one; may be empty
	Session string   // session binding: the session claim, or a hash of the access token
}

// ErrNoCredential means the request carries no primary credential at all.
var ErrNoCredential = errors.New("no credential")

// ErrInvalid is wrapped by every rejection of a credential that was present.
var ErrInvalid = errors.New("invalid credential")

// JWTConfig configures access-token verification.
type JWTConfig struct {
	Cookie       string   // cookie holding the token; then Authorization: Bearer
	Algorithms   []string // pinned; "none" is refused by New
	HMACSecret   []byte   // for HS*
	PublicKeyPEM []byte   // for RS*/ES*/EdDSA
	JWKSURL      string   // fetched lazily, cached
	Issuer       string   // checked when set
	Audience     string   // checked when set
	SubjectClaim string   // default "sub"
	EmailClaim   string   // default "email"; a string or a list of strings
	SessionClaim string   // default "sid"; absent => SHA-256 of the token
	// HTTPClient fetches the JWKS. Nil means a client with a 5s timeout.
	HTTPClient *http.Client
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// HeaderConfig configures identity from an SSO proxy's headers.
type HeaderConfig struct {
	User           string
	Email          string
	TrustedProxies []netip.Prefix // only these peers (RemoteAddr) may set the headers
}

// Config selects and configures the source.
type Config struct {
	Source string // "jwt" | "header"
	JWT    JWTConfig
	Header HeaderConfig
}

// Authenticator is safe for concurrent use.
type Authenticator struct{}

// New validates cfg (keys parsed here, never per request).
func New(cfg Config) (*Authenticator, error) { panic("unimplemented") }

// Authenticate returns the request's identity, ErrNoCredential, or an error
// wrapping ErrInvalid.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) { panic("unimplemented") }

// IdentityHeaders reports the header names this source trusts (for the
// proxy to strip from untrusted peers); nil for jwt.
func (a *Authenticator) IdentityHeaders() []string { panic("unimplemented") }

// Trusted reports whether the peer at remoteAddr (r.RemoteAddr form) may set
// identity headers.
func (a *Authenticator) Trusted(remoteAddr string) bool { panic("unimplemented") }
