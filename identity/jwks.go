package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// jwksMaxBody bounds a JWKS response; a real key set is a few KiB.
	jwksMaxBody = 1 << 20
	// jwksMinRefresh is the least time between two fetches, whatever
	// triggers them: tokens with unknown key ids cannot make stepgate hammer
	// the identity provider.
	jwksMinRefresh = time.Minute
	// jwksMaxAge is how long a fetched key set is used before it is fetched
	// again, so that keys the identity provider withdrew stop verifying.
	jwksMaxAge = time.Hour
	// jwksFetchTimeout caps one fetch even when the configured client has
	// no timeout.
	jwksFetchTimeout = 10 * time.Second
	// jwksMaxKeys bounds how many keys of one set are kept.
	jwksMaxKeys = 64
)

// jwk is one usable verification key of a set.
type jwk struct {
	kid string
	alg string // "" when the set does not pin one
	key any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// keySet is an immutable snapshot of the JWKS.
type keySet struct {
	keys    []jwk
	fetched time.Time
}

// jwksCache fetches a JSON Web Key Set (RFC 7517 §5) lazily and keeps it.
// Lookups read an atomic snapshot; fetches are serialised by mu, so
// concurrent requests wait for the fetch in flight instead of starting
// their own (no stampede).
type jwksCache struct {
	url    string
	logURL string // url without query or user info, for logs
	client *http.Client
	now    func() time.Time
	log    *slog.Logger

	set atomic.Pointer[keySet] // nil until the first successful fetch

	mu          sync.Mutex // held during a fetch
	lastAttempt time.Time  // guarded by mu; zero before the first fetch
}

// errUnknownKey means no key of the set matches the token's kid and alg.
var errUnknownKey = errors.New("no matching key in JWKS")

// key returns the keys that may verify a token with this alg and kid. It
// fetches the set on first use, when the set is older than jwksMaxAge, and
// when kid is unknown, each at most once per jwksMinRefresh. When a fetch
// fails, the keys fetched before keep being used.
func (c *jwksCache) key(alg, kid string) (any, error) {
	set := c.set.Load()
	if set == nil {
		c.refresh(false)
		set = c.set.Load()
		if set == nil {
			return nil, errors.New("JWKS not available")
		}
	} else if c.now().Sub(set.fetched) >= jwksMaxAge {
		// Only one request refreshes an old set; the others keep using it.
		if c.refresh(true) {
			set = c.set.Load()
		}
	}
	key, kidKnown := set.find(alg, kid)
	if key != nil {
		return key, nil
	}
	if kidKnown {
		// The kid exists but its key does not fit alg: no refresh, since
		// a rotation does not change a key's type.
		return nil, errors.New("JWKS key does not fit the token's algorithm")
	}
	// An unknown kid may be a key the provider just rotated in (RFC 7517
	// §4.5): fetch again, rate limited.
	if c.refresh(false) {
		if key, _ = c.set.Load().find(alg, kid); key != nil {
			return key, nil
		}
	}
	return nil, errUnknownKey
}

// find looks alg and kid up. kidKnown reports that a key with this kid
// exists even though it does not fit alg; such a token is refused without
// a refresh. A token without kid gets every key fitting its alg.
func (s *keySet) find(alg, kid string) (key any, kidKnown bool) {
	if kid == "" {
		var fitting []any
		for _, k := range s.keys {
			if k.fits(alg) {
				fitting = append(fitting, k.key)
			}
		}
		switch len(fitting) {
		case 0:
			return nil, false
		case 1:
			return fitting[0], true
		default:
			return jwtVerificationKeySet(fitting), true
		}
	}
	for _, k := range s.keys {
		if k.kid != kid {
			continue
		}
		kidKnown = true
		if k.fits(alg) {
			return k.key, true
		}
	}
	return nil, kidKnown
}

// fits reports whether k may verify alg: the key type must fit, and a key
// that names its alg is used for that alg only (RFC 7517 §4.4).
func (k jwk) fits(alg string) bool {
	return (k.alg == "" || k.alg == alg) && keyFits(alg, k.key)
}

// refresh fetches the set unless a fetch was attempted less than
// jwksMinRefresh ago. With try, it gives up at once when a fetch is in
// flight. It reports whether it (or the fetch it waited for) may have
// changed the set.
func (c *jwksCache) refresh(try bool) bool {
	if try {
		if !c.mu.TryLock() {
			return false
		}
	} else {
		c.mu.Lock()
	}
	defer c.mu.Unlock()
	now := c.now()
	if !c.lastAttempt.IsZero() && now.Sub(c.lastAttempt) < jwksMinRefresh {
		// Either a concurrent request fetched just now, whose result the
		// caller now sees, or the rate limit holds.
		return true
	}
	c.lastAttempt = now
	set, err := c.fetch()
	if err != nil {
		// Keep serving the keys we have: an identity provider outage must
		// not log every user out.
		// An *url.Error repeats the URL, query included; log the cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		c.log.Warn("identity: JWKS fetch failed; keeping the previous keys",
			"url", c.logURL, "error", err.Error())
		return false
	}
	set.fetched = now
	c.set.Store(set)
	return true
}

// fetch downloads and parses the set. The context is not the request's:
// the result is shared by every request, and a client hanging up must not
// abort it.
func (c *jwksCache) fetch() (*keySet, error) {
	ctx, cancel := context.WithTimeout(context.Background(), jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(body) > jwksMaxBody {
		return nil, fmt.Errorf("body larger than %d bytes", jwksMaxBody)
	}
	return parseJWKS(body)
}

// rawJWK holds the members of a JWK that stepgate reads (RFC 7517 §4,
// RFC 7518 §6, RFC 8037 §2).
type rawJWK struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS parses a key set. Keys it cannot use (symmetric "oct" keys,
// encryption keys, unknown types, weak RSA) are skipped; a set with no
// usable key at all is an error, so that the previous keys stay in use.
func parseJWKS(body []byte) (*keySet, error) {
	var doc struct {
		Keys []rawJWK `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	set := &keySet{}
	for _, raw := range doc.Keys {
		if len(set.keys) == jwksMaxKeys {
			break
		}
		if raw.Use != "" && raw.Use != "sig" {
			continue
		}
		if raw.Alg != "" {
			if _, ok := algorithms[raw.Alg]; !ok {
				continue
			}
		}
		key, err := raw.publicKey()
		if err != nil {
			continue
		}
		set.keys = append(set.keys, jwk{kid: raw.Kid, alg: raw.Alg, key: key})
	}
	if len(set.keys) == 0 {
		return nil, errors.New("JWKS holds no usable signing key")
	}
	return set, nil
}

// publicKey builds the key. Symmetric keys ("oct") are never accepted from
// a JWKS: a published HMAC secret would let anyone sign tokens.
func (r rawJWK) publicKey() (any, error) {
	switch r.Kty {
	case "RSA":
		n, err := b64(r.N)
		if err != nil {
			return nil, err
		}
		e, err := b64(r.E)
		if err != nil {
			return nil, err
		}
		if len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA exponent")
		}
		exp := new(big.Int).SetBytes(e)
		if !exp.IsInt64() || exp.Int64() < 3 || exp.Int64() > 1<<31-1 || exp.Bit(0) == 0 {
			return nil, errors.New("bad RSA exponent")
		}
		key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp.Int64())}
		if key.N.BitLen() < minRSABits {
			return nil, errors.New("RSA key too short")
		}
		return key, nil
	case "EC":
		var curve elliptic.Curve
		switch r.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, errors.New("unsupported curve")
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err := b64(r.X)
		if err != nil {
			return nil, err
		}
		y, err := b64(r.Y)
		if err != nil {
			return nil, err
		}
		// RFC 7518 §6.2.1.2: coordinates are exactly the curve's size.
		if len(x) != size || len(y) != size {
			return nil, errors.New("bad EC coordinate length")
		}
		point := make([]byte, 0, 1+2*size)
		point = append(append(append(point, 4), x...), y...)
		// ParseUncompressedPublicKey refuses points not on the curve
		// (invalid-curve attacks).
		return ecdsa.ParseUncompressedPublicKey(curve, point)
	case "OKP":
		if r.Crv != "Ed25519" {
			return nil, errors.New("unsupported OKP curve")
		}
		x, err := b64(r.X)
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key length")
		}
		return ed25519.PublicKey(x), nil
	default:
		return nil, errors.New("unsupported key type")
	}
}

// b64 decodes base64url without padding (RFC 7515 §2), tolerating padding
// that some providers add.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// jwtVerificationKeySet lets the parser try each key in turn.
func jwtVerificationKeySet(keys []any) jwt.VerificationKeySet {
	set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(keys))}
	for i, k := range keys {
		set.Keys[i] = k
	}
	return set
}
