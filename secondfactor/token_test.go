package secondfactor

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stepgate/stepgate/identity"
)

// signClaims signs arbitrary claims, for forged and foreign tokens.
func signClaims(t *testing.T, method jwt.SigningMethod, key any, typ string, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if typ == "" {
		delete(tok.Header, "typ")
	} else {
		tok.Header["typ"] = typ
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func goodClaims(now time.Time) tokenClaims {
	return tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    tokenIssuer,
			Subject:   alice.Subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
			ID:        "jti-test",
		},
		Session:  alice.Session,
		AuthTime: now.Unix(),
		AMR:      amrOf(MethodEmail),
		Epoch:    testEpoch,
	}
}

func TestTokenVerify(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.PreviousSecrets = [][]byte{[]byte("previous-secret-previous-secret-0123")}
	})
	now := e.clock.Now()
	ctx := context.Background()

	minted, err := e.s.Mint(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	revoked, _ := e.s.Mint(context.Background(), alice)
	if err := e.s.Revoke(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey))})

	with := func(f func(*tokenClaims)) tokenClaims { c := goodClaims(now); f(&c); return c }
	bob := identity.Identity{Subject: "bob", Session: alice.Session}
	otherSession := identity.Identity{Subject: alice.Subject, Session: "sess-other"}

	tests := []struct {
		name   string
		token  string
		id     identity.Identity
		maxAge time.Duration
		ok     bool
	}{
		{"minted", minted.Token, alice, time.Hour, true},
		{"hand-signed good", signClaims(t, jwt.SigningMethodHS256, testSecret, tokenType, goodClaims(now)), alice, time.Hour, true},
		{"previous secret accepted", signClaims(t, jwt.SigningMethodHS256, []byte("previous-secret-previous-secret-0123"), tokenType, goodClaims(now)), alice, time.Hour, true},
		{"other secret", signClaims(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-0123456"), tokenType, goodClaims(now)), alice, time.Hour, false},
		{"alg none", signClaims(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, tokenType, goodClaims(now)), alice, time.Hour, false},
		{"HS384 not pinned", signClaims(t, jwt.SigningMethodHS384, testSecret, tokenType, goodClaims(now)), alice, time.Hour, false},
		// Key confusion: an HMAC keyed with a public key's PEM must not
		// verify, and neither must a real RS256 signature.
		{"HS256 keyed with RSA public PEM", signClaims(t, jwt.SigningMethodHS256, rsaPub, tokenType, goodClaims(now)), alice, time.Hour, false},
		{"RS256", signClaims(t, jwt.SigningMethodRS256, rsaKey, tokenType, goodClaims(now)), alice, time.Hour, false},
		{"typ missing", signClaims(t, jwt.SigningMethodHS256, testSecret, "", goodClaims(now)), alice, time.Hour, false},
		{"typ JWT", signClaims(t, jwt.SigningMethodHS256, testSecret, "JWT", goodClaims(now)), alice, time.Hour, false},
		{"access-token shaped, same secret", signClaims(t, jwt.SigningMethodHS256, testSecret, "", jwt.MapClaims{
			"sub": alice.Subject, "sid": alice.Session, "email": "alice@example.com",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "auth_time": now.Unix(), "iss": tokenIssuer, "jti": "x",
		}), alice, time.Hour, false},
		{"at+jwt typ", signClaims(t, jwt.SigningMethodHS256, testSecret, "at+jwt", goodClaims(now)), alice, time.Hour, false},
		{"expired", signClaims(t, jwt.SigningMethodHS256, testSecret, tokenType, with(func(c *tokenClaims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Second))
		})), alice, time.Hour, false},
		{"no exp", signClaims(t, jwt.SigningMethodHS256, testSecret, tokenType, with(func(c *tokenClaims) { c.ExpiresAt = nil })), alice, time.Hour, false},
		{"other issuer", signClaims(t, jwt.SigningMethodHS256, testSecret, tokenType, with(func(c *tokenClaims) { c.Issuer = "idp" })), alice, time.Hour, false},
		// A token names the store's epoch; one from before the store lost
		// its state (another epoch), or naming none, is refused.
		{"no epoch", signClaims(t, jwt.SigningMethodHS256, testSecret, tokenType, with(func(c *tokenClaims) { c.Epoch = "" })), alice, time.Hour, false},
		{"other epoch", signClaims(t, jwt.SigningMethodHS256, testSecret, tokenType, with(func(c *tokenClaims) { c.Epoch = testEpoch + "x" })), alice, time.Hour, false},
		{"no jti", signClaims(t, jwt.SigningMethodHS256, testSecret, tokenType, with(func(c *tokenClaims) { c.ID = "" })), alice, time.Hour, false},
		{"other subject", minted.Token, bob, time.Hour, false},
		{"other session", minted.Token, otherSession, time.Hour, false},
		{"empty identity", minted.Token, identity.Identity{}, time.Hour, false},
		{"revoked", revoked.Token, alice, time.Hour, false},
		{"maxAge too old", signClaims(t, jwt.SigningMethodHS256, testSecret, tokenType, with(func(c *tokenClaims) {
			c.AuthTime = now.Add(-11 * time.Minute).Unix()
		})), alice, 10 * time.Minute, false},
		{"maxAge just fine", signClaims(t, jwt.SigningMethodHS256, testSecret, tokenType, with(func(c *tokenClaims) {
			c.AuthTime = now.Add(-9 * time.Minute).Unix()
		})), alice, 10 * time.Minute, true},
		{"auth_time in the future", signClaims(t, jwt.SigningMethodHS256, testSecret, tokenType, with(func(c *tokenClaims) {
			c.AuthTime = now.Add(time.Hour).Unix()
		})), alice, 10 * time.Minute, false},
		// RFC 7515 §4.1.11: crit names extensions nobody here understands.
		{"crit", func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, goodClaims(now))
			tok.Header["typ"] = tokenType
			tok.Header["crit"] = []string{"urn:example:ext"}
			tok.Header["urn:example:ext"] = true
			return must(tok.SignedString(testSecret))
		}(), alice, time.Hour, false},
		{"empty crit", func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, goodClaims(now))
			tok.Header["typ"] = tokenType
			tok.Header["crit"] = []string{}
			return must(tok.SignedString(testSecret))
		}(), alice, time.Hour, false},
		{"garbage", "not.a.token", alice, time.Hour, false},
		{"empty", "", alice, time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Twice: the second run is served by the verified-token cache,
			// which must not change the outcome.
			for i := 0; i < 2; i++ {
				g, err := e.s.verify(ctx, tt.token, tt.id, tt.maxAge, "")
				if got := err == nil; got != tt.ok {
					t.Fatalf("run %d: got ok=%v (err %v); want ok=%v", i, got, err, tt.ok)
				}
				if tt.ok && (g.Subject != alice.Subject || g.Session != alice.Session || g.Token != tt.token) {
					t.Fatalf("run %d: got grant %+v; want alice's", i, g)
				}
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestMintClaims(t *testing.T) {
	e := newEnv(t)
	g, err := e.s.Mint(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	var c tokenClaims
	tok, _, err := jwt.NewParser().ParseUnverified(g.Token, &c)
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	if got := tok.Header["typ"]; got != tokenType {
		t.Errorf("typ: got %q; want %q", got, tokenType)
	}
	if got := tok.Header["alg"]; got != "HS256" {
		t.Errorf("alg: got %q; want HS256", got)
	}
	if c.Issuer != "stepgate" || c.Subject != alice.Subject || c.Session != alice.Session {
		t.Errorf("got iss %q sub %q sid %q; want stepgate alice %q", c.Issuer, c.Subject, c.Session, alice.Session)
	}
	if c.AuthTime != now.Unix() || c.IssuedAt.Unix() != now.Unix() {
		t.Errorf("got auth_time %d iat %d; want %d", c.AuthTime, c.IssuedAt.Unix(), now.Unix())
	}
	if got, want := c.ExpiresAt.Unix(), now.Add(12*time.Hour).Unix(); got != want {
		t.Errorf("exp: got %d; want %d", got, want)
	}
	if len(c.AMR) != 2 || c.AMR[0] != "otp" || c.AMR[1] != "email" {
		t.Errorf("amr: got %q; want [otp email]", c.AMR)
	}
	if len(c.ID) != 22 || c.ID != g.ID {
		t.Errorf("jti: got %q (grant %q); want 22 base64url chars (128 bits)", c.ID, g.ID)
	}
	g2, _ := e.s.Mint(context.Background(), alice)
	if g2.ID == g.ID {
		t.Error("two tokens share a jti")
	}
	// Expiry honoured through the cache too.
	if _, err := e.s.Validate(context.Background(), g.Token, alice); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	e.clock.Advance(12 * time.Hour)
	if _, err := e.s.Validate(context.Background(), g.Token, alice); !errors.Is(err, ErrTokenInvalid) {
		t.Errorf("Validate at exp: got %v; want ErrTokenInvalid", err)
	}
}

func TestCheck(t *testing.T) {
	e := newEnv(t)
	g, err := e.s.Mint(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	forged := signClaims(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-0123456"), tokenType, goodClaims(e.clock.Now()))
	tests := []struct {
		name    string
		cookies []string
		header  []string
		ok      bool
	}{
		{"none", nil, nil, false},
		{"cookie", []string{g.Token}, nil, true},
		{"header", nil, []string{g.Token}, true},
		{"invalid cookie then valid", []string{"garbage", forged, g.Token}, nil, true},
		{"valid cookie then invalid", []string{g.Token, "garbage"}, nil, true},
		{"invalid cookie, valid header", []string{forged}, []string{g.Token}, true},
		{"only invalid", []string{forged, "x"}, []string{"y"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/admin", nil)
			for _, c := range tt.cookies {
				r.AddCookie(&http.Cookie{Name: "__Host-stepgate", Value: c})
			}
			r.AddCookie(&http.Cookie{Name: "other", Value: g.Token + "x"})
			for _, h := range tt.header {
				r.Header.Add("X-Second-Factor-Token", h)
			}
			got, ok := e.s.Check(r, alice, time.Hour)
			if ok != tt.ok {
				t.Fatalf("got ok=%v; want %v", ok, tt.ok)
			}
			if ok && got.ID != g.ID {
				t.Errorf("got jti %q; want %q", got.ID, g.ID)
			}
		})
	}
}

// failingRevocations fails Revoked, to show that a store failure denies.
type failingRevocations struct{ revocations }

func (*failingRevocations) Revoked(context.Context, string, string) (bool, error) {
	return false, errors.New("connection refused")
}

func TestCheckStoreErrorDenies(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Revocations = &failingRevocations{} })
	g, err := e.s.Mint(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/admin", nil)
	r.AddCookie(&http.Cookie{Name: "__Host-stepgate", Value: g.Token})
	if _, ok := e.s.Check(r, alice, time.Hour); ok {
		t.Error("Check with a failing store: got ok; want denied")
	}
	if _, err := e.s.Validate(context.Background(), g.Token, alice); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Validate with a failing store: got %v; want ErrUnavailable", err)
	}
}

func BenchmarkCheck(b *testing.B) {
	e := newEnv(b)
	g, err := e.s.Mint(context.Background(), alice)
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/admin", nil)
	r.Header.Set("Cookie", "session=abc; __Host-stepgate="+g.Token+"; theme=dark")
	id := alice
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := e.s.Check(r, id, time.Hour); !ok {
			b.Fatal("Check failed")
		}
	}
}

// BenchmarkCheckUncached is a full verification of a token missing from
// a full cache, as with more users than second_factor.cache_size: two
// tokens take turns in a one-entry cache, so every Check verifies the
// HS256 signature, decodes the claims and evicts the other token.
func BenchmarkCheckUncached(b *testing.B) {
	e := newEnv(b)
	var reqs [2]*http.Request
	for i := range reqs {
		g, err := e.s.Mint(context.Background(), alice)
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = httptest.NewRequest("GET", "/admin", nil)
		reqs[i].Header.Set("Cookie", "__Host-stepgate="+g.Token)
	}
	e.s.cache = newTokenCache(1)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i ^= 1
		if _, ok := e.s.Check(reqs[i], alice, time.Hour); !ok {
			b.Fatal("Check failed")
		}
	}
	if n := e.s.cache.lru.Len(); n != 1 {
		b.Fatalf("cache holds %d tokens, want 1", n)
	}
}

// FuzzVerify feeds arbitrary strings to the token verifier: it must never
// panic, and whatever passes must be an HS256 token with our typ, signed
// with our secret, for alice (checked independently of the verifier).
func FuzzVerify(f *testing.F) {
	e := newEnv(f)
	g, err := e.s.Mint(context.Background(), alice)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(g.Token)
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoic3RlcGdhdGUtMmZhK2p3dCJ9.eyJzdWIiOiJhbGljZSJ9.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		got, err := e.s.verify(context.Background(), tok, alice, time.Hour, "")
		if err != nil {
			return
		}
		indep, perr := jwt.Parse(tok, func(t *jwt.Token) (any, error) { return testSecret, nil },
			jwt.WithValidMethods([]string{"HS256"}))
		if perr != nil || indep.Header["typ"] != tokenType || got.Subject != alice.Subject || got.Session != alice.Session {
			t.Fatalf("accepted %q as %+v (independent parse: %v)", tok, got, perr)
		}
	})
}
