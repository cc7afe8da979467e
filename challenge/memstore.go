package challenge

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"github.com/patrickmn/go-cache"
)

// MemoryStore is the embedded Store (patrickmn/go-cache), for one process.
//
// Every read-modify-write runs under one mutex, which makes each Store
// method atomic as store.go requires; Revoked, the hot-path read, only takes
// go-cache's own read lock. Entries carry go-cache TTLs (a janitor drops
// them), while decisions about throttles and lockouts use the now the
// caller passes, so that tests can move a clock.
type MemoryStore struct {
	mu         sync.Mutex
	codes      *cache.Cache // key -> *memCode
	sends      *cache.Cache // user -> *memSends
	fails      *cache.Cache // user -> *memFails
	revoked    *cache.Cache // jti -> struct{}
	ceremonies *cache.Cache // key -> []byte
	maxPending int
	// epoch is random per store, so per process: tokens minted before a
	// restart (whose revocations the restart lost) are refused after it.
	epoch string
}

var _ Store = (*MemoryStore)(nil)

// memCode is a pending code, kept lean: 100,000 of them stay in the tens
// of megabytes.
type memCode struct {
	mac       [32]byte
	macLen    uint8
	attempts  int32
	email     string
	expiresAt time.Time
}

// memSends are a user's recent sends, newest last, at most maxPerHour.
type memSends struct{ at []time.Time }

// memFails are a user's failures in the last hour and the lockout end.
type memFails struct {
	at          []time.Time
	lockedUntil time.Time
}

// NewMemoryStore returns a store holding at most maxPending pending codes
// (0 means 200,000).
func NewMemoryStore(maxPending int) *MemoryStore {
	if maxPending <= 0 {
		maxPending = 200_000
	}
	const janitor = time.Minute
	var b [16]byte
	// crypto/rand.Read never returns an error (Go 1.24+); it panics
	// instead of handing out a predictable value.
	_, _ = rand.Read(b[:])
	return &MemoryStore{
		epoch:      base64.RawURLEncoding.EncodeToString(b[:]),
		codes:      cache.New(cache.NoExpiration, janitor),
		sends:      cache.New(cache.NoExpiration, janitor),
		fails:      cache.New(cache.NoExpiration, janitor),
		revoked:    cache.New(cache.NoExpiration, janitor),
		ceremonies: cache.New(cache.NoExpiration, janitor),
		maxPending: maxPending,
	}
}

// ThrottleSend implements Store.
func (s *MemoryStore) ThrottleSend(_ context.Context, user string, now time.Time, resendAfter time.Duration, maxPerHour int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st *memSends
	if v, ok := s.sends.Get(user); ok {
		st = v.(*memSends)
	} else {
		st = &memSends{}
	}
	st.at = pruneBefore(st.at, now.Add(-time.Hour))
	// When both limits refuse, the wait is the longer one: the time
	// until a send would really be allowed.
	var wait time.Duration
	if n := len(st.at); n > 0 {
		wait = st.at[n-1].Add(resendAfter).Sub(now)
		if n >= maxPerHour {
			// The oldest send in the window leaves it first.
			wait = max(wait, st.at[n-maxPerHour].Add(time.Hour).Sub(now))
		}
	}
	if wait > 0 {
		return &LimitError{RetryAfter: wait, Err: ErrThrottled}
	}
	st.at = append(st.at, now)
	if len(st.at) > maxPerHour {
		st.at = st.at[len(st.at)-maxPerHour:]
	}
	s.sends.Set(user, st, time.Hour+resendAfter)
	return nil
}

// pruneBefore drops times at or before cut from a sorted slice: an event
// exactly one hour old has left the rolling hour.
func pruneBefore(ts []time.Time, cut time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(cut) {
		i++
	}
	if i == 0 {
		return ts
	}
	return append(ts[:0], ts[i:]...)
}

// PutCode implements Store.
func (s *MemoryStore) PutCode(_ context.Context, key string, code Code, ttl time.Duration) error {
	if len(code.MAC) > 32 || ttl <= 0 {
		return errBadCode
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, replacing := s.codes.Get(key); !replacing && s.codes.ItemCount() >= s.maxPending {
		// ItemCount includes expired entries the janitor has not yet
		// removed; drop them before refusing.
		s.codes.DeleteExpired()
		if s.codes.ItemCount() >= s.maxPending {
			return ErrStoreFull
		}
	}
	c := &memCode{macLen: uint8(len(code.MAC)), attempts: int32(code.Attempts), email: code.Email, expiresAt: code.ExpiresAt}
	copy(c.mac[:], code.MAC)
	s.codes.Set(key, c, ttl)
	return nil
}

func (c *memCode) code() Code {
	return Code{
		MAC:       append([]byte(nil), c.mac[:c.macLen]...),
		Email:     c.email,
		Attempts:  int(c.attempts),
		ExpiresAt: c.expiresAt,
	}
}

// PutCeremony implements Store. Pending ceremonies share the maxPending
// bound with codes, counted separately.
func (s *MemoryStore) PutCeremony(_ context.Context, key string, state []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errBadCode
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ceremonies.ItemCount() >= s.maxPending {
		s.ceremonies.DeleteExpired()
		if s.ceremonies.ItemCount() >= s.maxPending {
			return ErrStoreFull
		}
	}
	s.ceremonies.Set(key, append([]byte(nil), state...), ttl)
	return nil
}

// TakeCeremony implements Store: the get and the delete run under one lock.
func (s *MemoryStore) TakeCeremony(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.ceremonies.Get(key)
	if !ok {
		return nil, ErrNoCeremony
	}
	s.ceremonies.Delete(key)
	return v.([]byte), nil
}

// PeekCode implements Store.
func (s *MemoryStore) PeekCode(_ context.Context, key string) (Code, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.codes.Get(key)
	if !ok {
		return Code{}, ErrNoCode
	}
	return v.(*memCode).code(), nil
}

// CheckCode implements Store.
func (s *MemoryStore) CheckCode(_ context.Context, key string, mac []byte, maxAttempts int) (CheckResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.codes.Get(key)
	if !ok {
		return CheckResult{}, ErrNoCode
	}
	c := v.(*memCode)
	res := CheckResult{Code: c.code()}
	if subtle.ConstantTimeCompare(c.mac[:c.macLen], mac) == 1 {
		s.codes.Delete(key)
		res.OK = true
		return res, nil
	}
	// The entry is a pointer, so the count grows in place and the TTL
	// stays that of the code.
	c.attempts++
	left := maxAttempts - int(c.attempts)
	if left <= 0 {
		s.codes.Delete(key)
		left = 0
	}
	res.AttemptsLeft = left
	return res, nil
}

// AddFailure implements Store.
func (s *MemoryStore) AddFailure(_ context.Context, user string, now time.Time, maxPerHour int, lockout time.Duration) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var f *memFails
	if v, ok := s.fails.Get(user); ok {
		f = v.(*memFails)
	} else {
		f = &memFails{}
	}
	f.at = pruneBefore(f.at, now.Add(-time.Hour))
	f.at = append(f.at, now)
	// Only whether the count exceeds maxPerHour matters, so keep at most
	// maxPerHour+1 entries.
	if len(f.at) > maxPerHour+1 {
		f.at = append(f.at[:0], f.at[len(f.at)-maxPerHour-1:]...)
	}
	var left time.Duration
	if len(f.at) > maxPerHour {
		f.lockedUntil = now.Add(lockout)
		left = lockout
	} else if f.lockedUntil.After(now) {
		left = f.lockedUntil.Sub(now)
	}
	s.fails.Set(user, f, max(time.Hour, lockout))
	return left, nil
}

// Locked implements Store.
func (s *MemoryStore) Locked(_ context.Context, user string, now time.Time) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.fails.Get(user)
	if !ok {
		return 0, nil
	}
	if f := v.(*memFails); f.lockedUntil.After(now) {
		return f.lockedUntil.Sub(now), nil
	}
	return 0, nil
}

// Revoke implements Store.
func (s *MemoryStore) Revoke(_ context.Context, jti string, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	s.revoked.Set(jti, struct{}{}, ttl)
	return nil
}

// Epoch implements Store: one random value per MemoryStore, chosen when it
// is created. A restart loses the revocations, so tokens minted before it
// are refused after it.
func (s *MemoryStore) Epoch(context.Context) (string, error) { return s.epoch, nil }

// Revoked implements Store. It takes no lock of its own: a single go-cache
// read is atomic.
func (s *MemoryStore) Revoked(_ context.Context, jti, epoch string) (bool, error) {
	if epoch != s.epoch {
		return true, nil
	}
	_, ok := s.revoked.Get(jti)
	return ok, nil
}

// Ping implements Store; memory is always reachable.
func (s *MemoryStore) Ping(context.Context) error { return nil }

// Close implements Store. It empties the store; go-cache's janitor
// goroutines stop once the caches are unreachable.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes.Flush()
	s.sends.Flush()
	s.fails.Flush()
	s.revoked.Flush()
	return nil
}
