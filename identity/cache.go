package identity

import (
	"strings"
	"sync"
	"time"
)

const (
	// tokenCacheSize bounds the verified-token cache.
	tokenCacheSize = 10000
	// tokenCacheMaxLen is the longest token that is cached; longer ones
	// (still valid up to maxTokenLen) are verified every time. With the
	// entry bound, the cache holds at most ~40 MiB of token strings.
	tokenCacheMaxLen = 4096
	// tokenCacheSweepEvery bounds how often a full cache is scanned for
	// expired entries; between scans, an arbitrary entry makes room.
	tokenCacheSweepEvery = 10 * time.Second
)

// tokenCache remembers tokens whose signature and claims were verified, so
// that the many requests carrying the same access token skip signature
// verification and JSON decoding. It is keyed by the exact token string:
// any change to a token, even one byte, is a miss. An entry is used only
// while the clock is before the token's exp; the leeway is not applied to
// hits. A key withdrawn from a JWKS does not evict entries: they live at
// most until their exp.
type tokenCache struct {
	max int

	mu        sync.RWMutex
	entries   map[string]cacheEntry // guarded by mu
	lastSweep time.Time             // guarded by mu
}

type cacheEntry struct {
	id  Identity
	exp time.Time
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: make(map[string]cacheEntry)}
}

// get returns the cached identity of token at time now. The returned
// Emails is a copy, so that callers cannot change the cached entry.
func (c *tokenCache) get(token string, now time.Time) (Identity, bool) {
	c.mu.RLock()
	e, ok := c.entries[token]
	c.mu.RUnlock()
	if !ok || !now.Before(e.exp) {
		return Identity{}, false
	}
	// The cached Emails slice is shared, read-only, by every request with
	// this token; its capacity is clipped so that an append by a caller
	// copies instead of writing into the cache. Copying it here instead cost
	// one allocation on every proxied request.
	id := e.id
	id.Emails = id.Emails[:len(id.Emails):len(id.Emails)]
	return id, true
}

// put caches id for token until exp.
func (c *tokenCache) put(token string, id Identity, exp time.Time, now time.Time) {
	if len(token) > tokenCacheMaxLen || !now.Before(exp) {
		return
	}
	// The token may be a substring of a large Cookie header; a copy keeps
	// the header from staying in memory.
	token = strings.Clone(token)
	id.Emails = append([]string(nil), id.Emails...)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[token]; !ok && len(c.entries) >= c.max {
		c.makeRoom(now)
	}
	c.entries[token] = cacheEntry{id: id, exp: exp}
}

// makeRoom drops expired entries (at most once per tokenCacheSweepEvery)
// and, when the cache is still full, an arbitrary one: map iteration order
// is random, so no client can pin which entry goes.
func (c *tokenCache) makeRoom(now time.Time) {
	if now.Sub(c.lastSweep) >= tokenCacheSweepEvery {
		c.lastSweep = now
		for k, e := range c.entries {
			if !now.Before(e.exp) {
				delete(c.entries, k)
			}
		}
	}
	for k := range c.entries {
		if len(c.entries) < c.max {
			break
		}
		delete(c.entries, k)
	}
}

// len reports the number of entries, for tests.
func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
