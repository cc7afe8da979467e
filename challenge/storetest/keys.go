package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge"
)

// testOpaqueKeys stores state under keys that differ only in ways a naive
// backend key scheme would merge (separators, case, NUL, length) and checks
// that each keeps its own state.
func testOpaqueKeys(t *testing.T, newStore func(*testing.T) challenge.Store) {
	s := newStore(t)
	u := unique(t)
	keys := []string{
		u, u + ":", u + ":x", u + "\x00", u + "\x00x", strings.ToUpper(u), u + " ",
		u + "\r\n", u + "*", u + "{x}", u + "é", u + strings.Repeat("x", 4096),
	}
	now := clock()
	codes := make(map[string]challenge.Code)
	for i, k := range keys {
		codes[k] = putCode(t, t.Context(), s, k, "user"+string(rune('a'+i))+"@example.com", time.Minute)
		if err := s.ThrottleSend(t.Context(), k, now, time.Minute, 1); err != nil {
			t.Errorf("ThrottleSend(%q): got %v; want allowed (a key collided)", k, err)
		}
	}
	for _, k := range keys {
		got, err := s.PeekCode(t.Context(), k)
		if err != nil {
			t.Errorf("PeekCode(%q): %v", k, err)
			continue
		}
		assertCode(t, got, codes[k], 0)
	}
	if err := s.Revoke(t.Context(), keys[1], time.Minute); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if got, err := s.Revoked(t.Context(), k, epoch(t, s)); err != nil || got != (i == 1) {
			t.Errorf("Revoked(%q): got %v, %v; want %v", k, got, err, i == 1)
		}
	}
}

// testExpiry checks that entries die with their TTL. It waits on real time,
// polling with a deadline, so its subtests run in parallel.
func testExpiry(t *testing.T, newStore func(*testing.T) challenge.Store) {
	const wait = 10 * time.Second
	noCode := func(s challenge.Store, key string) func() (bool, error) {
		return func() (bool, error) {
			_, err := s.PeekCode(t.Context(), key)
			if errors.Is(err, challenge.ErrNoCode) {
				return true, nil
			}
			return false, err
		}
	}

	t.Run("code", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		key := unique(t)
		c := putCode(t, t.Context(), s, key, "jane@example.com", 1500*time.Millisecond)
		if _, err := s.PeekCode(t.Context(), key); err != nil {
			t.Fatalf("PeekCode right after PutCode: %v", err)
		}
		eventually(t, wait, "code expiry", noCode(s, key))
		if res, err := s.CheckCode(t.Context(), key, c.MAC, 5); !errors.Is(err, challenge.ErrNoCode) || res.OK {
			t.Fatalf("right mac after expiry: got %+v, %v; want ErrNoCode", res, err)
		}
	})

	t.Run("mismatch keeps the ttl", func(t *testing.T) {
		// A wrong attempt must not give the code a fresh (or no) TTL.
		t.Parallel()
		s := newStore(t)
		key := unique(t)
		putCode(t, t.Context(), s, key, "jane@example.com", 1500*time.Millisecond)
		if res, err := s.CheckCode(t.Context(), key, newMAC(t), 5); err != nil || res.OK {
			t.Fatalf("wrong mac: got %+v, %v; want a mismatch", res, err)
		}
		eventually(t, wait, "code expiry after a mismatch", noCode(s, key))
	})

	t.Run("replace sets the new ttl", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		key := unique(t)
		putCode(t, t.Context(), s, key, "jane@example.com", time.Hour)
		putCode(t, t.Context(), s, key, "jane@example.com", 1500*time.Millisecond)
		eventually(t, wait, "replaced code expiry", noCode(s, key))
	})

	t.Run("revocation", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		jti := unique(t)
		if err := s.Revoke(t.Context(), jti, 1500*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if revoked, err := s.Revoked(t.Context(), jti, epoch(t, s)); err != nil || !revoked {
			t.Fatalf("Revoked right after Revoke: got %v, %v; want true", revoked, err)
		}
		eventually(t, wait, "revocation expiry", func() (bool, error) {
			revoked, err := s.Revoked(t.Context(), jti, epoch(t, s))
			return !revoked, err
		})
	})

	t.Run("lockout", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		user := unique(t)
		// The first failure leaves the hour 1.5s from now, when the
		// lockout ends too: the lock's real TTL is 1.5s.
		now := time.Now()
		if _, err := s.AddFailure(t.Context(), user, now.Add(-time.Hour+1500*time.Millisecond), 2, 1500*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		got, err := s.AddFailure(t.Context(), user, now, 2, 1500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if got <= 0 || got > 1500*time.Millisecond {
			t.Fatalf("second failure with maxPerHour 2: got lock %v; want 1.5s", got)
		}
		eventually(t, wait, "lockout expiry", func() (bool, error) {
			left, err := s.Locked(t.Context(), user, time.Now())
			return left == 0, err
		})
	})
}
