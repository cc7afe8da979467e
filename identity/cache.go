package identity

import (
	"crypto/sha256"
	"time"
	"unsafe"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

const (
	// tokenCacheSize bounds the verified-token cache by default.
	tokenCacheSize = 10000
	// invalidCacheSize bounds the refused-token cache by default.
	invalidCacheSize = 10000
)

// tokenSum is the SHA-256 of a token, the key of both token caches. It
// hashes the string's bytes in place: sha256.Sum256([]byte(raw)) would copy
// the token to the heap on every request, and Sum256 only reads them.
func tokenSum(raw string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
}

// tokenCache remembers tokens whose signature and claims were verified, so
// that the many requests carrying the same access token skip signature
// verification and JSON decoding. It is keyed by the SHA-256 of the exact
// token: any change to a token, even one byte, is a miss. An entry is
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
//
// The key is a hash rather than the token so that an entry costs about 400
// bytes whatever the token's length (32 bytes of key, the identity's
// strings, the LRU's bookkeeping): 100,000 entries are about 40 MiB, and
// no entry can keep a large Cookie header reachable. Hashing a 1 KiB token
// costs well under a microsecond, against 5 µs (HS256) to 30–60 µs (RS256,
// ES256) for a verification.
type tokenCache struct {
	lru *expirable.LRU[[sha256.Size]byte, cacheEntry]
}

type cacheEntry struct {
	id  Identity
	exp time.Time
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{lru: expirable.NewLRU[[sha256.Size]byte, cacheEntry](max, nil, 0)}
}

// get returns the cached identity of token at time now.
func (c *tokenCache) get(token [sha256.Size]byte, now time.Time) (Identity, bool) {
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
func (c *tokenCache) put(token [sha256.Size]byte, id Identity, exp time.Time, now time.Time) {
	if !now.Before(exp) {
		return
	}
	id.Emails = append([]string(nil), id.Emails...)
	c.lru.Add(token, cacheEntry{id: id, exp: exp})
}

// len reports the number of entries, for tests.
func (c *tokenCache) len() int { return c.lru.Len() }

// keys lists the cached keys, for tests.
func (c *tokenCache) keys() [][sha256.Size]byte { return c.lru.Keys() }
