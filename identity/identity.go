// Package identity finds out who the user is: a JWT access token (HMAC
// secret, PEM public key or JWKS) or headers set by a trusted SSO proxy.
//
// Choices where SPEC §3 is silent:
//
//   - Tokens come from every cookie named JWTConfig.Cookie (at most four, in
//     order), then from Authorization: Bearer; the first valid one wins.
//     Tokens over 8 KiB are refused before any decoding.
//   - exp is required; exp and nbf get a 30 s leeway for clock skew.
//   - HS* cannot be mixed with asymmetric algorithms in one config, and
//     every key is checked against the token's alg before use (RFC 8725
//     §2.1), so a public key is never used as an HMAC secret.
//   - A JWKS is fetched on first use, again after an hour, and on an
//     unknown kid, never more than once a minute; a failed fetch keeps the
//     previous keys. Symmetric ("oct") JWKS keys are ignored.
//   - Email entries that are not exactly one bare address (no display
//     name, no CR/LF, at most 254 bytes) are dropped, not fatal: the user
//     keeps the identity, only without that address.
//   - A present but unusable session claim is an error; an absent one
//     gives the hex SHA-256 of the token.
//   - The header source's session is "hdr:" + hex SHA-256 of the user, so
//     its second factor is bound to the user only.
//   - Verified tokens are cached (10,000 entries, until their exp), keyed
//     by the exact token string.
//   - At most JWTConfig.VerifyConcurrency uncached RS*/ES*/EdDSA
//     signature checks run at once; a request waits VerifyWait at most for
//     one, then gets ErrBusy (budget.go).
package identity

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"
)

// Identity is the primary identity of a request.
type Identity struct {
	Subject string
	Emails  []string // validated addresses; the first is the primary one; may be empty; read-only (may be shared with the token cache)
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
	// Logger receives JWKS fetch failures. Nil discards them.
	Logger *slog.Logger
	// CacheSize bounds the verified-token cache (identity.jwt.cache_size):
	// tokens are kept by their SHA-256 until their exp, about 400 bytes per
	// entry. 0 means 10,000.
	CacheSize int
	// InvalidCacheSize bounds the cache of tokens refused for good
	// (identity.jwt.invalid_cache_size, invalid.go), least recently used
	// out first, about 200 bytes per entry. 0 means 10,000.
	InvalidCacheSize int
	// VerifyConcurrency bounds the asymmetric (RS*, ES*, EdDSA)
	// signature checks of tokens found in neither cache that run at once
	// (identity.jwt.verify_concurrency, budget.go). 0 means
	// DefaultVerifyConcurrency. HS* checks are not bounded.
	VerifyConcurrency int
	// VerifyWait is the longest a request waits for a verification slot
	// (never past its context) before Authenticate returns ErrBusy
	// (identity.jwt.verify_wait). 0 means 500ms.
	VerifyWait time.Duration
	// Shed, when set, counts the verifications refused with ErrBusy
	// (stepgate_token_verifications_shed_total). It outlives a reload.
	Shed interface{ Inc() }
	// Verifying, when set, runs while a verification slot is held, just
	// before the signature check: tests hold a slot with it. Nil in
	// stepgate.
	Verifying func()
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
type Authenticator struct {
	jwt    *jwtSource    // set when Source is "jwt"
	header *headerSource // set when Source is "header"
	// idHeaders are HeaderConfig's names, whatever the source: with jwt no
	// peer may set them, since an upstream that once sat behind an SSO
	// proxy may still believe them.
	idHeaders []string
}

// New validates cfg (keys parsed here, never per request). An empty Source
// means "jwt", the SPEC §3 default.
func New(cfg Config) (*Authenticator, error) {
	switch cfg.Source {
	case "", "jwt":
		s, err := newJWTSource(cfg.JWT)
		if err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		return &Authenticator{jwt: s, idHeaders: headerNames(cfg.Header)}, nil
	case "header":
		s, err := newHeaderSource(cfg.Header)
		if err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		return &Authenticator{header: s, idHeaders: headerNames(cfg.Header)}, nil
	default:
		return nil, fmt.Errorf("identity: unknown source %q (want jwt or header)", cfg.Source)
	}
}

// Authenticate returns the request's identity, ErrNoCredential, an error
// wrapping ErrInvalid, or ErrBusy (no verification slot in time: answer
// 503, try again).
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	if a.header != nil {
		return a.header.authenticate(r)
	}
	return a.jwt.authenticate(r)
}

// IdentityHeaders reports the identity header names (HeaderConfig.User
// and Email) for the proxy to strip unless Trusted: with the jwt source no
// peer is trusted to set them (SPEC §7).
func (a *Authenticator) IdentityHeaders() []string { return a.idHeaders }

// headerNames lists h's non-empty header names.
func headerNames(h HeaderConfig) []string {
	var names []string
	for _, n := range []string{h.User, h.Email} {
		if n != "" {
			names = append(names, http.CanonicalHeaderKey(n))
		}
	}
	return names
}

// Trusted reports whether the peer at remoteAddr (r.RemoteAddr form) may set
// identity headers.
func (a *Authenticator) Trusted(remoteAddr string) bool {
	return a.header != nil && a.header.trustedPeer(remoteAddr)
}
