package identity

import (
	"testing"
	"time"
)

// BenchmarkAuthenticateHS256 measures the per-request cost of a valid
// HS256 access token in a cookie: "cold" verifies the signature and
// decodes the claims every time, "cached" is the verified-token cache hit
// that repeat requests get.
func BenchmarkAuthenticateHS256(b *testing.B) {
	c := newClock()
	tok := hs256(b, claims("exp", t0.Add(24*time.Hour).Unix()))
	r := request([]string{"theme=dark; access_token=" + tok + "; lang=en"}, "")

	run := func(b *testing.B, a *Authenticator) {
		if _, err := a.Authenticate(r); err != nil {
			b.Fatalf("Authenticate: %v", err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Authenticate(r); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("cold", func(b *testing.B) {
		a := newAuth(b, hsConfig(c))
		a.jwt.cache = nil
		run(b, a)
	})
	b.Run("cached", func(b *testing.B) {
		run(b, newAuth(b, hsConfig(c)))
	})
}
