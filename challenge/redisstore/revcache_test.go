package redisstore

import (
	"crypto/rand"
	"encoding/base64"
	"runtime"
	"testing"
	"time"
)

// TestRevCacheEntryBytes checks the memory bound README states for
// store.redis.revocation_cache_size (~150 bytes per entry), and that the
// cache stays within its bound.
func TestRevCacheEntryBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	const n = 20000
	c, err := newRevCache(n)
	if err != nil {
		t.Fatal(err)
	}
	c.up = true
	c.proven.Store(time.Now().Add(time.Hour).UnixNano())
	jtis := make([]string, 2*n)
	for i := range jtis {
		var b [16]byte
		rand.Read(b[:])
		jtis[i] = base64.RawURLEncoding.EncodeToString(b[:])
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for _, j := range jtis[:n] {
		_, gen, ok := c.lookup(j, "epoch-1")
		if !ok {
			t.Fatal("cache not live")
		}
		c.store(j, "epoch-1", gen)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	// The jti strings existed before; a real entry also holds its own.
	per := float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/n + 24
	t.Logf("revocation cache: %.0f bytes per entry", per)
	if per > 200 {
		t.Errorf("%.0f bytes per entry; README says ~160", per)
	}
	for _, j := range jtis[n:] {
		_, gen, _ := c.lookup(j, "epoch-1")
		c.store(j, "epoch-1", gen)
	}
	if c.m.Len() > n {
		t.Errorf("cache holds %d; want at most %d", c.m.Len(), n)
	}
}
