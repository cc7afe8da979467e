package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestNewRejects(t *testing.T) {
	rsaPEM := publicPEM(t, rsaKey())
	ecPEM := publicPEM(t, ecKey())
	privDER, err := x509.MarshalPKCS8PrivateKey(edKey())
	if err != nil {
		t.Fatal(err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error
	}{
		{"no algorithms", Config{JWT: JWTConfig{HMACSecret: testSecret}}, "at least one"},
		{"none", Config{JWT: JWTConfig{Algorithms: []string{"none"}, HMACSecret: testSecret}}, `"none"`},
		{"None any case", Config{JWT: JWTConfig{Algorithms: []string{"HS256", "NoNe"}, HMACSecret: testSecret}}, `"none"`},
		{"unknown alg", Config{JWT: JWTConfig{Algorithms: []string{"PS256"}, PublicKeyPEM: rsaPEM}}, "unknown algorithm"},
		{"lower-case alg", Config{JWT: JWTConfig{Algorithms: []string{"hs256"}, HMACSecret: testSecret}}, "unknown algorithm"},
		{"mixed HS and RS", Config{JWT: JWTConfig{Algorithms: []string{"HS256", "RS256"}, HMACSecret: testSecret, PublicKeyPEM: rsaPEM}}, "cannot be mixed"},
		{"short secret", Config{JWT: JWTConfig{Algorithms: []string{"HS256"}, HMACSecret: testSecret[:31]}}, "at least 32 bytes"},
		{"HS with PEM", Config{JWT: JWTConfig{Algorithms: []string{"HS256"}, HMACSecret: testSecret, PublicKeyPEM: rsaPEM}}, "HMAC secret only"},
		{"RS with secret", Config{JWT: JWTConfig{Algorithms: []string{"RS256"}, HMACSecret: testSecret, PublicKeyPEM: rsaPEM}}, "no HS* algorithm"},
		{"RS without key", Config{JWT: JWTConfig{Algorithms: []string{"RS256"}}}, "need a public key or a JWKS URL"},
		{"PEM and JWKS", Config{JWT: JWTConfig{Algorithms: []string{"RS256"}, PublicKeyPEM: rsaPEM, JWKSURL: "https://idp.example.com/jwks"}}, "not both"},
		{"EC key for RS256", Config{JWT: JWTConfig{Algorithms: []string{"RS256"}, PublicKeyPEM: ecPEM}}, "cannot verify RS256"},
		{"P-256 key for ES384", Config{JWT: JWTConfig{Algorithms: []string{"ES256", "ES384"}, PublicKeyPEM: ecPEM}}, "cannot verify ES384"},
		{"RSA key for EdDSA", Config{JWT: JWTConfig{Algorithms: []string{"EdDSA"}, PublicKeyPEM: rsaPEM}}, "cannot verify EdDSA"},
		{"private key PEM", Config{JWT: JWTConfig{Algorithms: []string{"EdDSA"}, PublicKeyPEM: privPEM}}, "private key"},
		{"garbage PEM", Config{JWT: JWTConfig{Algorithms: []string{"RS256"}, PublicKeyPEM: []byte("not pem")}}, "no PEM block"},
		{"two PEM blocks", Config{JWT: JWTConfig{Algorithms: []string{"RS256"}, PublicKeyPEM: append(slices.Clone(rsaPEM), rsaPEM...)}}, "more than one"},
		{"relative JWKS URL", Config{JWT: JWTConfig{Algorithms: []string{"RS256"}, JWKSURL: "/jwks"}}, "absolute http(s) URL"},
		{"file JWKS URL", Config{JWT: JWTConfig{Algorithms: []string{"RS256"}, JWKSURL: "file:///etc/jwks"}}, "absolute http(s) URL"},
		{"unknown source", Config{Source: "cookie"}, "unknown source"},
		{"header without trusted proxies", Config{Source: "header", Header: HeaderConfig{User: "X-Forwarded-User"}}, "trusted proxy"},
		{"header bad name", Config{Source: "header", Header: HeaderConfig{User: "X Forwarded User"}}, "not a valid header name"},
		{"header empty name", Config{Source: "header", Header: HeaderConfig{}}, "not a valid header name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(tt.cfg)
			if err == nil {
				t.Fatalf("New = %v, nil; want error containing %q", a, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %q; want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestNewCopiesSecret(t *testing.T) {
	c := newClock()
	cfg := hsConfig(c)
	cfg.JWT.HMACSecret = slices.Clone(testSecret)
	a := newAuth(t, cfg)
	tok := hs256(t, claims())
	cfg.JWT.HMACSecret[0] ^= 0xff // the caller reuses its buffer
	if _, err := a.Authenticate(request(nil, tok)); err != nil {
		t.Errorf("Authenticate after caller changed its secret buffer: %v; want success", err)
	}
}

// TestAuthenticateHS256 covers token extraction and claim checks.
func TestAuthenticateHS256(t *testing.T) {
	c := newClock()
	cfg := hsConfig(c)
	cfg.JWT.Issuer = "https://idp.example.com"
	cfg.JWT.Audience = "stepgate"
	a := newAuth(t, cfg)

	std := func(kv ...any) jwt.MapClaims {
		return claims(append([]any{"iss", "https://idp.example.com", "aud", "stepgate"}, kv...)...)
	}
	valid := hs256(t, std())
	bob := hs256(t, std("sub", "bob", "sid", "session-bob"))
	noSid := hs256(t, std("sid", nil))
	bigPad := strings.Repeat("x", maxTokenLen)
	oversized := hs256(t, std("pad", bigPad))
	noneTok := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, std(), "")
	// A stepgate second-factor token signed with the same secret must never
	// pass as an access token.
	secondFactor := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, std())
		tok.Header["typ"] = "stepgate-2fa+jwt"
		s, err := tok.SignedString(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()

	type want struct {
		err     error // nil, ErrNoCredential or ErrInvalid
		sub     string
		emails  []string
		session string
	}
	alice := want{sub: "alice", emails: []string{"alice@example.com"}, session: "session-1"}
	tests := []struct {
		name    string
		cookies []string
		bearer  string
		auth    string // raw Authorization header, when set
		want    want
	}{
		{name: "cookie", cookies: []string{"access_token=" + valid}, want: alice},
		{name: "bearer", bearer: valid, want: alice},
		{name: "bearer scheme any case", auth: "bEaReR " + valid, want: alice},
		{name: "quoted cookie", cookies: []string{`access_token="` + valid + `"`}, want: alice},
		{name: "cookie among others", cookies: []string{"a=1; access_token=" + valid + "; b=2"}, want: alice},
		{name: "no credential", want: want{err: ErrNoCredential}},
		{name: "other cookie only", cookies: []string{"access_token_x=" + valid}, want: want{err: ErrNoCredential}},
		{name: "empty cookie", cookies: []string{"access_token="}, want: want{err: ErrNoCredential}},
		{name: "basic auth", auth: "Basic YWxpY2U6cHc=", want: want{err: ErrNoCredential}},
		{name: "empty bearer", auth: "Bearer   ", want: want{err: ErrNoCredential}},
		{name: "garbage", bearer: "not.a.token", want: want{err: ErrInvalid}},
		{name: "alg none", bearer: noneTok, want: want{err: ErrInvalid}},
		{name: "second-factor token as access token", bearer: secondFactor, want: want{err: ErrInvalid}},
		{name: "alg none, signature stripped", bearer: strings.Join(strings.Split(valid, ".")[:2], ".") + ".", want: want{err: ErrInvalid}},
		{name: "wrong secret", bearer: sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), std(), ""), want: want{err: ErrInvalid}},
		{name: "HS384 not configured", bearer: sign(t, jwt.SigningMethodHS384, testSecret, std(), ""), want: want{err: ErrInvalid}},
		{name: "expired beyond leeway", bearer: hs256(t, std("exp", t0.Add(-leeway-time.Second).Unix())), want: want{err: ErrInvalid}},
		{name: "expired within leeway", bearer: hs256(t, std("exp", t0.Add(-leeway+time.Second).Unix())), want: alice},
		{name: "missing exp", bearer: hs256(t, std("exp", nil)), want: want{err: ErrInvalid}},
		{name: "exp not a number", bearer: hs256(t, std("exp", "tomorrow")), want: want{err: ErrInvalid}},
		{name: "not yet valid", bearer: hs256(t, std("nbf", t0.Add(time.Hour).Unix())), want: want{err: ErrInvalid}},
		{name: "wrong issuer", bearer: hs256(t, std("iss", "https://evil.example.com")), want: want{err: ErrInvalid}},
		{name: "missing issuer", bearer: hs256(t, std("iss", nil)), want: want{err: ErrInvalid}},
		{name: "wrong audience", bearer: hs256(t, std("aud", "other-app")), want: want{err: ErrInvalid}},
		{name: "audience list", bearer: hs256(t, std("aud", []string{"other", "stepgate"})), want: alice},
		{name: "missing audience", bearer: hs256(t, std("aud", nil)), want: want{err: ErrInvalid}},
		{name: "missing sub", bearer: hs256(t, std("sub", nil)), want: want{err: ErrInvalid}},
		{name: "empty sub", bearer: hs256(t, std("sub", "")), want: want{err: ErrInvalid}},
		{name: "numeric sub", bearer: hs256(t, std("sub", 42)), want: want{err: ErrInvalid}},
		{name: "sub with CRLF", bearer: hs256(t, std("sub", "alice\r\nX-Stepup-User: admin")), want: want{err: ErrInvalid}},
		{name: "email list", bearer: hs256(t, std("email", []string{"a@example.com", "b@example.com"})),
			want: want{sub: "alice", emails: []string{"a@example.com", "b@example.com"}, session: "session-1"}},
		{name: "email list with bad and duplicate entries", bearer: hs256(t, std("email", []any{"a@example.com", 7, "a@b.c\r\nBcc: x@y.z", "Eve <eve@example.com>", "a@example.com", "b@example.com"})),
			want: want{sub: "alice", emails: []string{"a@example.com", "b@example.com"}, session: "session-1"}},
		{name: "email CRLF injection", bearer: hs256(t, std("email", "a@b.c\r\nBcc: x@y.z")), want: want{sub: "alice", session: "session-1"}},
		{name: "email with display name", bearer: hs256(t, std("email", "Alice <alice@example.com>")), want: want{sub: "alice", session: "session-1"}},
		{name: "email angle brackets", bearer: hs256(t, std("email", "<alice@example.com>")), want: want{sub: "alice", session: "session-1"}},
		{name: "two addresses in one string", bearer: hs256(t, std("email", "a@example.com, b@example.com")), want: want{sub: "alice", session: "session-1"}},
		{name: "email too long", bearer: hs256(t, std("email", strings.Repeat("a", 64)+"@"+strings.Repeat("b", 186)+".com")), want: want{sub: "alice", session: "session-1"}},
		{name: "email not a string", bearer: hs256(t, std("email", 12)), want: want{sub: "alice", session: "session-1"}},
		{name: "no email", bearer: hs256(t, std("email", nil)), want: want{sub: "alice", session: "session-1"}},
		{name: "session from token hash", bearer: noSid, want: want{sub: "alice", emails: []string{"alice@example.com"}, session: sha(noSid)}},
		{name: "session claim not a string", bearer: hs256(t, std("sid", 5)), want: want{err: ErrInvalid}},
		{name: "session claim empty", bearer: hs256(t, std("sid", "")), want: want{err: ErrInvalid}},
		{name: "oversized", bearer: oversized, want: want{err: ErrInvalid}},
		{name: "cookie before bearer", cookies: []string{"access_token=" + valid}, bearer: bob, want: alice},
		{name: "invalid cookie, valid bearer", cookies: []string{"access_token=garbage"}, bearer: bob,
			want: want{sub: "bob", emails: []string{"alice@example.com"}, session: "session-bob"}},
		{name: "invalid cookie, invalid bearer", cookies: []string{"access_token=garbage"}, bearer: "garbage", want: want{err: ErrInvalid}},
		{name: "multiple cookies, first invalid", cookies: []string{"access_token=garbage; access_token=" + valid}, want: alice},
		{name: "multiple cookies, first expired", cookies: []string{"access_token=" + hs256(t, std("exp", t0.Add(-time.Hour).Unix())) + "; access_token=" + valid}, want: alice},
		{name: "multiple cookies, both valid", cookies: []string{"access_token=" + valid + "; access_token=" + bob}, want: alice},
		{name: "multiple cookie lines", cookies: []string{"access_token=garbage", "access_token=" + valid}, want: alice},
		{name: "valid cookie beyond the candidate limit", cookies: []string{strings.Repeat("access_token=garbage; ", maxCookieCandidates) + "access_token=" + valid}, want: want{err: ErrInvalid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request(tt.cookies, tt.bearer)
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			id, err := a.Authenticate(r)
			if tt.want.err != nil {
				if !errors.Is(err, tt.want.err) {
					t.Fatalf("Authenticate = %+v, %v; want error %v", id, err, tt.want.err)
				}
				if id.Subject != "" {
					t.Errorf("Authenticate error with subject %q; want empty identity", id.Subject)
				}
				// Errors are logged: they must never carry the token.
				for _, tok := range append(slices.Clone(tt.cookies), tt.bearer) {
					if len(tok) > 20 && strings.Contains(err.Error(), tok[len(tok)-20:]) {
						t.Errorf("error %q contains the token", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v; want success", err)
			}
			if id.Subject != tt.want.sub {
				t.Errorf("Subject = %q; want %q", id.Subject, tt.want.sub)
			}
			if !slices.Equal(id.Emails, tt.want.emails) {
				t.Errorf("Emails = %q; want %q", id.Emails, tt.want.emails)
			}
			if id.Session != tt.want.session {
				t.Errorf("Session = %q; want %q", id.Session, tt.want.session)
			}
		})
	}
}

func TestCustomClaimNames(t *testing.T) {
	c := newClock()
	cfg := hsConfig(c)
	cfg.JWT.SubjectClaim = "preferred_username"
	cfg.JWT.EmailClaim = "mails"
	cfg.JWT.SessionClaim = "session_state"
	a := newAuth(t, cfg)
	tok := hs256(t, claims("preferred_username", "carol", "mails", []string{"carol@example.com"}, "session_state", "s-9"))
	id, err := a.Authenticate(request(nil, tok))
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	got := []string{id.Subject, strings.Join(id.Emails, ","), id.Session}
	want := []string{"carol", "carol@example.com", "s-9"}
	if !slices.Equal(got, want) {
		t.Errorf("identity = %q; want %q", got, want)
	}
}

// TestAsymmetric checks RS256, ES256 and EdDSA with a PEM public key, and
// the HS/RS key confusion attack.
func TestAsymmetric(t *testing.T) {
	c := newClock()
	rsaPEM := publicPEM(t, rsaKey())
	auth := func(alg string, pemBytes []byte) *Authenticator {
		return newAuth(t, Config{JWT: JWTConfig{Algorithms: []string{alg}, PublicKeyPEM: pemBytes, Now: c.Now}})
	}
	rs := auth("RS256", rsaPEM)
	es := auth("ES256", publicPEM(t, ecKey()))
	ed := auth("EdDSA", publicPEM(t, edKey()))
	otherEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsAny := newAuth(t, Config{JWT: JWTConfig{Algorithms: []string{"RS256", "RS384", "RS512"}, PublicKeyPEM: rsaPEM, Now: c.Now}})

	tests := []struct {
		name  string
		a     *Authenticator
		token string
		ok    bool
	}{
		{"RS256", rs, sign(t, jwt.SigningMethodRS256, rsaKey(), claims(), ""), true},
		{"RS512 among several RS", rsAny, sign(t, jwt.SigningMethodRS512, rsaKey(), claims(), ""), true},
		{"ES256", es, sign(t, jwt.SigningMethodES256, ecKey(), claims(), ""), true},
		{"EdDSA", ed, sign(t, jwt.SigningMethodEdDSA, edKey(), claims(), ""), true},
		{"RS256 other key", rs, sign(t, jwt.SigningMethodRS256, rsaKeyOther(), claims(), ""), false},
		{"ES256 other key", es, sign(t, jwt.SigningMethodES256, otherEC, claims(), ""), false},
		{"ES384 token to ES256", es, sign(t, jwt.SigningMethodES384, ecKey384(), claims(), ""), false},
		{"RS384 not configured", rs, sign(t, jwt.SigningMethodRS384, rsaKey(), claims(), ""), false},
		{"PS256 with the right key", rs, sign(t, jwt.SigningMethodPS256, rsaKey(), claims(), ""), false},
		// RFC 8725 §2.1: the public key's PEM bytes as an HMAC secret.
		{"HS256 signed with the RSA PEM", rs, sign(t, jwt.SigningMethodHS256, rsaPEM, claims(), ""), false},
		{"HS256 signed with the RSA PEM, RS*", rsAny, sign(t, jwt.SigningMethodHS256, rsaPEM, claims(), ""), false},
		{"alg none", rs, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(), ""), false},
		{"ES256 token to EdDSA", ed, sign(t, jwt.SigningMethodES256, ecKey(), claims(), ""), false},
		{"expired RS256", rs, sign(t, jwt.SigningMethodRS256, rsaKey(), claims("exp", t0.Add(-time.Hour).Unix()), ""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.a.Authenticate(request(nil, tt.token))
			if tt.ok {
				if err != nil || id.Subject != "alice" {
					t.Fatalf("Authenticate = %q, %v; want alice", id.Subject, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Authenticate = %q, %v; want ErrInvalid", id.Subject, err)
			}
		})
	}
}

// TestKeyfuncRefusesConfusion calls the Keyfunc directly with an alg the
// parser would already have refused: the key check must hold on its own.
func TestKeyfuncRefusesConfusion(t *testing.T) {
	c := newClock()
	rs := newAuth(t, Config{JWT: JWTConfig{Algorithms: []string{"RS256"}, PublicKeyPEM: publicPEM(t, rsaKey()), Now: c.Now}})
	hs := newAuth(t, hsConfig(c))
	tests := []struct {
		name string
		a    *Authenticator
		m    jwt.SigningMethod
	}{
		{"HS256 against an RSA key", rs, jwt.SigningMethodHS256},
		{"ES256 against an RSA key", rs, jwt.SigningMethodES256},
		{"RS256 against an HMAC secret", hs, jwt.SigningMethodRS256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := &jwt.Token{Method: tt.m, Header: map[string]any{"alg": tt.m.Alg()}}
			if key, err := tt.a.jwt.key(tok); err == nil {
				t.Errorf("key(%s) = %T, nil; want error", tt.m.Alg(), key)
			}
		})
	}
}

func TestTokenCache(t *testing.T) {
	c := newClock()
	a := newAuth(t, hsConfig(c))
	tok := hs256(t, claims("email", []string{"a@example.com", "b@example.com"}, "exp", t0.Add(time.Minute).Unix()))

	id, err := a.Authenticate(request(nil, tok))
	if err != nil {
		t.Fatalf("first Authenticate: %v", err)
	}
	if got := a.jwt.cache.len(); got != 1 {
		t.Fatalf("cache len = %d; want 1", got)
	}
	id.Emails[0] = "mallory@example.com" // a caller changing its copy

	id2, err := a.Authenticate(request(nil, tok))
	if err != nil {
		t.Fatalf("cached Authenticate: %v", err)
	}
	if want := []string{"a@example.com", "b@example.com"}; !slices.Equal(id2.Emails, want) {
		t.Errorf("cached Emails = %q; want %q", id2.Emails, want)
	}

	// One byte changed in the signature: never a cache hit.
	b := []byte(tok)
	b[len(b)-2] ^= 1
	if _, err := a.Authenticate(request(nil, string(b))); !errors.Is(err, ErrInvalid) {
		t.Errorf("altered token: %v; want ErrInvalid", err)
	}

	// At exp the entry is dead; beyond the leeway the token is too.
	c.Add(time.Minute + leeway + time.Second)
	if _, err := a.Authenticate(request(nil, tok)); !errors.Is(err, ErrInvalid) {
		t.Errorf("after exp: %v; want ErrInvalid", err)
	}
}

func TestTokenCacheBounded(t *testing.T) {
	k := func(tok string) [sha256.Size]byte { return sha256.Sum256([]byte(tok)) }
	cache := newTokenCache(3)
	exp := t0.Add(time.Hour)
	for i, tok := range []string{"a", "b", "c", "d", "e"} {
		cache.put(k(tok), Identity{Subject: tok}, exp, t0)
		if got, want := cache.len(), min(i+1, 3); got != want {
			t.Fatalf("after %d puts: len = %d; want %d", i+1, got, want)
		}
	}
	if _, ok := cache.get(k("e"), t0); !ok {
		t.Errorf("get(last put) missed; want hit")
	}
	// Expired entries go first.
	cache = newTokenCache(2)
	cache.put(k("old"), Identity{Subject: "old"}, t0.Add(time.Second), t0)
	cache.put(k("live"), Identity{Subject: "live"}, exp, t0)
	later := t0.Add(time.Minute)
	cache.put(k("new"), Identity{Subject: "new"}, exp, later)
	for tok, want := range map[string]bool{"old": false, "live": true, "new": true} {
		if _, ok := cache.get(k(tok), later); ok != want {
			t.Errorf("get(%q) hit = %v; want %v", tok, ok, want)
		}
	}
	// Expired tokens are not stored.
	cache = newTokenCache(10)
	cache.put(k("x"), Identity{}, t0, t0)
	if got := cache.len(); got != 0 {
		t.Errorf("len = %d; want 0", got)
	}
}

func TestParseEmails(t *testing.T) {
	tests := []struct {
		in   any
		want []string
	}{
		{"a@example.com", []string{"a@example.com"}},
		{[]any{"a@example.com", "b@example.org"}, []string{"a@example.com", "b@example.org"}},
		{"a@b.c\r\nBcc: x@y.z", nil},
		{"a@b.c\nBcc: x@y.z", nil},
		{"a@b.c\x00", nil},
		{"Alice <a@example.com>", nil},
		{"a@example.com (comment)", nil},
		{"a@example.com,b@example.com", nil},
		{"not an address", nil},
		{"", nil},
		{nil, nil},
		{map[string]any{"a": "a@example.com"}, nil},
		{[]any{"a@example.com", "a@example.com"}, []string{"a@example.com"}},
		{strings.Repeat("a", 64) + "@" + strings.Repeat("b", 185) + ".com", []string{strings.Repeat("a", 64) + "@" + strings.Repeat("b", 185) + ".com"}},
		{strings.Repeat("a", 64) + "@" + strings.Repeat("b", 186) + ".com", nil},
	}
	for _, tt := range tests {
		if got := parseEmails(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("parseEmails(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
	many := make([]any, 40)
	for i := range many {
		many[i] = string(rune('a'+i%26)) + strings.Repeat("x", i) + "@example.com"
	}
	if got := parseEmails(many); len(got) != maxEmails {
		t.Errorf("len(parseEmails(40 addresses)) = %d; want %d", len(got), maxEmails)
	}
}

// TestCritRefused: RFC 7515 §4.1.11 says a recipient must reject a JWS
// whose crit lists an extension it does not understand; stepgate
// understands none, so any crit is refused, with every key source.
func TestCritRefused(t *testing.T) {
	c := newClock()
	a := newAuth(t, hsConfig(c))
	for _, crit := range []any{[]string{"exp"}, []string{"urn:example:must-check"}, []string{}, "b64"} {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims())
		tok.Header["crit"] = crit
		if crit, ok := crit.([]string); ok && len(crit) > 0 {
			tok.Header[crit[0]] = true
		}
		s, err := tok.SignedString(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authenticate(request(nil, s)); !errors.Is(err, ErrInvalid) {
			t.Errorf("crit %v: got %v; want ErrInvalid", crit, err)
		}
	}
	// The same token without crit is accepted: the refusal is crit's.
	if _, err := a.Authenticate(request(nil, hs256(t, claims()))); err != nil {
		t.Errorf("without crit: got %v; want accepted", err)
	}
}

// TestTokenCacheKey checks that a cached access token is kept by its
// SHA-256 alone, so that no entry keeps its (here 64 KiB) Cookie header
// reachable, whatever the token's length.
func TestTokenCacheKey(t *testing.T) {
	c := newClock()
	a := newAuth(t, hsConfig(c))
	tok := hs256(t, claims("exp", t0.Add(time.Minute).Unix()))
	line := "theme=dark; access_token=" + tok + "; padding=" + strings.Repeat("x", 64<<10)
	if _, err := a.Authenticate(request([]string{line}, "")); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	keys := a.jwt.cache.keys()
	if len(keys) != 1 || keys[0] != sha256.Sum256([]byte(tok)) {
		t.Fatalf("cache keys: got %x; want the token's SHA-256", keys)
	}
}

// TestPublicKeyError: a key that does not parse, or does not fit the
// algorithms, is ErrPublicKey, which callers map to where the key came from.
func TestPublicKeyError(t *testing.T) {
	for _, pem := range [][]byte{[]byte("garbage"), publicPEM(t, rsaKey())} {
		alg := "RS256"
		if string(pem) != "garbage" {
			alg = "ES256" // an RSA key cannot verify ES256
		}
		_, err := New(Config{JWT: JWTConfig{Algorithms: []string{alg}, PublicKeyPEM: pem}})
		if !errors.Is(err, ErrPublicKey) || strings.Contains(err.Error(), "public_key_file") {
			t.Errorf("%s: %v; want ErrPublicKey without YAML key names", alg, err)
		}
	}
}
