package identity

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// maxTokenLen: longer tokens are refused before any decoding, so a
	// client cannot make stepgate base64- and JSON-decode megabytes.
	maxTokenLen = 8 << 10
	// maxCookieCandidates bounds how many same-named cookies are tried,
	// each costing a signature check.
	maxCookieCandidates = 4
	// leeway absorbs clock skew between the identity provider and stepgate
	// when checking exp and nbf (RFC 7519 §4.1.4: "some small leeway").
	leeway = 30 * time.Second
	// minHMACSecret is the shortest HS* secret accepted (RFC 7518 §3.2: a
	// key at least as long as the hash output).
	minHMACSecret = 32
)

// jwtSource verifies JWT access tokens. Everything is prepared by
// newJWTSource; per request there is only extraction, a cache lookup and,
// on a miss, one signature check.
type jwtSource struct {
	cookie       string
	parser       *jwt.Parser
	keyfunc      jwt.Keyfunc // built once: a method value allocates
	hmacSecret   []byte      // HS*; nil otherwise
	publicKey    any         // from PublicKeyPEM; nil otherwise
	jwks         *jwksCache  // from JWKSURL; nil otherwise
	subjectClaim string
	emailClaim   string
	sessionClaim string
	now          func() time.Time
	cache        *tokenCache // nil disables caching (tests, benchmarks)
	invalid      *invalidCache
	budget       *verifyBudget // asymmetric algorithms only; nil with HS*
	verifying    func()        // JWTConfig.Verifying
}

// ErrPublicKey marks a JWTConfig.PublicKeyPEM that does not parse or does
// not fit the configured algorithms (the caller knows which file it came
// from).
var ErrPublicKey = errors.New("public key")

func newJWTSource(cfg JWTConfig) (*jwtSource, error) {
	if len(cfg.Algorithms) == 0 {
		return nil, errors.New("jwt: algorithms: at least one is required")
	}
	var hmacAlgs, asymAlgs []string
	for _, alg := range cfg.Algorithms {
		if strings.EqualFold(alg, "none") {
			// RFC 8725 §3.1: an unsigned token is never an identity.
			return nil, errors.New(`jwt: algorithms: "none" is never allowed`)
		}
		info, ok := algorithms[alg]
		if !ok {
			return nil, fmt.Errorf("jwt: algorithms: unknown algorithm %q (want HS256/384/512, RS256/384/512, ES256/384/512 or EdDSA)", alg)
		}
		if info.family == familyHMAC {
			hmacAlgs = append(hmacAlgs, alg)
		} else {
			asymAlgs = append(asymAlgs, alg)
		}
	}
	// RFC 8725 §3.1: with HS* and asymmetric algorithms in one config, a
	// public key could end up used as an HMAC secret.
	if len(hmacAlgs) > 0 && len(asymAlgs) > 0 {
		return nil, errors.New("jwt: algorithms: HS* cannot be mixed with RS*/ES*/EdDSA (key confusion)")
	}
	s := &jwtSource{
		cookie:       cfg.Cookie,
		subjectClaim: cmp.Or(cfg.SubjectClaim, "sub"),
		emailClaim:   cmp.Or(cfg.EmailClaim, "email"),
		sessionClaim: cmp.Or(cfg.SessionClaim, "sid"),
		now:          cfg.Now,
		cache:        newTokenCache(cmp.Or(cfg.CacheSize, tokenCacheSize)),
		invalid:      newInvalidCache(cmp.Or(cfg.InvalidCacheSize, invalidCacheSize)),
		verifying:    cfg.Verifying,
	}
	if cfg.CacheSize < 0 || cfg.InvalidCacheSize < 0 {
		return nil, errors.New("jwt: negative cache size")
	}
	if cfg.VerifyConcurrency < 0 || cfg.VerifyWait < 0 {
		return nil, errors.New("jwt: negative verify_concurrency or verify_wait")
	}
	if s.now == nil {
		s.now = time.Now
	}
	if len(hmacAlgs) > 0 {
		if len(cfg.PublicKeyPEM) > 0 || cfg.JWKSURL != "" {
			return nil, errors.New("jwt: HS* algorithms take an HMAC secret only, not a public key or a JWKS URL")
		}
		if len(cfg.HMACSecret) < minHMACSecret {
			return nil, fmt.Errorf("jwt: HMAC secret: at least %d bytes required for HS*", minHMACSecret)
		}
		s.hmacSecret = slices.Clone(cfg.HMACSecret)
	} else {
		s.budget = newVerifyBudget(cmp.Or(cfg.VerifyConcurrency, DefaultVerifyConcurrency()),
			cmp.Or(cfg.VerifyWait, defaultVerifyWait), cfg.Shed)
		if len(cfg.HMACSecret) > 0 {
			return nil, errors.New("jwt: an HMAC secret is set but no HS* algorithm is configured")
		}
		switch {
		case len(cfg.PublicKeyPEM) > 0 && cfg.JWKSURL != "":
			return nil, errors.New("jwt: a public key or a JWKS URL, not both")
		case len(cfg.PublicKeyPEM) > 0:
			key, err := parsePublicKeyPEM(cfg.PublicKeyPEM)
			if err != nil {
				return nil, fmt.Errorf("jwt: %w: %w", ErrPublicKey, err)
			}
			for _, alg := range asymAlgs {
				if !keyFits(alg, key) {
					return nil, fmt.Errorf("jwt: %w: a %s key cannot verify %s", ErrPublicKey, keyTypeName(key), alg)
				}
			}
			s.publicKey = key
		case cfg.JWKSURL != "":
			u, err := url.Parse(cfg.JWKSURL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return nil, errors.New("jwt: JWKS URL: want an absolute http(s) URL")
			}
			client := cfg.HTTPClient
			if client == nil {
				client = &http.Client{Timeout: 5 * time.Second}
			}
			logger := cfg.Logger
			if logger == nil {
				logger = slog.New(slog.DiscardHandler)
			}
			logURL := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
			s.jwks = &jwksCache{url: cfg.JWKSURL, logURL: logURL.String(), client: client, now: s.now, log: logger}
		default:
			return nil, errors.New("jwt: no verification key: RS*/ES*/EdDSA need a public key or a JWKS URL")
		}
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(slices.Clone(cfg.Algorithms)),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(s.now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	s.parser = jwt.NewParser(opts...)
	s.keyfunc = s.key
	return s, nil
}

// secondFactorType is the "typ" of stepgate's own second-factor tokens
// (secondfactor.tokenType; identity cannot import secondfactor).
const secondFactorType = "stepgate-2fa+jwt"

// key is the parser's Keyfunc. The parser has already checked alg against
// the pinned list; key still checks that the key it returns fits alg, so
// no configuration or JWKS content can hand an RSA key to the HMAC
// verifier (RFC 8725 §2.1).
func (s *jwtSource) key(t *jwt.Token) (any, error) {
	// A stepgate second-factor token is explicitly typed (RFC 8725 §3.11);
	// it must never pass as an access token, even when an operator signs
	// both with the same secret.
	if typ, _ := t.Header["typ"].(string); strings.EqualFold(typ, secondFactorType) {
		return nil, errors.New("a second-factor token is not an access token")
	}
	// RFC 7515 §4.1.11: a recipient that does not understand every
	// extension listed in crit must reject the token; stepgate
	// understands none, so any crit (even an empty one) is refused.
	if _, ok := t.Header["crit"]; ok {
		return nil, errors.New(`the JOSE header has "crit": no extension is understood (RFC 7515 §4.1.11)`)
	}
	alg := t.Method.Alg()
	switch {
	case s.hmacSecret != nil:
		if !keyFits(alg, s.hmacSecret) {
			return nil, errors.New("algorithm does not fit the key")
		}
		return s.hmacSecret, nil
	case s.publicKey != nil:
		if !keyFits(alg, s.publicKey) {
			return nil, errors.New("algorithm does not fit the key")
		}
		return s.publicKey, nil
	case s.jwks != nil:
		kid, _ := t.Header["kid"].(string)
		return s.jwks.key(alg, kid)
	}
	return nil, errors.New("no key configured")
}

// authenticate tries each cookie named s.cookie in order, then the Bearer
// token; the first valid one wins. Several same-named cookies happen when
// a parent domain and a host both set one, or a stale one lingers.
func (s *jwtSource) authenticate(r *http.Request) (Identity, error) {
	var (
		buf   [maxCookieCandidates + 1]string
		cands = buf[:0]
	)
	if s.cookie != "" {
		cands = cookieValues(r.Header["Cookie"], s.cookie, cands)
	}
	if tok, ok := bearerToken(r.Header); ok {
		cands = append(cands, tok)
	}
	if len(cands) == 0 {
		return Identity{}, ErrNoCredential
	}
	var (
		err, busy error
		call      *verifyCall // made by the first uncached asymmetric check
	)
	for _, tok := range cands {
		var id Identity
		if id, err = s.verify(r.Context(), tok, &call); err == nil {
			return id, nil
		}
		if errors.Is(err, ErrBusy) {
			busy = err
		}
	}
	if busy != nil {
		// A token that was never judged might have been the valid one:
		// "try again", not "sign in" (deny on doubt, but do not lie).
		return Identity{}, busy
	}
	return Identity{}, err
}

// verify checks one raw token. Its errors wrap ErrInvalid, or are ErrBusy
// when an asymmetric check found no verification slot in time, and never
// contain the token. *call holds the request's verifyCall (for the
// verification budget), made here on first need so that cache hits and
// HS* checks allocate none.
func (s *jwtSource) verify(ctx context.Context, raw string, call **verifyCall) (Identity, error) {
	if len(raw) > maxTokenLen {
		return Identity{}, fmt.Errorf("%w: token longer than %d bytes", ErrInvalid, maxTokenLen)
	}
	now := s.now()
	sum := tokenSum(raw)
	if s.cache != nil {
		if id, ok := s.cache.get(sum, now); ok {
			return id, nil
		}
	}
	if s.invalid.has(sum) {
		return Identity{}, fmt.Errorf("%w: refused before (bad signature, malformed, expired, or another issuer or audience)", ErrInvalid)
	}
	claims := jwt.MapClaims{}
	var err error
	if s.budget == nil {
		_, err = s.parser.ParseWithClaims(raw, claims, s.keyfunc)
	} else {
		if *call == nil {
			*call = &verifyCall{s: s, ctx: ctx}
		}
		err = (*call).parse(raw, claims)
	}
	if err != nil {
		if errors.Is(err, ErrBusy) {
			// Not judged: neither cached nor ErrInvalid.
			return Identity{}, ErrBusy
		}
		if permanent(err) {
			s.invalid.add(sum)
		}
		return Identity{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	id, err := s.identity(raw, claims)
	if err != nil {
		// What the claims say does not change either.
		s.invalid.add(sum)
		return Identity{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if s.cache != nil {
		// The parser required exp, so it is present.
		if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
			s.cache.put(sum, id, exp.Time, now)
		}
	}
	return id, nil
}

// identity reads the configured claims of a verified token.
func (s *jwtSource) identity(raw string, claims jwt.MapClaims) (Identity, error) {
	sub, _ := claims[s.subjectClaim].(string)
	if sub == "" {
		return Identity{}, fmt.Errorf("claim %q: want a non-empty string", s.subjectClaim)
	}
	if !validText(sub) {
		return Identity{}, fmt.Errorf("claim %q: too long or contains control characters", s.subjectClaim)
	}
	id := Identity{Subject: sub, Emails: parseEmails(claims[s.emailClaim])}
	if v, present := claims[s.sessionClaim]; present {
		// A session claim that is present but unusable is an error rather
		// than a silent fallback to the token hash: deny on doubt.
		sid, _ := v.(string)
		if sid == "" || !validText(sid) {
			return Identity{}, fmt.Errorf("claim %q: want a non-empty string without control characters", s.sessionClaim)
		}
		id.Session = sid
	} else {
		// SPEC §3: without a session claim, step-up is bound to this very
		// access token; a refreshed token needs a new second factor.
		sum := sha256.Sum256([]byte(raw))
		id.Session = hex.EncodeToString(sum[:])
	}
	return id, nil
}

// cookieValues appends the values of every cookie called name found in
// the Cookie header lines, in order, up to maxCookieCandidates. It parses
// like net/http (RFC 6265 §5.4) but without allocating, and returns
// substrings of the header.
func cookieValues(lines []string, name string, out []string) []string {
	n := 0
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ";") {
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if v == "" {
				// An emptied cookie is how a logout looks; it is no credential.
				continue
			}
			out = append(out, v)
			if n++; n == maxCookieCandidates {
				return out
			}
		}
	}
	return out
}

// bearerToken returns the token of an "Authorization: Bearer" header (RFC
// 6750 §2.1; the scheme is case-insensitive, RFC 9110 §11.1).
func bearerToken(h http.Header) (string, bool) {
	v := h.Get("Authorization")
	const prefix = "Bearer "
	if len(v) < len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return "", false
	}
	tok := strings.TrimSpace(v[len(prefix):])
	return tok, tok != ""
}

// maxTextLen bounds subjects, sessions and header-supplied user names:
// they travel upstream in headers (SPEC §7) and into logs.
const maxTextLen = 1024

// validText reports whether s is short and free of control characters, so
// it is safe in a header (no CR/LF injection) and in a log line.
func validText(s string) bool {
	if len(s) > maxTextLen {
		return false
	}
	for _, r := range s {
		// C0 and C1 controls, DEL, and invalid UTF-8 (decoded as U+FFFD).
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\uFFFD' {
			return false
		}
	}
	return true
}
