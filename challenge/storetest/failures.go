package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge"
)

// failStep is one AddFailure call at base+at; locked says whether it must
// report a lockout.
type failStep struct {
	at     time.Duration
	locked bool
}

func testFailures(t *testing.T, newStore func(*testing.T) challenge.Store) {
	const lockout = 15 * time.Minute
	// The failure that locks is at real time (offset 0) so that Locked,
	// which may measure the lockout with a real-time TTL, agrees with the
	// fake clock; earlier failures are in the fake past.
	tests := []struct {
		name  string
		max   int
		steps []failStep
	}{
		{
			name: "exceeding the limit locks", max: 3,
			steps: []failStep{
				{-3 * time.Minute, false},
				{-2 * time.Minute, false},
				{-1 * time.Minute, false},
				{0, true},
			},
		},
		{
			// Rolling, not fixed: the failure at -70m has left the hour by
			// -5m, so -5m is the third in the hour, not the fourth.
			name: "rolling hour", max: 3,
			steps: []failStep{
				{-70 * time.Minute, false},
				{-50 * time.Minute, false},
				{-30 * time.Minute, false},
				{-5 * time.Minute, false},
				{0, true},
			},
		},
		{
			name: "one allowed", max: 1,
			steps: []failStep{
				{-time.Second, false},
				{0, true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			user := unique(t)
			base := clock()
			for i, st := range tt.steps {
				got, err := s.AddFailure(t.Context(), user, base.Add(st.at), tt.max, lockout)
				if err != nil {
					t.Fatalf("step %d: AddFailure: %v", i, err)
				}
				if !st.locked {
					if got != 0 {
						t.Fatalf("step %d (at %v): got lockout %v; want 0", i, st.at, got)
					}
					if left, err := s.Locked(t.Context(), user, time.Now()); err != nil || left != 0 {
						t.Fatalf("step %d: Locked: got %v, %v; want 0", i, left, err)
					}
					continue
				}
				if got < lockout-2*time.Second || got > lockout {
					t.Fatalf("step %d (at %v): got lockout %v; want %v", i, st.at, got, lockout)
				}
			}
			left, err := s.Locked(t.Context(), user, time.Now())
			if err != nil {
				t.Fatalf("Locked: %v", err)
			}
			if left < lockout-5*time.Second || left > lockout {
				t.Fatalf("Locked: got %v; want about %v", left, lockout)
			}
		})
	}

	t.Run("per user", func(t *testing.T) {
		s := newStore(t)
		u := unique(t)
		now := time.Now()
		for range 2 {
			if _, err := s.AddFailure(t.Context(), u, now, 1, lockout); err != nil {
				t.Fatal(err)
			}
		}
		if left, err := s.Locked(t.Context(), u, now); err != nil || left <= 0 {
			t.Fatalf("Locked(%q): got %v, %v; want locked", u, left, err)
		}
		for _, other := range []string{u + "x", strings.ToUpper(u), u + ":"} {
			if left, err := s.Locked(t.Context(), other, now); err != nil || left != 0 {
				t.Errorf("Locked(%q): got %v, %v; want 0", other, left, err)
			}
			if got, err := s.AddFailure(t.Context(), other, now, 1, lockout); err != nil || got != 0 {
				t.Errorf("first AddFailure(%q): got %v, %v; want 0", other, got, err)
			}
		}
	})

	t.Run("unknown user is not locked", func(t *testing.T) {
		s := newStore(t)
		if left, err := s.Locked(t.Context(), unique(t), time.Now()); err != nil || left != 0 {
			t.Fatalf("got %v, %v; want 0, nil", left, err)
		}
	})
}

// epoch returns s's current epoch, failing t on an error.
func epoch(t *testing.T, s challenge.Store) string {
	t.Helper()
	e, err := s.Epoch(t.Context())
	if err != nil {
		t.Fatalf("Epoch: %v", err)
	}
	if e == "" {
		t.Fatal("Epoch: empty; want a value")
	}
	return e
}

func testRevoke(t *testing.T, newStore func(*testing.T) challenge.Store) {
	s := newStore(t)
	t.Run("other epoch", func(t *testing.T) {
		// A token minted in another epoch is refused, revoked or not: the
		// store lost the revocations that might concern it.
		e := epoch(t, s)
		if again := epoch(t, s); again != e {
			t.Fatalf("Epoch changed between calls: %q then %q", e, again)
		}
		jti := unique(t)
		for _, other := range []string{e + "x", "", strings.ToUpper(e) + "Z"} {
			if got, err := s.Revoked(t.Context(), jti, other); err != nil || !got {
				t.Errorf("Revoked(epoch %q, store's %q): got %v, %v; want true", other, e, got, err)
			}
		}
	})
	jti := unique(t)
	if got, err := s.Revoked(t.Context(), jti, epoch(t, s)); err != nil || got {
		t.Fatalf("Revoked before Revoke: got %v, %v; want false", got, err)
	}
	if err := s.Revoke(t.Context(), jti, time.Hour); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if got, err := s.Revoked(t.Context(), jti, epoch(t, s)); err != nil || !got {
		t.Fatalf("Revoked after Revoke: got %v, %v; want true", got, err)
	}
	for _, other := range []string{jti + "x", jti[:len(jti)-1], strings.ToUpper(jti)} {
		if got, err := s.Revoked(t.Context(), other, epoch(t, s)); err != nil || got {
			t.Errorf("Revoked(%q): got %v, %v; want false", other, got, err)
		}
	}
	// Revoking twice is harmless.
	if err := s.Revoke(t.Context(), jti, time.Hour); err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	if got, err := s.Revoked(t.Context(), jti, epoch(t, s)); err != nil || !got {
		t.Fatalf("Revoked after second Revoke: got %v, %v; want true", got, err)
	}
}

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
		now := time.Now()
		var got time.Duration
		for range 2 {
			var err error
			if got, err = s.AddFailure(t.Context(), user, now, 1, 1500*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
		if got <= 0 {
			t.Fatalf("second failure with maxPerHour 1: got lockout %v; want > 0", got)
		}
		eventually(t, wait, "lockout expiry", func() (bool, error) {
			left, err := s.Locked(t.Context(), user, time.Now())
			return left == 0, err
		})
	})
}
