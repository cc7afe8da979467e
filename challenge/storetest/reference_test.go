package storetest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge"
)

// TestReference runs the suite against refStore, a deliberately plain
// implementation, to show the suite passes against a correct store without
// depending on either real one.
func TestReference(t *testing.T) {
	Run(t, func(t *testing.T) challenge.Store { return newRefStore() })
}

// refStore is a mutex-guarded map store. Real time bounds every entry's
// life; the caller's now drives the rolling windows and the locks.
type refStore struct {
	mu      sync.Mutex
	sends   map[string][]time.Time
	codes   map[string]refCode
	fails   map[string][]time.Time
	locks   map[string]time.Time // end of lock, on the callers' clock
	revoked map[string]time.Time // real-time end of revocation
	cer     map[string]refCeremony
	pending map[string]map[string]time.Time // user -> ticket -> when begun
	seq     int
}

type refCeremony struct {
	state []byte
	dies  time.Time
}

func (s *refStore) PutCeremony(_ context.Context, key string, state []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("ttl must be positive")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cer[key] = refCeremony{bytes.Clone(state), time.Now().Add(ttl)}
	return nil
}

func (s *refStore) TakeCeremony(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cer[key]
	delete(s.cer, key)
	if !ok || !time.Now().Before(c.dies) {
		return nil, challenge.ErrNoCeremony
	}
	return c.state, nil
}

type refCode struct {
	c    challenge.Code
	dies time.Time
}

var _ challenge.Store = (*refStore)(nil)

func newRefStore() *refStore {
	return &refStore{
		sends: map[string][]time.Time{}, codes: map[string]refCode{},
		fails: map[string][]time.Time{}, locks: map[string]time.Time{}, revoked: map[string]time.Time{},
		cer: map[string]refCeremony{}, pending: map[string]map[string]time.Time{},
	}
}

func inHour(ts []time.Time, now time.Time) []time.Time {
	var out []time.Time
	for _, t := range ts {
		if t.After(now.Add(-time.Hour)) {
			out = append(out, t)
		}
	}
	return out
}

func (s *refStore) ThrottleSend(_ context.Context, user string, now time.Time, resendAfter time.Duration, maxPerHour int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := inHour(s.sends[user], now)
	var wait time.Duration
	if n := len(ts); n > 0 {
		wait = max(wait, ts[n-1].Add(resendAfter).Sub(now))
	}
	if n := len(ts); n >= maxPerHour {
		wait = max(wait, ts[n-maxPerHour].Add(time.Hour).Sub(now))
	}
	if wait > 0 {
		return &challenge.LimitError{RetryAfter: wait, Err: challenge.ErrThrottled}
	}
	s.sends[user] = append(ts, now)
	return nil
}

func (s *refStore) PutCode(_ context.Context, key string, code challenge.Code, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	code.MAC = bytes.Clone(code.MAC)
	s.codes[key] = refCode{code, time.Now().Add(ttl)}
	return nil
}

func (s *refStore) get(key string) (refCode, bool) {
	rc, ok := s.codes[key]
	if ok && time.Now().After(rc.dies) {
		delete(s.codes, key)
		return rc, false
	}
	return rc, ok
}

func (s *refStore) PeekCode(_ context.Context, key string) (challenge.Code, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rc, ok := s.get(key)
	if !ok {
		return challenge.Code{}, challenge.ErrNoCode
	}
	return rc.c, nil
}

func (s *refStore) CheckCode(_ context.Context, key string, mac []byte, maxAttempts int) (challenge.CheckResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rc, ok := s.get(key)
	if !ok {
		return challenge.CheckResult{}, challenge.ErrNoCode
	}
	before := rc.c
	if subtle.ConstantTimeCompare(rc.c.MAC, mac) == 1 {
		delete(s.codes, key)
		return challenge.CheckResult{OK: true, Code: before}, nil
	}
	rc.c.Attempts++
	left := maxAttempts - rc.c.Attempts
	if left <= 0 {
		delete(s.codes, key)
		left = 0
	} else {
		s.codes[key] = rc
	}
	return challenge.CheckResult{AttemptsLeft: left, Code: before}, nil
}

func (s *refStore) AddFailure(_ context.Context, user string, now time.Time, maxPerHour int, lockout time.Duration) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails[user] = append(inHour(s.fails[user], now), now)
	return s.settle(user, now, maxPerHour, lockout), nil
}

// settle locks user once maxPerHour failures are in the hour, until the
// later of now+lockout and the moment the oldest of the newest maxPerHour
// leaves the hour, and returns the lock left.
func (s *refStore) settle(user string, now time.Time, maxPerHour int, lockout time.Duration) time.Duration {
	ts := slices.SortedFunc(slices.Values(inHour(s.fails[user], now)), time.Time.Compare)
	if len(ts) >= maxPerHour && maxPerHour > 0 {
		s.locks[user] = challenge.LockEnd(now, lockout, ts[len(ts)-maxPerHour].Add(time.Hour), s.locks[user])
	}
	return max(0, s.locks[user].Sub(now))
}

func (s *refStore) FailuresLeft(_ context.Context, user string, now time.Time, maxPerHour int) (int, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest time.Time
	for _, at := range inHour(s.fails[user], now) {
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	for _, at := range s.pending[user] {
		if at.After(now.Add(-time.Hour)) && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	return max(maxPerHour-s.counted(user, now), 0), oldest, nil
}

// counted is the user's failures and checks in progress in the hour.
func (s *refStore) counted(user string, now time.Time) int {
	n := len(inHour(s.fails[user], now))
	for _, at := range s.pending[user] {
		if at.After(now.Add(-time.Hour)) {
			n++
		}
	}
	return n
}

func (s *refStore) BeginCheck(_ context.Context, user string, now time.Time, maxPerHour int, lockout time.Duration) (string, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if left := s.locks[user].Sub(now); left > 0 {
		return "", left, nil
	}
	settled := len(inHour(s.fails[user], now))
	pending := s.counted(user, now) - settled
	switch {
	case settled >= maxPerHour:
		return "", max(s.settle(user, now, maxPerHour, 0), time.Millisecond), nil
	case settled+pending >= maxPerHour:
		return "", time.Second, nil
	}
	s.seq++
	ticket := fmt.Sprint(s.seq)
	if s.pending[user] == nil {
		s.pending[user] = map[string]time.Time{}
	}
	s.pending[user][ticket] = now
	return ticket, 0, nil
}

func (s *refStore) EndCheck(_ context.Context, user, ticket string, failed bool, now time.Time, maxPerHour int, lockout time.Duration) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.pending[user][ticket]
	delete(s.pending[user], ticket)
	if !failed {
		return 0, nil
	}
	if ok {
		s.fails[user] = append(s.fails[user], at)
	}
	return s.settle(user, now, maxPerHour, lockout), nil
}

func (s *refStore) Locked(_ context.Context, user string, now time.Time) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(0, s.locks[user].Sub(now)), nil
}

func (s *refStore) Revoke(_ context.Context, jti string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked[jti] = time.Now().Add(ttl)
	return nil
}

func (s *refStore) Epoch(context.Context) (string, error) { return "ref", nil }

func (s *refStore) Revoked(_ context.Context, jti, epoch string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return epoch != "ref" || time.Now().Before(s.revoked[jti]), nil
}

func (s *refStore) Ping(context.Context) error { return nil }
func (s *refStore) Close() error               { return nil }
