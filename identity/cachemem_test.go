package identity

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

// heapGrowth returns the live heap fill adds, per entry, after a GC.
func heapGrowth(n int, fill func(i int)) float64 {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for i := range n {
		fill(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	return float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(n)
}

// TestCacheEntryBytes checks the memory bounds README states for the two
// access-token caches (identity.jwt.cache_size, invalid_cache_size): at
// most ~400 and ~200 bytes per entry, whatever the token's length.
func TestCacheEntryBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	const n = 20000
	exp := t0.Add(time.Hour)
	c := newTokenCache(n)
	per := heapGrowth(n, func(i int) {
		u := "user" + strconv.Itoa(i)
		c.put(tokenSum(u), Identity{Subject: u, Emails: []string{u + "@example.com"}, Session: "s-" + u}, exp, t0)
	})
	t.Logf("verified-token cache: %.0f bytes per entry", per)
	if per > 500 {
		t.Errorf("verified-token cache: %.0f bytes per entry; README says ~400", per)
	}
	inv := newInvalidCache(n)
	per = heapGrowth(n, func(i int) { inv.add(tokenSum(strconv.Itoa(i))) })
	t.Logf("invalid-token cache: %.0f bytes per entry", per)
	if per > 250 {
		t.Errorf("invalid-token cache: %.0f bytes per entry; README says ~200", per)
	}
	runtime.KeepAlive(c)
	runtime.KeepAlive(inv)
}
