package secondfactor

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
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
)

// amrOf is the RFC 8176 amr claim of a method. Email keeps the values
// tokens had before methods existed; "email" is not registered, so the
// gate decides by the "method" claim, never by amr.
func amrOf(method string) []string {
	switch method {
	case MethodTOTP:
		return []string{"otp"} // RFC 8176 §2 otp: a one-time password (RFC 6238)
	case MethodPasskey:
		return []string{"hwk", "user"} // RFC 8176 §2: proof of a hardware key, user presence
	default:
		return []string{"otp", "email"}
	}
}

// tokenClaims are the claims of a second-factor token (SPEC §8).
type tokenClaims struct {
	jwt.RegisteredClaims
	Session  string   `json:"sid"`
	AuthTime int64    `json:"auth_time"`
	AMR      []string `json:"amr"`
	// Epoch is the store's state generation when the token was minted
	// (Revocations.Epoch). A token from another epoch is refused: the
	// store has lost the revocations that might concern it.
	Epoch string `json:"epoch"`
	// Method is the factor that granted the token. Tokens minted before
	// methods existed have none and count as MethodEmail, the only method
	// there was.
	Method string `json:"method,omitempty"`
}

// newJTI returns 128 random bits, base64url.
func newJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Mint signs a token for id, authenticated now by an email code, naming
// the store's current epoch.
func (t *Tokens) Mint(ctx context.Context, id identity.Identity) (Grant, error) {
	return t.MintMethod(ctx, id, MethodEmail)
}

// MintMethod signs a token for id, authenticated now by method.
func (t *Tokens) MintMethod(ctx context.Context, id identity.Identity, method string) (Grant, error) {
	jti, err := newJTI()
	if err != nil {
		return Grant{}, fmt.Errorf("token id: %w", err)
	}
	epoch, err := t.cfg.Revocations.Epoch(ctx)
	if err != nil {
		return Grant{}, fmt.Errorf("%w: epoch: %w", ErrUnavailable, err)
	}
	// JWT times are whole seconds (RFC 7519 §2 NumericDate); truncate so
	// that the Grant says exactly what the token says.
	now := t.now().Truncate(time.Second)
	exp := now.Add(t.cfg.TTL)
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
		Epoch:    epoch,
		AMR:      amrOf(method),
		Method:   method,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	tok.Header["typ"] = tokenType
	signed, err := tok.SignedString(t.cfg.Secret)
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
		Method:    method,
	}, nil
}

// keyfunc refuses tokens without our typ or with a crit header, and
// offers the current and the previous secrets (key rotation, SPEC §3).
func (t *Tokens) keyfunc(tok *jwt.Token) (any, error) {
	if typ, _ := tok.Header["typ"].(string); typ != tokenType {
		return nil, errors.New("not a second-factor token")
	}
	// RFC 7515 §4.1.11: stepgate mints no crit and understands none.
	if _, ok := tok.Header["crit"]; ok {
		return nil, errors.New(`the JOSE header has "crit" (RFC 7515 §4.1.11)`)
	}
	return t.keys, nil
}

// parse verifies what does not depend on the request: signature with a
// pinned algorithm, typ, issuer and expiry. Results are cached.
func (t *Tokens) parse(tok string, now time.Time) (*verifiedToken, error) {
	if v := t.cache.get(tok, now); v != nil {
		return v, nil
	}
	if len(tok) > maxTokenLen {
		return nil, ErrTokenInvalid
	}
	var c tokenClaims
	_, err := t.parser.ParseWithClaims(tok, &c, t.keyfunc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	if c.Subject == "" || c.ID == "" || c.AuthTime <= 0 || c.ExpiresAt == nil || c.Epoch == "" {
		return nil, fmt.Errorf("%w: missing claims", ErrTokenInvalid)
	}
	method := c.Method
	if method == "" {
		method = MethodEmail
	}
	v := &verifiedToken{
		subject:   c.Subject,
		session:   c.Session,
		jti:       c.ID,
		epoch:     c.Epoch,
		method:    method,
		authTime:  time.Unix(c.AuthTime, 0),
		expiresAt: c.ExpiresAt.Time,
	}
	t.cache.put(tok, v)
	return v, nil
}

// verify checks tok for id and maxAge, revocation included. A store
// failure is returned as ErrUnavailable; callers deny on any error.
func (t *Tokens) verify(ctx context.Context, tok string, id identity.Identity, maxAge time.Duration, methods string) (Grant, error) {
	now := t.now()
	v, err := t.parse(tok, now)
	if err != nil {
		return Grant{}, err
	}
	if !methodAllowed(methods, v.method) {
		return Grant{}, fmt.Errorf("%w: method %s not allowed here (%w)", ErrTokenInvalid, v.method, errMethod)
	}
	// Both comparisons run in constant time and both always run, so the
	// time taken does not tell which one failed (STYLE 11).
	subOK := subtle.ConstantTimeCompare([]byte(v.subject), []byte(id.Subject))
	sidOK := subtle.ConstantTimeCompare([]byte(v.session), []byte(id.Session))
	if subOK&sidOK != 1 || id.Subject == "" {
		return Grant{}, fmt.Errorf("%w: %w", ErrTokenInvalid, errOtherUser)
	}
	age := now.Sub(v.authTime)
	if age > maxAge || age < -authTimeSkew {
		return Grant{AuthTime: v.authTime}, fmt.Errorf("%w: %w", ErrTokenInvalid, errTooOld)
	}
	revoked, err := t.cfg.Revocations.Revoked(ctx, v.jti, v.epoch)
	if err != nil {
		return Grant{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if revoked {
		return Grant{}, fmt.Errorf("%w: %w", ErrTokenInvalid, errRevoked)
	}
	return Grant{
		Token:     tok,
		ID:        v.jti,
		Subject:   v.subject,
		Session:   v.session,
		AuthTime:  v.authTime,
		ExpiresAt: v.expiresAt,
		Method:    v.method,
	}, nil
}

// Check is the hot path: it finds a valid second-factor token for id in the
// request (every cookie named CookieName, then HeaderName) no older than
// maxAge and not revoked. A revocation-list failure counts as not found
// (deny).
//
// Several cookies of the same name can arrive (one per Path or Domain); any
// valid one counts and an invalid one never hides a valid one.
func (t *Tokens) Check(r *http.Request, id identity.Identity, maxAge time.Duration) (Grant, bool) {
	return t.CheckMethods(r, id, maxAge, "")
}

// CheckMethods is Check for a rule that lists the methods satisfying it
// (SPEC §11 factors): a token granted by another method does not count.
// methods is comma-separated ("totp,email", as policy.Decision.Factors
// holds it, so the hot path does not allocate); "" means any.
func (t *Tokens) CheckMethods(r *http.Request, id identity.Identity, maxAge time.Duration, methods string) (Grant, bool) {
	ctx := r.Context()
	n := 0
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var v string
			var ok bool
			if v, line, ok = nextCookie(line, t.cfg.CookieName); !ok {
				continue
			}
			if n++; n > maxCandidates {
				return Grant{}, false
			}
			if g, err := t.verify(ctx, v, id, maxAge, methods); err == nil {
				return g, true
			}
		}
	}
	for _, h := range r.Header.Values(t.cfg.HeaderName) {
		if n++; n > maxCandidates {
			return Grant{}, false
		}
		if g, err := t.verify(ctx, h, id, maxAge, methods); err == nil {
			return g, true
		}
	}
	return Grant{}, false
}

// Why a request has no grant, as Reason.Code says it in the
// step_up_required audit record.
const (
	WhyNone        = "no_second_factor"      // no token at all
	WhyInvalid     = "invalid_token"         // a token that does not verify (signature, expiry, format)
	WhyMethod      = "method_not_allowed"    // granted by a method the rule does not list
	WhyOtherUser   = "other_user_or_session" // another user's or session's token
	WhyTooOld      = "too_old"               // older than the rule's max_age
	WhyRevoked     = "revoked"               // removed by its user (or a state loss)
	WhyUnavailable = "store_unavailable"     // the revocation list could not be read
)

var (
	errMethod    = errors.New("method not allowed here")
	errOtherUser = errors.New("other subject or session")
	errTooOld    = errors.New("too old")
	errRevoked   = errors.New("revoked")
)

// Reason says why CheckMethods found no grant.
type Reason struct {
	Code string        // one of the Why constants
	Age  time.Duration // for WhyTooOld: how long ago the second factor was given
}

// Why is CheckMethods' explanation when it finds no grant: the reason of
// the candidate that came closest (a token too old for this rule says
// more than a stranger's). It verifies the candidates again, so it is for
// the challenge path only, never the hot path.
func (t *Tokens) Why(r *http.Request, id identity.Identity, maxAge time.Duration, methods string) Reason {
	best, rank := Reason{Code: WhyNone}, 0
	try := func(tok string) {
		g, err := t.verify(r.Context(), tok, id, maxAge, methods)
		var why Reason
		var k int
		switch {
		case err == nil:
			return
		case errors.Is(err, ErrUnavailable):
			why, k = Reason{Code: WhyUnavailable}, 6
		case errors.Is(err, errTooOld):
			why, k = Reason{Code: WhyTooOld, Age: t.now().Sub(g.AuthTime)}, 5
		case errors.Is(err, errRevoked):
			why, k = Reason{Code: WhyRevoked}, 4
		case errors.Is(err, errMethod):
			why, k = Reason{Code: WhyMethod}, 3
		case errors.Is(err, errOtherUser):
			why, k = Reason{Code: WhyOtherUser}, 2
		default:
			why, k = Reason{Code: WhyInvalid}, 1
		}
		if k > rank {
			best, rank = why, k
		}
	}
	n := 0
	for _, line := range r.Header["Cookie"] {
		for line != "" && n < maxCandidates {
			var v string
			var ok bool
			if v, line, ok = nextCookie(line, t.cfg.CookieName); ok {
				n++
				try(v)
			}
		}
	}
	for _, h := range r.Header.Values(t.cfg.HeaderName) {
		if n++; n > maxCandidates {
			break
		}
		try(h)
	}
	return best
}

// Validate verifies token for id (for /api/validate). Any token still
// within its TTL is accepted; errors wrap ErrTokenInvalid, or
// ErrUnavailable when the revocation list cannot be read.
func (t *Tokens) Validate(ctx context.Context, token string, id identity.Identity) (Grant, error) {
	return t.verify(ctx, token, id, t.cfg.TTL, "")
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

// methodAllowed reports whether method is in the comma-separated list
// methods ("" allows any).
func methodAllowed(methods, method string) bool {
	if methods == "" {
		return true
	}
	for methods != "" {
		var m string
		m, methods, _ = strings.Cut(methods, ",")
		if m == method {
			return true
		}
	}
	return false
}
