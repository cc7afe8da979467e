package challenge

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stepgate/stepgate/identity"
)

// Second-factor token constants (SPEC §8).
const (
	// tokenType is the JOSE "typ" header of second-factor tokens
	// (RFC 8725 §3.11: explicit typing). A token without it is refused, so
	// an access token signed with the same secret can never pass as a
	// second-factor token.
	tokenType   = "stepgate-2fa+jwt"
	tokenIssuer = "stepgate"
	// maxTokenLen bounds what is parsed; our tokens are about 400 bytes.
	maxTokenLen = 4096
	// maxCandidates bounds how many cookies and headers Check tries, so a
	// request with thousands of cookies costs a bounded amount of work.
	maxCandidates = 16
	// authTimeSkew is how far in the future auth_time may lie before a
	// token is refused (clock steps between replicas).
	authTimeSkew = time.Minute
	// tokenCacheSize bounds the verified-token cache.
	tokenCacheSize = 8192
)

var tokenAMR = []string{"otp", "email"}

// tokenClaims are the claims of a second-factor token (SPEC §8).
type tokenClaims struct {
	jwt.RegisteredClaims
	Session  string   `json:"sid"`
	AuthTime int64    `json:"auth_time"`
	AMR      []string `json:"amr"`
}

// verifiedToken is a token whose signature, type, issuer and expiry were
// checked; what depends on the request (subject, session, max age,
// revocation) is checked on every use.
type verifiedToken struct {
	subject   string
	session   string
	jti       string
	authTime  time.Time
	expiresAt time.Time
}

// tokenCache remembers verified tokens by their exact string so that the
// hot path (Check on every step_up request) skips base64, JSON and HMAC.
// Only tokens that passed full verification are stored; entries die at the
// token's exp. When full, arbitrary entries are dropped (Go's map order);
// a dropped entry only costs one full verification.
type tokenCache struct {
	mu sync.RWMutex
	m  map[string]*verifiedToken
}

func (c *tokenCache) get(tok string, now time.Time) *verifiedToken {
	c.mu.RLock()
	v := c.m[tok]
	c.mu.RUnlock()
	if v == nil || !now.Before(v.expiresAt) {
		return nil
	}
	return v
}

func (c *tokenCache) put(tok string, v *verifiedToken, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*verifiedToken)
	}
	if len(c.m) >= tokenCacheSize {
		// Drop expired entries first, then arbitrary ones, down to 7/8.
		for k, e := range c.m {
			if !now.Before(e.expiresAt) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < tokenCacheSize*7/8 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[tok] = v
}

// newJTI returns 128 random bits, base64url.
func newJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// mint signs a token for id, authenticated now.
func (s *Service) mint(id identity.Identity) (Grant, error) {
	jti, err := newJTI()
	if err != nil {
		return Grant{}, fmt.Errorf("token id: %w", err)
	}
	// JWT times are whole seconds (RFC 7519 §2 NumericDate); truncate so
	// that the Grant says exactly what the token says.
	now := s.now().Truncate(time.Second)
	exp := now.Add(s.cfg.TokenTTL)
	c := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    tokenIssuer,
			Subject:   id.Subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        jti,
		},
		Session:  id.Session,
		AuthTime: now.Unix(),
		AMR:      tokenAMR,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	t.Header["typ"] = tokenType
	signed, err := t.SignedString(s.cfg.Secret)
	if err != nil {
		return Grant{}, fmt.Errorf("sign token: %w", err)
	}
	return Grant{
		Token:     signed,
		ID:        jti,
		Subject:   id.Subject,
		Session:   id.Session,
		AuthTime:  now,
		ExpiresAt: exp,
	}, nil
}

// keyfunc refuses tokens without our typ and offers the current and the
// previous secrets (key rotation, SPEC §3).
func (s *Service) keyfunc(t *jwt.Token) (any, error) {
	if typ, _ := t.Header["typ"].(string); typ != tokenType {
		return nil, errors.New("not a second-factor token")
	}
	return s.keys, nil
}

// parse verifies what does not depend on the request: signature with a
// pinned algorithm, typ, issuer and expiry. Results are cached.
func (s *Service) parse(tok string, now time.Time) (*verifiedToken, error) {
	if v := s.cache.get(tok, now); v != nil {
		return v, nil
	}
	if len(tok) > maxTokenLen {
		return nil, ErrTokenInvalid
	}
	var c tokenClaims
	_, err := s.parser.ParseWithClaims(tok, &c, s.keyfunc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	if c.Subject == "" || c.ID == "" || c.AuthTime <= 0 || c.ExpiresAt == nil {
		return nil, fmt.Errorf("%w: missing claims", ErrTokenInvalid)
	}
	v := &verifiedToken{
		subject:   c.Subject,
		session:   c.Session,
		jti:       c.ID,
		authTime:  time.Unix(c.AuthTime, 0),
		expiresAt: c.ExpiresAt.Time,
	}
	s.cache.put(tok, v, now)
	return v, nil
}

// verify checks tok for id and maxAge, revocation included. A store
// failure is returned as ErrStoreUnavailable; callers deny on any error.
func (s *Service) verify(ctx context.Context, tok string, id identity.Identity, maxAge time.Duration) (Grant, error) {
	now := s.now()
	v, err := s.parse(tok, now)
	if err != nil {
		return Grant{}, err
	}
	// Both comparisons run in constant time and both always run, so the
	// time taken does not tell which one failed (STYLE 11).
	subOK := subtle.ConstantTimeCompare([]byte(v.subject), []byte(id.Subject))
	sidOK := subtle.ConstantTimeCompare([]byte(v.session), []byte(id.Session))
	if subOK&sidOK != 1 || id.Subject == "" {
		return Grant{}, fmt.Errorf("%w: other subject or session", ErrTokenInvalid)
	}
	age := now.Sub(v.authTime)
	if age > maxAge || age < -authTimeSkew {
		return Grant{}, fmt.Errorf("%w: too old", ErrTokenInvalid)
	}
	revoked, err := s.cfg.Store.Revoked(ctx, v.jti)
	if err != nil {
		return Grant{}, fmt.Errorf("%w: revocation list: %w", ErrStoreUnavailable, err)
	}
	if revoked {
		return Grant{}, fmt.Errorf("%w: revoked", ErrTokenInvalid)
	}
	return Grant{
		Token:     tok,
		ID:        v.jti,
		Subject:   v.subject,
		Session:   v.session,
		AuthTime:  v.authTime,
		ExpiresAt: v.expiresAt,
	}, nil
}

// Check is the hot path: it finds a valid second-factor token for id in the
// request (every cookie named CookieName, then HeaderName) no older than
// maxAge and not revoked. A store failure counts as not found (deny).
//
// Several cookies of the same name can arrive (one per Path or Domain); any
// valid one counts and an invalid one never hides a valid one.
func (s *Service) Check(r *http.Request, id identity.Identity, maxAge time.Duration) (Grant, bool) {
	ctx := r.Context()
	n := 0
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var v string
			var ok bool
			if v, line, ok = nextCookie(line, s.cfg.CookieName); !ok {
				continue
			}
			if n++; n > maxCandidates {
				return Grant{}, false
			}
			if g, err := s.verify(ctx, v, id, maxAge); err == nil {
				return g, true
			}
		}
	}
	for _, h := range r.Header.Values(s.cfg.HeaderName) {
		if n++; n > maxCandidates {
			return Grant{}, false
		}
		if g, err := s.verify(ctx, h, id, maxAge); err == nil {
			return g, true
		}
	}
	return Grant{}, false
}

// Validate verifies token for id (for /api/validate). Any token still
// within its TTL is accepted; errors wrap ErrTokenInvalid, or
// ErrStoreUnavailable when the revocation list cannot be read.
func (s *Service) Validate(ctx context.Context, token string, id identity.Identity) (Grant, error) {
	return s.verify(ctx, token, id, s.cfg.TokenTTL)
}

// nextCookie reads the first "name=value" pair of a Cookie header line
// (RFC 6265 §5.4, split and trimmed as net/http does) and returns the rest
// of the line; ok reports whether the pair is named name. It returns
// substrings of line and does not allocate, unlike http.Request.Cookies,
// which builds an http.Cookie for every pair on every step_up request. The
// value's bytes are not validated here: a value is only ever used as a
// token that must pass full verification, so a malformed one is refused
// there, and the candidate bound counts it like any other.
func nextCookie(line, name string) (value, rest string, ok bool) {
	part, rest, _ := strings.Cut(line, ";")
	k, v, _ := strings.Cut(part, "=")
	if name == "" || strings.Trim(k, " \t") != name {
		return "", rest, false
	}
	v = strings.Trim(v, " \t")
	// A quoted value stands for what is between the quotes (net/http
	// parseCookieValue with allowDoubleQuote).
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	return v, rest, true
}
