package secondfactor

import (
	"sync"
	"time"
)

// tokenCacheSize bounds the verified-token cache.
const tokenCacheSize = 8192

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

// tokenCache remembers verified tokens by their exact string so that the
// hot path (Check on every step_up request) skips base64, JSON and HMAC.
// Only tokens that passed full verification are stored; entries die at the
// token's exp. When full, arbitrary entries are dropped (Go's map order);
// a dropped entry only costs one full verification.
type tokenCache struct {
	mu sync.RWMutex
	m  map[string]*verifiedToken
}

func (c *tokenCache) get(tok string, now time.Time) *verifiedToken {
	c.mu.RLock()
	v := c.m[tok]
	c.mu.RUnlock()
	if v == nil || !now.Before(v.expiresAt) {
		return nil
	}
	return v
}

func (c *tokenCache) put(tok string, v *verifiedToken, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*verifiedToken)
	}
	if len(c.m) >= tokenCacheSize {
		// Drop expired entries first, then arbitrary ones, down to 7/8.
		for k, e := range c.m {
			if !now.Before(e.expiresAt) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < tokenCacheSize*7/8 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[tok] = v
}

func newTokenCache() *tokenCache { return &tokenCache{} }
