package identity

import (
	"crypto/sha256"
	"errors"
	"sync"

	"github.com/golang-jwt/jwt/v5"
)

// invalidCache remembers tokens that failed verification for a reason that
// never goes away — a bad signature, a malformed token, an expired token,
// another issuer or audience (all found after the signature check) — by the SHA-256 of the exact token, so that
// a client replaying bad RS256/ES256 tokens costs a hash and a map lookup
// (about 1 µs) instead of a signature check (30–60 µs) each time. A token
// that failed for a passing reason (an unknown kid before the JWKS
// refresh, nbf in the future, the JWKS unreachable) is not remembered.
//
// Keying by the whole token, not by its signing input, matters: the
// signing input of a valid token with a forged signature attached must not
// make the valid token fail. Each entry is 32 bytes of key plus map
// overhead, about 70 bytes; when full, an arbitrary entry makes room.
type invalidCache struct {
	max int

	mu sync.RWMutex
	m  map[[sha256.Size]byte]struct{} // guarded by mu
}

func newInvalidCache(max int) *invalidCache {
	return &invalidCache{max: max, m: make(map[[sha256.Size]byte]struct{})}
}

func (c *invalidCache) has(sum [sha256.Size]byte) bool {
	c.mu.RLock()
	_, ok := c.m[sum]
	c.mu.RUnlock()
	return ok
}

func (c *invalidCache) add(sum [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[sum] = struct{}{}
}

// permanent reports whether a verification error will recur for the same
// token whatever happens later (see invalidCache).
func permanent(err error) bool {
	// Keyfunc refusals (ErrTokenUnverifiable) cost no signature check and
	// may pass (a JWKS refresh), so they are not remembered.
	return errors.Is(err, jwt.ErrTokenSignatureInvalid) || errors.Is(err, jwt.ErrTokenMalformed) ||
		errors.Is(err, jwt.ErrTokenExpired) || errors.Is(err, jwt.ErrTokenInvalidIssuer) ||
		errors.Is(err, jwt.ErrTokenInvalidAudience)
}

// len reports the number of entries, for tests.
func (c *invalidCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
