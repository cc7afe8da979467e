package challenge

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"slices"
	"strconv"
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
	// lastSweep is when room last swept a full cache; sweeps counts the
	// sweeps (for tests). Both under mu.
	lastSweep time.Time
	sweeps    int
	seq       uint64 // the last BeginCheck ticket, under mu
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

// memFails are a user's failures in the last hour, oldest first (checks
// in progress included, with their ticket), and the lockout end.
type memFails struct {
	at          []memFail
	lockedUntil time.Time
}

// memFail is one counted failure; ticket is set while it is a check in
// progress that EndCheck may still withdraw.
type memFail struct {
	at     time.Time
	ticket string
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

// releaseSend implements sendReleaser: it forgets the newest send of user
// recorded at now (PutCode refused the code for lack of room).
func (s *MemoryStore) releaseSend(user string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.sends.Get(user)
	if !ok {
		return
	}
	st := v.(*memSends)
	for i := len(st.at) - 1; i >= 0; i-- {
		if st.at[i].Equal(now) {
			st.at = append(st.at[:i], st.at[i+1:]...)
			return
		}
	}
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
	if _, replacing := s.codes.Get(key); !replacing && !s.room(s.codes) {
		return ErrStoreFull
	}
	c := &memCode{macLen: uint8(len(code.MAC)), attempts: int32(code.Attempts), email: code.Email, expiresAt: code.ExpiresAt}
	copy(c.mac[:], code.MAC)
	s.codes.Set(key, c, ttl)
	return nil
}

// sweepEvery is how often a full cache may be swept of expired entries
// that the janitor has not yet removed.
const sweepEvery = time.Second

// room reports whether c, a cache bounded by maxPending, can take a new
// entry; s.mu is held. The count is go-cache's item count, O(1). It
// includes expired entries the janitor (every minute) has not removed yet,
// so a full cache is swept of them, but at most once per sweepEvery: a
// flood of refused sends costs one O(n) sweep a second, not one each
// (SPEC §10: a full store must not slow every other request down).
func (s *MemoryStore) room(c *cache.Cache) bool {
	if c.ItemCount() < s.maxPending {
		return true
	}
	if now := time.Now(); now.Sub(s.lastSweep) >= sweepEvery {
		s.lastSweep = now
		s.sweeps++
		c.DeleteExpired()
	}
	return c.ItemCount() < s.maxPending
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
	if !s.room(s.ceremonies) {
		return ErrStoreFull
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
	f := s.failsOf(user, now)
	f.at = append(f.at, memFail{at: now})
	return s.settleFails(user, f, now, maxPerHour, lockout), nil
}

// BeginCheck implements Store.
func (s *MemoryStore) BeginCheck(_ context.Context, user string, now time.Time, maxPerHour int, lockout time.Duration) (string, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.failsOf(user, now)
	if f.lockedUntil.After(now) {
		return "", f.lockedUntil.Sub(now), nil
	}
	settled, pending := f.counts()
	switch {
	case settled >= maxPerHour:
		// No lock runs (none was set, or a clock went back), yet the hour
		// is full: lock until a slot is free, so Locked says so too.
		if leaves, ok := f.slotFree(maxPerHour); ok {
			f.lockedUntil = leaves
			s.fails.Set(user, f, max(time.Hour, lockout))
			return "", max(leaves.Sub(now), time.Millisecond), nil
		}
		return "", time.Hour, nil
	case settled+pending >= maxPerHour:
		// Checks in progress fill the count; they settle in moments.
		return "", time.Second, nil
	}
	s.seq++
	ticket := strconv.FormatUint(s.seq, 36)
	f.at = append(f.at, memFail{at: now, ticket: ticket})
	s.fails.Set(user, f, max(time.Hour, lockout))
	return ticket, 0, nil
}

// EndCheck implements Store.
func (s *MemoryStore) EndCheck(_ context.Context, user, ticket string, failed bool, now time.Time, maxPerHour int, lockout time.Duration) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.failsOf(user, now)
	for i := range f.at {
		if ticket != "" && f.at[i].ticket == ticket {
			if failed {
				f.at[i].ticket = ""
			} else {
				f.at = append(f.at[:i], f.at[i+1:]...)
			}
			break
		}
	}
	if !failed {
		s.fails.Set(user, f, max(time.Hour, lockout))
		return 0, nil
	}
	return s.settleFails(user, f, now, maxPerHour, lockout), nil
}

// FailuresLeft implements Store.
func (s *MemoryStore) FailuresLeft(_ context.Context, user string, now time.Time, maxPerHour int) (int, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var f *memFails
	if v, ok := s.fails.Get(user); ok {
		f = v.(*memFails)
	} else {
		return max(maxPerHour, 0), time.Time{}, nil
	}
	cut := now.Add(-time.Hour)
	n := 0
	var oldest time.Time
	for _, e := range f.at {
		if !e.at.After(cut) {
			continue
		}
		n++
		if oldest.IsZero() || e.at.Before(oldest) {
			oldest = e.at
		}
	}
	return max(maxPerHour-n, 0), oldest, nil
}

// counts returns the settled failures and the checks in progress.
func (f *memFails) counts() (settled, pending int) {
	for _, e := range f.at {
		if e.ticket == "" {
			settled++
		} else {
			pending++
		}
	}
	return settled, pending
}

// slotFree returns when fewer than maxPerHour settled failures will be
// left in the rolling hour: the moment the oldest of the newest maxPerHour
// leaves it (an event exactly one hour old has left). ok is false when
// fewer than maxPerHour are settled, or maxPerHour < 1 (no slot ever).
func (f *memFails) slotFree(maxPerHour int) (time.Time, bool) {
	if maxPerHour < 1 {
		return time.Time{}, false
	}
	var settled []time.Time
	for _, e := range f.at {
		if e.ticket == "" {
			settled = append(settled, e.at)
		}
	}
	if len(settled) < maxPerHour {
		return time.Time{}, false
	}
	// Callers pass their own clocks, so entries need not be in order.
	slices.SortFunc(settled, time.Time.Compare)
	return settled[len(settled)-maxPerHour].Add(time.Hour), true
}

// failsOf returns user's failures with those that left the rolling hour
// dropped (an event exactly one hour old has left it). s.mu is held.
func (s *MemoryStore) failsOf(user string, now time.Time) *memFails {
	f := &memFails{}
	if v, ok := s.fails.Get(user); ok {
		f = v.(*memFails)
	}
	cut := now.Add(-time.Hour)
	i := 0
	for i < len(f.at) && !f.at[i].at.After(cut) {
		i++
	}
	if i > 0 {
		f.at = append(f.at[:0], f.at[i:]...)
	}
	return f
}

// settleFails locks user once maxPerHour failures are counted (N means N)
// until LockEnd: the later of the lockout's end and the moment a slot in
// the rolling hour is free. It stores f and returns the lock left. Only
// the newest failures can matter, so at most maxPerHour settled ones are
// kept, with any checks in progress. s.mu is held.
func (s *MemoryStore) settleFails(user string, f *memFails, now time.Time, maxPerHour int, lockout time.Duration) time.Duration {
	settled, _ := f.counts()
	for i := 0; settled > max(maxPerHour, 1) && i < len(f.at); {
		if f.at[i].ticket == "" {
			f.at = append(f.at[:i], f.at[i+1:]...)
			settled--
			continue
		}
		i++
	}
	if settled >= maxPerHour {
		leaves, _ := f.slotFree(maxPerHour)
		f.lockedUntil = LockEnd(now, lockout, leaves, f.lockedUntil)
	}
	var left time.Duration
	if f.lockedUntil.After(now) {
		left = f.lockedUntil.Sub(now)
	}
	s.fails.Set(user, f, max(time.Hour, lockout))
	return left
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
