package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The state generation (SPEC §13: a revoked second factor never becomes
// valid again, whatever happens to the store).
//
// Redis keeps one epoch key without a TTL, created with a random value by
// the first call that finds it missing (SET inside a script, so exactly one
// value wins). Tokens name the epoch they were minted in; a Redis that
// restarted empty, was flushed or evicted the key has a new epoch, so every
// token minted before is refused and its lost revocation cannot matter.
//
// A Store remembers the epoch it last saw. When it sees another one, the
// state it shared with the other replicas was lost, lockouts included, and
// it sets the loss marker: while the marker lives (Options.StateLossLockout)
// every user counts as locked out, so that a user who was locked out is not
// unlocked by the loss. A process that starts against an empty Redis
// cannot tell a first start from a loss and sets no marker.
const (
	epochKey = "epoch"      // string: the epoch, no TTL
	lostKey  = "state-lost" // string "1", PX StateLossLockout
)

// epochPrelude reads the epoch, creating it when missing, and sets the loss
// marker when it differs from the one the caller last saw.
//
//	KEYS[1]  the epoch key; KEYS[2] the loss marker
//	ARGV     new epoch (used when missing), known epoch ("" for none),
//	         loss lockout (ms)
//
// It leaves the epoch in e.
const epochPrelude = `
local e = redis.call('GET', KEYS[1])
if not e then
  e = ARGV[1]
  redis.call('SET', KEYS[1], e)
end
if ARGV[2] ~= '' and e ~= ARGV[2] then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3], 'NX')
end
`

// epochScript returns the epoch (Store.Epoch).
var epochScript = redis.NewScript(epochPrelude + `
return e
`)

// revokedScript returns {epoch, 1 when KEYS[3] (the token id's revocation
// key) exists else 0} (Store.Revoked).
var revokedScript = redis.NewScript(epochPrelude + `
return {e, redis.call('EXISTS', KEYS[3])}
`)

// lockedScript returns {epoch, lockout end (ms) or ”, PTTL of KEYS[3] (the
// user's lockout key), PTTL of the loss marker} (Store.Locked).
var lockedScript = redis.NewScript(epochPrelude + `
local lock = redis.call('GET', KEYS[3]) or ''
return {e, lock, redis.call('PTTL', KEYS[3]), redis.call('PTTL', KEYS[2])}
`)

// runEpoch runs one of the epoch scripts with extra keys and remembers the
// epoch it returns. The reply is the script's, with the epoch checked to be
// its first element (or the reply itself).
func (s *Store) runEpoch(ctx context.Context, script *redis.Script, extra ...string) (string, []any, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, fmt.Errorf("crypto/rand: %w", err)
	}
	fresh := base64.RawURLEncoding.EncodeToString(b[:])
	known, _ := s.known.Load().(string)
	keys := append([]string{s.prefix + epochKey, s.prefix + lostKey}, extra...)
	v, err := script.Run(ctx, s.client, keys, fresh, known, ms(s.lossLockout)).Result()
	if err != nil {
		return "", nil, err
	}
	var epoch string
	var rest []any
	switch v := v.(type) {
	case string:
		epoch = v
	case []any:
		if len(v) > 0 {
			epoch, _ = v[0].(string)
			rest = v[1:]
		}
	}
	if epoch == "" {
		return "", nil, errors.New("no epoch in the reply")
	}
	if epoch != known {
		s.known.Store(epoch)
	}
	return epoch, rest, nil
}

// Epoch returns Redis's state generation, creating it when missing.
func (s *Store) Epoch(ctx context.Context) (string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	e, _, err := s.runEpoch(ctx, epochScript)
	if err != nil {
		return "", fmt.Errorf("redisstore: epoch: %w", err)
	}
	return e, nil
}

// Revoked reports whether the token jti minted in epoch must be refused:
// jti was revoked, or Redis's epoch is no longer epoch. One round trip, as
// a plain EXISTS was. An error means unknown: the caller must deny.
func (s *Store) Revoked(ctx context.Context, jti, epoch string) (bool, error) {
	var gen uint64
	cacheable := false
	if s.rev != nil {
		var hit bool
		if hit, gen, cacheable = s.rev.lookup(jti, epoch); hit {
			return false, nil
		}
	}
	revoked, err := s.revoked(ctx, jti, epoch)
	if err == nil && !revoked && cacheable {
		s.rev.store(jti, epoch, gen)
	}
	return revoked, err
}

// revoked asks Redis (Revoked without the cache).
func (s *Store) revoked(ctx context.Context, jti, epoch string) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	cur, rest, err := s.runEpoch(ctx, revokedScript, s.key(kindRevoked, jti))
	if err != nil {
		return false, fmt.Errorf("redisstore: revoked: %w", err)
	}
	if len(rest) != 1 {
		return false, errors.New("redisstore: revoked: bad reply")
	}
	n, _ := rest[0].(int64)
	return cur != epoch || n > 0, nil
}

// Locked returns the lockout left for user at now, 0 when not locked. The
// key's own TTL ends the lockout too, so a replica whose clock runs behind
// never sees a lockout longer than the one that was set. While the loss
// marker lives, every user is locked out for at least its remaining TTL.
func (s *Store) Locked(ctx context.Context, user string, now time.Time) (time.Duration, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, rest, err := s.runEpoch(ctx, lockedScript, s.key(kindLock, user))
	if err != nil {
		return 0, fmt.Errorf("redisstore: locked: %w", err)
	}
	if len(rest) != 3 {
		return 0, errors.New("redisstore: locked: bad reply")
	}
	var left time.Duration
	if until, _ := rest[0].(string); until != "" {
		ms, err := strconv.ParseInt(until, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("redisstore: locked: %w", err)
		}
		left = time.UnixMilli(ms).Sub(now)
		if ttl, _ := rest[1].(int64); ttl >= 0 && time.Duration(ttl)*time.Millisecond < left {
			left = time.Duration(ttl) * time.Millisecond
		}
	}
	if lost, _ := rest[2].(int64); lost > 0 {
		left = max(left, time.Duration(lost)*time.Millisecond)
	}
	return max(left, 0), nil
}
