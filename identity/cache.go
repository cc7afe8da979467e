package identity

import (
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

const (
	// tokenCacheSize bounds the verified-token cache.
	tokenCacheSize = 10000
	// tokenCacheMaxLen is the longest token that is cached; longer ones
	// (still valid up to maxTokenLen) are verified every time. With the
	// entry bound, the cache holds at most ~40 MiB of token strings.
	tokenCacheMaxLen = 4096
)

// tokenCache remembers tokens whose signature and claims were verified, so
// that the many requests carrying the same access token skip signature
// verification and JSON decoding. It is keyed by a copy of the exact token
// string: any change to a token, even one byte, is a miss. An entry is
// used only while the clock is before the token's exp; the leeway is not
// applied to hits. A key withdrawn from a JWKS does not evict entries:
// they live at most until their exp.
//
// It is a bounded LRU (hashicorp/golang-lru expirable, as the
// second-factor cache): when full, the least recently used entry goes.
// The library's own TTL is off because each token carries its exp, and
// because its cleanup goroutine never exits (v2.0.7) while a cache is
// built per config load: a TTL would leak one goroutine and one whole
// cache per reload.
type tokenCache struct {
	lru *expirable.LRU[string, cacheEntry]
}

type cacheEntry struct {
	id  Identity
	exp time.Time
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{lru: expirable.NewLRU[string, cacheEntry](max, nil, 0)}
}

// get returns the cached identity of token at time now.
func (c *tokenCache) get(token string, now time.Time) (Identity, bool) {
	e, ok := c.lru.Get(token)
	if !ok {
		return Identity{}, false
	}
	if !now.Before(e.exp) {
		c.lru.Remove(token)
		return Identity{}, false
	}
	// The cached Emails slice is shared, read-only, by every request with
	// this token; its capacity is clipped so that an append by a caller
	// copies instead of writing into the cache.
	id := e.id
	id.Emails = id.Emails[:len(id.Emails):len(id.Emails)]
	return id, true
}

// put caches id for token until exp.
func (c *tokenCache) put(token string, id Identity, exp time.Time, now time.Time) {
	if len(token) > tokenCacheMaxLen || !now.Before(exp) {
		return
	}
	// The token may be a substring of a large Cookie header; the key is a
	// copy so that the cache does not keep the header reachable.
	id.Emails = append([]string(nil), id.Emails...)
	c.lru.Add(strings.Clone(token), cacheEntry{id: id, exp: exp})
}

// len reports the number of entries, for tests.
func (c *tokenCache) len() int { return c.lru.Len() }

// keys lists the cached keys, for tests.
func (c *tokenCache) keys() []string { return c.lru.Keys() }
