package redisstore_test

import (
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge/redisstore"
	"github.com/stepgate/stepgate/challenge/redisstore/redistest"
)

// BenchmarkRevoked measures the hot-path call (every step-up request asks
// it) against a real local server.
func BenchmarkRevoked(b *testing.B) {
	addr := redistest.Start(b)
	s := newStore(b, redisstore.Options{Addr: addr, KeyPrefix: randomPrefix(b)})
	if err := s.Revoke(b.Context(), "revoked", time.Hour); err != nil {
		b.Fatal(err)
	}
	epoch, err := s.Epoch(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	for _, jti := range []string{"revoked", "not-revoked"} {
		b.Run(jti, func(b *testing.B) {
			want := jti == "revoked"
			b.ReportAllocs()
			for b.Loop() {
				got, err := s.Revoked(b.Context(), jti, epoch)
				if err != nil || got != want {
					b.Fatalf("Revoked(%q): got %v, %v; want %v", jti, got, err, want)
				}
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Revoked(b.Context(), "not-revoked", epoch); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
