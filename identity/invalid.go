package identity

import (
	"crypto/sha256"
	"errors"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
)

// invalidCache remembers tokens that failed verification for a reason that
// never goes away — a bad signature, a malformed token, an expired token,
// another issuer or audience (all found after the signature check) — by
// the SHA-256 of the exact token, so that a client replaying bad
// RS256/ES256 tokens costs a hash and a lookup (about 1 µs) instead of a
// signature check (30–60 µs) each time. A token that failed for a passing
// reason (an unknown kid before the JWKS refresh, nbf in the future, the
// JWKS unreachable) is not remembered.
//
// Keying by the whole token, not by its signing input, matters: the
// signing input of a valid token with a forged signature attached must not
// make the valid token fail.
//
// It is a bounded LRU from hashicorp/golang-lru/v2, like the other token
// caches: when full, the least recently refused token goes, so a token
// being replayed stays while one-shot forgeries age out. It is the plain
// lru.Cache, which has no TTL and so no cleanup goroutine (see tokenCache
// for why that matters with a cache built per config load): entries never
// need to expire, since their refusal is permanent. Each entry is 160–200
// bytes (32 bytes of key, the list element, the map slot), whatever the
// token's length (TestCacheEntryBytes).
type invalidCache struct {
	lru *lru.Cache[[sha256.Size]byte, struct{}]
}

// newInvalidCache returns a cache of at most size entries (at least one:
// Config validation refuses a negative size and 0 means the default).
func newInvalidCache(size int) *invalidCache {
	c, err := lru.New[[sha256.Size]byte, struct{}](max(size, 1))
	if err != nil {
		// lru.New fails only for a size below one.
		panic(err)
	}
	return &invalidCache{lru: c}
}

// has reports whether sum was refused for good, and marks it recently used.
func (c *invalidCache) has(sum [sha256.Size]byte) bool {
	_, ok := c.lru.Get(sum)
	return ok
}

// add remembers sum, making room by dropping the least recently used entry.
func (c *invalidCache) add(sum [sha256.Size]byte) { c.lru.Add(sum, struct{}{}) }

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
func (c *invalidCache) len() int { return c.lru.Len() }
