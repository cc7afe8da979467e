package secondfactor

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCacheEntryBytes checks the memory bound README states for
// second_factor.cache_size: ~600 bytes per entry of a ~300-byte token.
func TestCacheEntryBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	const n = 20000
	c := newTokenCache(n)
	pad := strings.Repeat("x", 280)
	exp := time.Now().Add(time.Hour)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for i := range n {
		s := strconv.Itoa(i)
		c.put(pad+s, &verifiedToken{subject: "user" + s, session: "s-user" + s, jti: "j" + s + pad[:21],
			epoch: "epoch", method: "email", authTime: exp, expiresAt: exp})
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	per := float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / n
	t.Logf("second-factor token cache: %.0f bytes per entry", per)
	if per > 800 {
		t.Errorf("%.0f bytes per entry; README says ~600", per)
	}
	runtime.KeepAlive(c)
}
