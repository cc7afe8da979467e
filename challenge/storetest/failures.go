package storetest

import (
	"errors"
	"strings"
	"sync"
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
			// N means N: the third failure with a limit of 3 locks.
			name: "reaching the limit locks", max: 3,
			steps: []failStep{
				{-2 * time.Minute, false},
				{-1 * time.Minute, false},
				{0, true},
			},
		},
		{
			// Rolling, not fixed: the failure at -70m has left the hour by
			// -5m, so 0 is the third in the hour, not the fourth.
			name: "rolling hour", max: 3,
			steps: []failStep{
				{-70 * time.Minute, false},
				{-50 * time.Minute, false},
				{-5 * time.Minute, false},
				{0, true},
			},
		},
		{
			name: "one allowed", max: 1,
			steps: []failStep{
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
			if got, err := s.AddFailure(t.Context(), other, now, 2, lockout); err != nil || got != 0 {
				t.Errorf("first AddFailure(%q) of 2: got %v, %v; want 0", other, got, err)
			}
		}
	})

	t.Run("checks: N means N", func(t *testing.T) { testChecks(t, newStore, lockout) })

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

// testChecks checks BeginCheck and EndCheck (SPEC §3
// otp.max_failures_per_hour: N means N): exactly N wrong codes are checked
// per rolling hour, the Nth locks, and from then on no check is admitted,
// whatever the code; right codes withdraw the failure counted in advance.
func testChecks(t *testing.T, newStore func(*testing.T) challenge.Store, lockout time.Duration) {
	const max = 3
	begin := func(t *testing.T, s challenge.Store, user string, now time.Time) (string, time.Duration) {
		t.Helper()
		ticket, left, err := s.BeginCheck(t.Context(), user, now, max, lockout)
		if err != nil {
			t.Fatalf("BeginCheck: %v", err)
		}
		if (ticket == "") == (left == 0) {
			t.Fatalf("BeginCheck: got ticket %q and left %v; want exactly one of them", ticket, left)
		}
		return ticket, left
	}
	end := func(t *testing.T, s challenge.Store, user, ticket string, failed bool, now time.Time) time.Duration {
		t.Helper()
		left, err := s.EndCheck(t.Context(), user, ticket, failed, now, max, lockout)
		if err != nil {
			t.Fatalf("EndCheck: %v", err)
		}
		return left
	}

	t.Run("the Nth wrong code locks", func(t *testing.T) {
		s := newStore(t)
		user := unique(t)
		now := time.Now()
		for i := 1; i <= max; i++ {
			ticket, left := begin(t, s, user, now)
			if ticket == "" {
				t.Fatalf("check %d of %d: refused (left %v); want admitted", i, max, left)
			}
			left = end(t, s, user, ticket, true, now)
			if (i == max) != (left > 0) {
				t.Fatalf("wrong code %d of %d: lockout %v; want one only at the %dth", i, max, left, max)
			}
			if i == max && (left < lockout-2*time.Second || left > lockout) {
				t.Fatalf("wrong code %d: lockout %v; want %v", i, left, lockout)
			}
		}
		// Locked: no further check, right or wrong, is admitted.
		for range 3 {
			if ticket, left := begin(t, s, user, now); ticket != "" || left <= 0 {
				t.Fatalf("check after the lockout: got ticket %q, left %v; want refused with the lockout left", ticket, left)
			}
		}
		if left, err := s.Locked(t.Context(), user, now); err != nil || left <= 0 {
			t.Fatalf("Locked: got %v, %v; want locked", left, err)
		}
	})

	t.Run("right codes do not count", func(t *testing.T) {
		s := newStore(t)
		user := unique(t)
		now := time.Now()
		for i := range 2 * max {
			ticket, left := begin(t, s, user, now)
			if ticket == "" {
				t.Fatalf("right code %d: refused (left %v); want admitted", i, left)
			}
			if left := end(t, s, user, ticket, false, now); left != 0 {
				t.Fatalf("right code %d: lockout %v; want none", i, left)
			}
		}
		// max-1 wrong codes, then a right one: still admitted.
		for range max - 1 {
			ticket, _ := begin(t, s, user, now)
			end(t, s, user, ticket, true, now)
		}
		ticket, left := begin(t, s, user, now)
		if ticket == "" {
			t.Fatalf("right code after %d of %d failures: refused (left %v); want admitted", max-1, max, left)
		}
		end(t, s, user, ticket, false, now)
		if left, err := s.Locked(t.Context(), user, now); err != nil || left != 0 {
			t.Fatalf("Locked after a right code: got %v, %v; want 0", left, err)
		}
	})

	t.Run("failures from AddFailure count", func(t *testing.T) {
		s := newStore(t)
		user := unique(t)
		now := time.Now()
		for range max - 1 {
			if _, err := s.AddFailure(t.Context(), user, now, max, lockout); err != nil {
				t.Fatal(err)
			}
		}
		ticket, _ := begin(t, s, user, now)
		if ticket == "" {
			t.Fatal("check after max-1 failures: refused; want admitted")
		}
		if left := end(t, s, user, ticket, true, now); left <= 0 {
			t.Fatalf("the %dth failure: lockout %v; want locked", max, left)
		}
	})

	t.Run("after the lockout one check at a time", func(t *testing.T) {
		// The lockout ends with max failures still in the hour: one check
		// is admitted at a time (a right code must get its chance), and a
		// wrong one locks again at once.
		s := newStore(t)
		user := unique(t)
		const short = 1200 * time.Millisecond
		for range max {
			if _, err := s.AddFailure(t.Context(), user, time.Now(), max, short); err != nil {
				t.Fatal(err)
			}
		}
		var ticket string
		eventually(t, 10*time.Second, "a check admitted after the lockout", func() (bool, error) {
			tk, _, err := s.BeginCheck(t.Context(), user, time.Now(), max, short)
			ticket = tk
			return tk != "", err
		})
		if tk, left, err := s.BeginCheck(t.Context(), user, time.Now(), max, short); err != nil || tk != "" || left <= 0 {
			t.Fatalf("second check while one is in progress: got %q, %v, %v; want refused", tk, left, err)
		}
		if left, err := s.EndCheck(t.Context(), user, ticket, true, time.Now(), max, short); err != nil || left <= 0 {
			t.Fatalf("wrong code after the lockout: got %v, %v; want locked again", left, err)
		}
	})

	t.Run("concurrent checks admit N", func(t *testing.T) {
		// However many checks race, at most max are admitted in the hour,
		// so at most max wrong codes are ever checked.
		s := newStore(t)
		user := unique(t)
		now := time.Now()
		const n = 40
		var wg sync.WaitGroup
		tickets := make([]string, n)
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range tickets {
			wg.Go(func() {
				<-start
				tickets[i], _, errs[i] = s.BeginCheck(t.Context(), user, now, max, lockout)
			})
		}
		close(start)
		wg.Wait()
		admitted := 0
		for i := range tickets {
			if errs[i] != nil {
				t.Fatalf("BeginCheck: %v", errs[i])
			}
			if tickets[i] != "" {
				admitted++
			}
		}
		if admitted != max {
			t.Fatalf("got %d of %d concurrent checks admitted; want %d", admitted, n, max)
		}
	})
}
