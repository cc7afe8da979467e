package secondfactor

import (
	"strconv"
	"testing"
	"time"
)

// TestTokenCacheBound checks that the verified-token cache never holds more
// than its bound (second_factor.cache_size).
func TestTokenCacheBound(t *testing.T) {
	c := newTokenCache(64)
	now := time.Now()
	for i := range 1000 {
		c.put("tok"+strconv.Itoa(i), &verifiedToken{expiresAt: now.Add(time.Hour)})
		if n := len(c.keys()); n > 64 {
			t.Fatalf("after %d puts the cache holds %d; want at most 64", i+1, n)
		}
	}
	if _, err := New(Config{Secret: testSecret, CookieName: "c", HeaderName: "h", TTL: time.Hour,
		Revocations: &revocations{}, CacheSize: -1}); err == nil {
		t.Error("negative cache size accepted")
	}
}
