package identity

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// rsConfig is an RS256 config with rsaKey's public key on the given clock.
func rsConfig(t testing.TB, c *clock) Config {
	return Config{Source: "jwt", JWT: JWTConfig{
		Cookie:       "access_token",
		Algorithms:   []string{"RS256"},
		PublicKeyPEM: publicPEM(t, rsaKey()),
		Now:          c.Now,
	}}
}

// forge replaces tok's signature by another valid-looking one.
func forge(tok string, n int) string {
	i := strings.LastIndexByte(tok, '.')
	sig := []byte(tok[i+1:])
	sig[0] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"[n%32]
	sig[1] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"[(n/32)%32]
	return tok[:i+1] + string(sig)
}

// TestInvalidCache checks the negative cache: a token refused for good is
// refused again without a signature check; a token refused for a passing
// reason is not remembered; a forged signature on a valid token's signing
// input never makes the valid token fail; and the cache stays bounded.
func TestInvalidCache(t *testing.T) {
	c := newClock()
	cfg := rsConfig(t, c)
	cfg.JWT.InvalidCacheSize = 50
	a := newAuth(t, cfg)
	a.jwt.cache = nil // every valid token is verified
	good := sign(t, jwt.SigningMethodRS256, rsaKey(), claims(), "")
	bad := forge(good, 1)
	if bad == good {
		t.Fatal("forge did not change the signature")
	}

	_, err := a.Authenticate(request([]string{"access_token=" + bad}, ""))
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Fatalf("forged token: got %v; want a signature error", err)
	}
	if n := a.jwt.invalid.len(); n != 1 {
		t.Fatalf("invalid cache holds %d; want 1", n)
	}
	_, err = a.Authenticate(request([]string{"access_token=" + bad}, ""))
	if !errors.Is(err, ErrInvalid) || errors.Is(err, jwt.ErrTokenSignatureInvalid) || !strings.Contains(err.Error(), "refused before") {
		t.Fatalf("forged token again: got %v; want refused from the cache", err)
	}
	// Same signing input, valid signature: still accepted.
	if id, err := a.Authenticate(request([]string{"access_token=" + good}, "")); err != nil || id.Subject != "alice" {
		t.Fatalf("valid token after its forged twin: got %v, %v; want alice", id, err)
	}

	// Passing reasons are not remembered: a token not valid yet becomes
	// valid.
	early := sign(t, jwt.SigningMethodRS256, rsaKey(), claims("nbf", t0.Add(10*time.Minute).Unix(), "sub", "early"), "")
	if _, err := a.Authenticate(request(nil, early)); err == nil {
		t.Fatal("token before its nbf accepted")
	}
	c.Add(11 * time.Minute)
	if id, err := a.Authenticate(request(nil, early)); err != nil || id.Subject != "early" {
		t.Fatalf("token after its nbf: got %v, %v; want accepted", id, err)
	}

	// Bounded: a flood of distinct forgeries keeps at most the bound, and
	// least recently used out first: the forgery replayed all along stays.
	for i := range 200 {
		_, _ = a.Authenticate(request(nil, forge(good, i+2)))
		if _, err := a.Authenticate(request([]string{"access_token=" + bad}, "")); !strings.Contains(fmt.Sprint(err), "refused before") {
			t.Fatalf("replayed forgery during the flood (%d): got %v; want refused from the cache", i, err)
		}
	}
	if n := a.jwt.invalid.len(); n != 50 {
		t.Errorf("invalid cache holds %d after 200 forgeries; want the bound, 50", n)
	}
	if a.jwt.invalid.has(tokenSum(forge(good, 2))) {
		t.Error("the oldest one-shot forgery is still cached; want it evicted first")
	}
	if _, err := New(Config{Source: "jwt", JWT: JWTConfig{Algorithms: []string{"HS256"}, HMACSecret: testSecret, InvalidCacheSize: -1}}); err == nil {
		t.Error("negative invalid_cache_size accepted")
	}
}

// BenchmarkAuthenticateInvalid measures what a replayed forged token costs:
// "first" the signature check every new forgery costs, "replayed" the
// refusal from the negative cache.
func BenchmarkAuthenticateInvalid(b *testing.B) {
	c := newClock()
	good := sign(b, jwt.SigningMethodRS256, rsaKey(), claims(), "")
	for _, alg := range []string{"RS256"} {
		b.Run(alg+"/first", func(b *testing.B) {
			a := newAuth(b, rsConfig(b, c))
			i := 0
			for b.Loop() {
				i++
				a.jwt.invalid = newInvalidCache(10)
				_, _ = a.Authenticate(request(nil, forge(good, i)))
			}
		})
		b.Run(alg+"/replayed", func(b *testing.B) {
			a := newAuth(b, rsConfig(b, c))
			r := request(nil, forge(good, 7))
			_, _ = a.Authenticate(r)
			b.ReportAllocs()
			for b.Loop() {
				_, _ = a.Authenticate(r)
			}
		})
	}
}

// BenchmarkAuthenticateRS256 is a cache miss of sg-jwks: a valid RS256
// access token verified in full (signature, claims decoding).
func BenchmarkAuthenticateRS256(b *testing.B) {
	c := newClock()
	a := newAuth(b, rsConfig(b, c))
	a.jwt.cache = nil
	r := request(nil, sign(b, jwt.SigningMethodRS256, rsaKey(), claims(), ""))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
}
