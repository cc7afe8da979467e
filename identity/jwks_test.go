package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwkOf renders the public half of priv as a JWK.
func jwkOf(t testing.TB, kid, alg string, priv any) map[string]any {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	m := map[string]any{"kid": kid, "use": "sig"}
	if alg != "" {
		m["alg"] = alg
	}
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		m["kty"] = "RSA"
		m["n"] = enc(k.N.Bytes())
		m["e"] = enc(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PrivateKey:
		pt, err := k.PublicKey.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		size := (len(pt) - 1) / 2
		m["kty"] = "EC"
		m["crv"] = k.Curve.Params().Name
		m["x"] = enc(pt[1 : 1+size])
		m["y"] = enc(pt[1+size:])
	case ed25519.PrivateKey:
		m["kty"] = "OKP"
		m["crv"] = "Ed25519"
		m["x"] = enc(k.Public().(ed25519.PublicKey))
	default:
		t.Fatalf("jwkOf: unsupported key %T", priv)
	}
	return m
}

// jwksServer is an identity provider's JWKS endpoint whose answer the test
// changes, counting fetches.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int32
	mu      sync.Mutex
	status  int
	body    []byte
}

func newJWKSServer(t *testing.T, keys ...map[string]any) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.setKeys(t, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		status, body := s.status, s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(t testing.TB, keys ...map[string]any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	s.set(http.StatusOK, body)
}

func (s *jwksServer) set(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

func jwksAuth(t *testing.T, url string, c *clock, algs ...string) *Authenticator {
	t.Helper()
	a := newAuth(t, Config{JWT: JWTConfig{
		Algorithms: algs,
		JWKSURL:    url,
		HTTPClient: &http.Client{Timeout: 5 * time.Second},
		Now:        c.Now,
	}})
	a.jwt.cache = nil // every call exercises the key lookup
	return a
}

// check authenticates token and compares the outcome and the fetch count.
func check(t *testing.T, a *Authenticator, srv *jwksServer, token string, wantOK bool, wantFetches int32) {
	t.Helper()
	id, err := a.Authenticate(request(nil, token))
	switch {
	case wantOK && (err != nil || id.Subject != "alice"):
		t.Errorf("Authenticate = %q, %v; want alice", id.Subject, err)
	case !wantOK && !errors.Is(err, ErrInvalid):
		t.Errorf("Authenticate = %q, %v; want ErrInvalid", id.Subject, err)
	}
	if got := srv.fetches.Load(); got != wantFetches {
		t.Errorf("JWKS fetches = %d; want %d", got, wantFetches)
	}
}

func TestJWKSFetchRefreshAndStale(t *testing.T) {
	c := newClock()
	srv := newJWKSServer(t, jwkOf(t, "k1", "RS256", rsaKey()))
	a := jwksAuth(t, srv.URL, c, "RS256")
	long := claims("exp", t0.Add(10*jwksMaxAge).Unix())
	tok1 := sign(t, jwt.SigningMethodRS256, rsaKey(), long, "k1")
	tok2 := sign(t, jwt.SigningMethodRS256, rsaKeyOther(), long, "k2")
	if got := srv.fetches.Load(); got != 0 {
		t.Fatalf("fetches after New = %d; want 0 (lazy)", got)
	}

	// Fetched on first use, then served from memory.
	check(t, a, srv, tok1, true, 1)
	check(t, a, srv, tok1, true, 1)

	// The provider rotates k2 in; an unknown kid within the minute is
	// refused without a fetch (rate limit).
	srv.setKeys(t, jwkOf(t, "k1", "RS256", rsaKey()), jwkOf(t, "k2", "RS256", rsaKeyOther()))
	c.Add(jwksMinRefresh - time.Second)
	check(t, a, srv, tok2, false, 1)

	// Once the minute has passed, the unknown kid triggers one fetch.
	c.Add(time.Second)
	check(t, a, srv, tok2, true, 2)
	check(t, a, srv, tok1, true, 2)

	// A kid nobody knows is refused, and fetches at most once a minute.
	tok3 := sign(t, jwt.SigningMethodRS256, rsaKeyOther(), long, "k3")
	check(t, a, srv, tok3, false, 2)
	c.Add(jwksMinRefresh)
	check(t, a, srv, tok3, false, 3)
	check(t, a, srv, tok3, false, 3)

	// The provider fails: the keys fetched before stay in use.
	srv.set(http.StatusInternalServerError, []byte("down"))
	c.Add(jwksMinRefresh)
	check(t, a, srv, tok3, false, 4)
	check(t, a, srv, tok1, true, 4)
	check(t, a, srv, tok2, true, 4)

	// An old set is fetched again so withdrawn keys stop working; a
	// failed fetch keeps the old set (k1 still works).
	c.Add(jwksMaxAge)
	check(t, a, srv, tok1, true, 5)
	srv.setKeys(t, jwkOf(t, "k2", "RS256", rsaKeyOther()))
	c.Add(jwksMaxAge)
	check(t, a, srv, tok2, true, 6)
	check(t, a, srv, tok1, false, 6) // k1 withdrawn; rate limit holds
}

func TestJWKSFirstFetchFails(t *testing.T) {
	c := newClock()
	srv := newJWKSServer(t)
	srv.set(http.StatusServiceUnavailable, nil)
	var logs bytes.Buffer
	a := newAuth(t, Config{JWT: JWTConfig{
		Algorithms: []string{"RS256"},
		JWKSURL:    srv.URL + "/jwks?token=s3cr3t",
		Now:        c.Now,
		Logger:     slog.New(slog.NewJSONHandler(&logs, nil)),
	}})
	tok := sign(t, jwt.SigningMethodRS256, rsaKey(), claims(), "k1")
	check(t, a, srv, tok, false, 1)
	if got := logs.String(); !strings.Contains(got, "JWKS fetch failed") || strings.Contains(got, "s3cr3t") {
		t.Errorf("log = %q; want the failure logged without the URL's query", got)
	}
	check(t, a, srv, tok, false, 1) // rate limited, no stampede on a down provider
	srv.setKeys(t, jwkOf(t, "k1", "RS256", rsaKey()))
	c.Add(jwksMinRefresh)
	check(t, a, srv, tok, true, 2)
}

func TestJWKSBodyLimit(t *testing.T) {
	c := newClock()
	srv := newJWKSServer(t)
	key, err := json.Marshal(jwkOf(t, "k1", "RS256", rsaKey()))
	if err != nil {
		t.Fatal(err)
	}
	// A valid set padded past the limit with JSON whitespace.
	small := `{"keys":[` + string(key) + `]}`
	srv.set(http.StatusOK, []byte(small+strings.Repeat(" ", jwksMaxBody-len(small)+1)))
	a := jwksAuth(t, srv.URL, c, "RS256")
	tok := sign(t, jwt.SigningMethodRS256, rsaKey(), claims(), "k1")
	check(t, a, srv, tok, false, 1)

	// The same set within the limit is accepted.
	srv.set(http.StatusOK, []byte(small+strings.Repeat(" ", jwksMaxBody-len(small))))
	c.Add(jwksMinRefresh)
	check(t, a, srv, tok, true, 2)
}

func TestJWKSKeySelection(t *testing.T) {
	otherEd := func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}()
	oct := map[string]any{"kty": "oct", "kid": "sym", "k": base64.RawURLEncoding.EncodeToString(testSecret)}
	tests := []struct {
		name  string
		algs  []string
		keys  []map[string]any
		token func(t *testing.T) string
		ok    bool
	}{
		{"ES256 by kid", []string{"ES256"}, []map[string]any{jwkOf(t, "e1", "ES256", ecKey())},
			func(t *testing.T) string { return sign(t, jwt.SigningMethodES256, ecKey(), claims(), "e1") }, true},
		{"EdDSA by kid", []string{"EdDSA"}, []map[string]any{jwkOf(t, "d1", "", edKey())},
			func(t *testing.T) string { return sign(t, jwt.SigningMethodEdDSA, edKey(), claims(), "d1") }, true},
		{"no kid, one key", []string{"RS256"}, []map[string]any{jwkOf(t, "k1", "", rsaKey())},
			func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, rsaKey(), claims(), "") }, true},
		{"no kid, several keys", []string{"EdDSA"}, []map[string]any{jwkOf(t, "d0", "", otherEd), jwkOf(t, "d1", "", edKey())},
			func(t *testing.T) string { return sign(t, jwt.SigningMethodEdDSA, edKey(), claims(), "") }, true},
		{"kid pinned to another alg", []string{"RS256", "RS384"}, []map[string]any{jwkOf(t, "k1", "RS384", rsaKey())},
			func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, rsaKey(), claims(), "k1") }, false},
		{"kid of the wrong key type", []string{"RS256", "ES256"}, []map[string]any{jwkOf(t, "k1", "", ecKey())},
			func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, rsaKey(), claims(), "k1") }, false},
		{"wrong key behind the kid", []string{"RS256"}, []map[string]any{jwkOf(t, "k1", "RS256", rsaKeyOther())},
			func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, rsaKey(), claims(), "k1") }, false},
		{"encryption key", []string{"RS256"}, []map[string]any{func() map[string]any {
			m := jwkOf(t, "k1", "", rsaKey())
			m["use"] = "enc"
			return m
		}()},
			func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, rsaKey(), claims(), "k1") }, false},
		// A symmetric key in a JWKS is public: it must never verify.
		{"oct key ignored", []string{"RS256"}, []map[string]any{oct, jwkOf(t, "k1", "", rsaKey())},
			func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, testSecret, claims(), "sym") }, false},
		// HS/RS confusion through a JWKS: the RSA modulus as HMAC secret.
		{"HS256 with RSA key bytes", []string{"RS256"}, []map[string]any{jwkOf(t, "k1", "", rsaKey())},
			func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, rsaKey().N.Bytes(), claims(), "k1")
			}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newJWKSServer(t, tt.keys...)
			a := jwksAuth(t, srv.URL, newClock(), tt.algs...)
			id, err := a.Authenticate(request(nil, tt.token(t)))
			if tt.ok && (err != nil || id.Subject != "alice") {
				t.Errorf("Authenticate = %q, %v; want alice", id.Subject, err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalid) {
				t.Errorf("Authenticate = %q, %v; want ErrInvalid", id.Subject, err)
			}
		})
	}
}

func TestParseJWKSRejects(t *testing.T) {
	small := mustSmallRSA(t)
	tests := []struct {
		name string
		body string
	}{
		{"not JSON", "<html>"},
		{"no keys", `{"keys":[]}`},
		{"only oct", `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`},
		{"short RSA", mustJSON(t, map[string]any{"keys": []any{jwkOf(t, "s", "", small)}})},
		{"even exponent", `{"keys":[{"kty":"RSA","n":"` + base64.RawURLEncoding.EncodeToString(rsaKey().N.Bytes()) + `","e":"Ag"}]}`},
		{"EC point off the curve", `{"keys":[{"kty":"EC","crv":"P-256","x":"` + strings.Repeat("A", 43) + `","y":"` + strings.Repeat("A", 42) + `E"}]}`},
		{"unknown alg", mustJSON(t, map[string]any{"keys": []any{jwkOf(t, "k", "none", rsaKey())}})},
		{"unknown curve", `{"keys":[{"kty":"OKP","crv":"X25519","x":"` + strings.Repeat("A", 43) + `"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if set, err := parseJWKS([]byte(tt.body)); err == nil {
				t.Errorf("parseJWKS = %d keys, nil; want error", len(set.keys))
			}
		})
	}
}

func mustSmallRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	// A 1024-bit modulus, below minRSABits (never used to sign).
	k := *rsaKey()
	k.PublicKey.N = new(big.Int).Rsh(k.N, 1024)
	return &k
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestJWKSNoStampede sends many concurrent requests with an unknown kid:
// the provider sees one fetch.
func TestJWKSNoStampede(t *testing.T) {
	c := newClock()
	srv := newJWKSServer(t, jwkOf(t, "k1", "RS256", rsaKey()))
	a := jwksAuth(t, srv.URL, c, "RS256")
	check(t, a, srv, sign(t, jwt.SigningMethodRS256, rsaKey(), claims(), "k1"), true, 1)
	srv.setKeys(t, jwkOf(t, "k1", "RS256", rsaKey()), jwkOf(t, "k2", "RS256", rsaKeyOther()))
	c.Add(jwksMinRefresh)
	tok2 := sign(t, jwt.SigningMethodRS256, rsaKeyOther(), claims(), "k2")

	const n = 16
	start := make(chan struct{})
	errs := make(chan error, n)
	for range n {
		go func() {
			<-start
			_, err := a.Authenticate(request(nil, tok2))
			errs <- err
		}()
	}
	close(start)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Authenticate: %v; want success", err)
		}
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Errorf("JWKS fetches = %d; want 2", got)
	}
}
