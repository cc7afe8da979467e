package secondfactor

import (
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// defaultCacheSize bounds the verified-token cache when Config.CacheSize
// is 0.
const defaultCacheSize = 10000

// verifiedToken is a token whose signature, type, issuer and expiry were
// checked; what depends on the request (subject, session, max age,
// revocation) is checked on every use.
type verifiedToken struct {
	subject   string
	session   string
	jti       string
	epoch     string
	method    string
	authTime  time.Time
	expiresAt time.Time
}

// tokenCache remembers verified tokens by a copy of their exact string so
// that the hot path (Check on every step_up request) skips base64, JSON and
// HMAC. Only tokens that passed full verification are stored; an entry is
// used only before the token's exp. When full, the least recently used
// entry goes; a dropped entry only costs one full verification.
//
// It is a bounded LRU (hashicorp/golang-lru expirable, as identity's
// cache). The library's own TTL is off because each token carries its exp,
// and because its cleanup goroutine never exits (v2.0.7) while Tokens are
// built per config load: a TTL would leak one goroutine and one whole cache
// per reload.
type tokenCache struct {
	lru *expirable.LRU[string, *verifiedToken]
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{lru: expirable.NewLRU[string, *verifiedToken](max, nil, 0)}
}

func (c *tokenCache) get(tok string, now time.Time) *verifiedToken {
	v, ok := c.lru.Get(tok)
	if !ok {
		return nil
	}
	if !now.Before(v.expiresAt) {
		c.lru.Remove(tok)
		return nil
	}
	return v
}

// put caches v under a copy of tok: tok is usually a substring of a Cookie
// header line (nextCookie), which the cache must not keep reachable.
func (c *tokenCache) put(tok string, v *verifiedToken) {
	c.lru.Add(strings.Clone(tok), v)
}

// keys lists the cached keys, for tests.
func (c *tokenCache) keys() []string { return c.lru.Keys() }
