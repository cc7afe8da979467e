package storetest

import (
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
	// The failure that locks is at about real time (offset 0) so that
	// Locked, which may bound the lock with a real-time TTL, agrees with
	// the fake clock; earlier failures are in the fake past.
	// The lock lasts until the later of the lockout's end and the moment
	// the oldest counted failure leaves the hour (challenge.LockEnd).
	tests := []struct {
		name  string
		max   int
		steps []failStep
		want  time.Duration // the lock left at offset 0
	}{
		{
			// N means N: the third failure with a limit of 3 locks, until
			// the one at -2m leaves the hour (longer than the lockout).
			name: "reaching the limit locks", max: 3,
			steps: []failStep{
				{-2 * time.Minute, false},
				{-1 * time.Minute, false},
				{0, true},
			},
			want: 58 * time.Minute,
		},
		{
			// Rolling, not fixed: the failure at -70m has left the hour by
			// -5m, so 0 is the third in the hour, not the fourth. The one
			// at -50m leaves in 10m, before the lockout ends.
			name: "rolling hour", max: 3,
			steps: []failStep{
				{-70 * time.Minute, false},
				{-50 * time.Minute, false},
				{-5 * time.Minute, false},
				{0, true},
			},
			want: lockout,
		},
		{
			name: "one allowed", max: 1,
			steps: []failStep{
				{0, true},
			},
			want: time.Hour,
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
				if got != tt.want {
					t.Fatalf("step %d (at %v): got lock %v; want %v", i, st.at, got, tt.want)
				}
			}
			left, err := s.Locked(t.Context(), user, base)
			if err != nil {
				t.Fatalf("Locked: %v", err)
			}
			// A store may bound the lock by a real-time TTL set a moment ago.
			if left < tt.want-2*time.Second || left > tt.want {
				t.Fatalf("Locked: got %v; want %v", left, tt.want)
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
			// All max failures are at now: the lock lasts until they leave
			// the hour, longer than the lockout.
			if i == max && left != time.Hour {
				t.Fatalf("wrong code %d: lock %v; want %v (until the failures leave the hour)", i, left, time.Hour)
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

	t.Run("a lockout shorter than the hour lasts until a slot is free", func(t *testing.T) {
		// max wrong codes at -30m, -20m, -10m with a 1m lockout: the
		// lockout alone would end at -9m with the hour still holding max
		// failures, and a fourth wrong code could be checked in the hour.
		// The lock lasts until the failure at -30m leaves the hour (+30m),
		// and is refused at 0 with exactly that wait. The clock is the
		// callers' (no sleeping): offsets from base, a whole second.
		s := newStore(t)
		user := unique(t)
		const lockout = time.Minute
		base := clock()
		at := func(d time.Duration) time.Time { return base.Add(d) }
		check := func(now time.Time, failed bool) (string, time.Duration) {
			t.Helper()
			ticket, left, err := s.BeginCheck(t.Context(), user, now, max, lockout)
			if err != nil {
				t.Fatalf("BeginCheck: %v", err)
			}
			if ticket == "" {
				return "", left
			}
			left, err = s.EndCheck(t.Context(), user, ticket, failed, now, max, lockout)
			if err != nil {
				t.Fatalf("EndCheck: %v", err)
			}
			return ticket, left
		}
		for i, d := range []time.Duration{-30 * time.Minute, -20 * time.Minute, -10 * time.Minute} {
			ticket, left := check(at(d), true)
			if ticket == "" {
				t.Fatalf("wrong code %d at %v: refused (left %v); want checked", i+1, d, left)
			}
			if i < max-1 && left != 0 {
				t.Fatalf("wrong code %d at %v: lock %v; want none", i+1, d, left)
			}
			if i == max-1 && left != 40*time.Minute {
				t.Errorf("wrong code %d at %v: lock %v; want 40m (until -30m leaves the hour at +30m, not the 1m lockout)", i+1, d, left)
			}
		}
		// The lockout ended at -9m; the hour still holds max failures.
		for _, d := range []time.Duration{-9 * time.Minute, 0, 29*time.Minute + 59*time.Second} {
			for _, failed := range []bool{true, false} {
				if ticket, left := check(at(d), failed); ticket != "" || left != 30*time.Minute-d {
					t.Fatalf("check at %v (wrong %v) with %d failures in the hour: got ticket %q, wait %v; want refused with %v (until -30m leaves the hour)",
						d, failed, max, ticket, left, 30*time.Minute-d)
				}
			}
			if left, err := s.Locked(t.Context(), user, at(d)); err != nil || left != 30*time.Minute-d {
				t.Fatalf("Locked at %v: got %v, %v; want %v", d, left, err, 30*time.Minute-d)
			}
		}
		// At +30m one slot is free: one check at a time is admitted.
		ticket, left, err := s.BeginCheck(t.Context(), user, at(30*time.Minute), max, lockout)
		if err != nil || ticket == "" {
			t.Fatalf("check at +30m, a slot free: got %q, %v, %v; want admitted", ticket, left, err)
		}
		if tk, left, err := s.BeginCheck(t.Context(), user, at(30*time.Minute), max, lockout); err != nil || tk != "" || left <= 0 {
			t.Fatalf("second check at +30m while one is in progress: got %q, %v, %v; want refused", tk, left, err)
		}
		// Wrong: locked again, until -20m leaves the hour (+40m).
		if left, err := s.EndCheck(t.Context(), user, ticket, true, at(30*time.Minute), max, lockout); err != nil || left != 10*time.Minute {
			t.Fatalf("wrong code at +30m: got lock %v, %v; want 10m (until -20m leaves the hour)", left, err)
		}
		// At +40m a slot is free again; a right code withdraws its failure
		// and locks nothing.
		if ticket, left := check(at(40*time.Minute), false); ticket == "" || left != 0 {
			t.Fatalf("right code at +40m: got ticket %q, lock %v; want admitted, no lock", ticket, left)
		}
		if left, err := s.Locked(t.Context(), user, at(40*time.Minute)); err != nil || left != 0 {
			t.Fatalf("Locked at +40m after a right code: got %v, %v; want 0", left, err)
		}
		// The wrong code at +41m is the third in the hour (-10m, +30m,
		// +41m): locked until -10m leaves the hour at +50m, after the
		// lockout's end at +42m.
		if ticket, left := check(at(41*time.Minute), true); ticket == "" || left != 9*time.Minute {
			t.Fatalf("wrong code at +41m: got ticket %q, lock %v; want checked, locked 9m (until -10m leaves the hour)", ticket, left)
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

// testFailuresLeft: FailuresLeft counts the failures in the rolling hour
// (checks in progress included, an event exactly one hour old left out),
// says the oldest of them, never goes below 0 and changes nothing.
func testFailuresLeft(t *testing.T, newStore func(*testing.T) challenge.Store) {
	s := newStore(t)
	ctx := t.Context()
	user := unique(t)
	base := clock()
	left, oldest, err := s.FailuresLeft(ctx, user, base, 10)
	if err != nil || left != 10 || !oldest.IsZero() {
		t.Fatalf("no failures: got %d, %v, %v; want 10, zero time", left, oldest, err)
	}
	for _, at := range []time.Duration{-time.Hour, -50 * time.Minute, -5 * time.Minute} {
		if _, err := s.AddFailure(ctx, user, base.Add(at), 10, time.Minute); err != nil {
			t.Fatalf("AddFailure: %v", err)
		}
	}
	for range 2 { // a read changes nothing
		left, oldest, err = s.FailuresLeft(ctx, user, base, 10)
		if err != nil || left != 8 || !oldest.Equal(base.Add(-50*time.Minute)) {
			t.Fatalf("two in the hour: got %d, %v, %v; want 8, %v", left, oldest, err, base.Add(-50*time.Minute))
		}
	}
	ticket, _, err := s.BeginCheck(ctx, user, base, 10, time.Minute)
	if err != nil || ticket == "" {
		t.Fatalf("BeginCheck: %q, %v", ticket, err)
	}
	if left, _, err := s.FailuresLeft(ctx, user, base, 10); err != nil || left != 7 {
		t.Fatalf("a check in progress: got %d, %v; want 7", left, err)
	}
	if _, err := s.EndCheck(ctx, user, ticket, false, base, 10, time.Minute); err != nil {
		t.Fatalf("EndCheck: %v", err)
	}
	if left, _, err := s.FailuresLeft(ctx, user, base, 10); err != nil || left != 8 {
		t.Fatalf("after a right code: got %d, %v; want 8", left, err)
	}
	// The hour rolls: at base+10m the failure at -50m has left it.
	left, oldest, err = s.FailuresLeft(ctx, user, base.Add(10*time.Minute), 10)
	if err != nil || left != 9 || !oldest.Equal(base.Add(-5*time.Minute)) {
		t.Fatalf("an hour after -50m: got %d, %v, %v; want 9, %v", left, oldest, err, base.Add(-5*time.Minute))
	}
	if left, _, err := s.FailuresLeft(ctx, user, base, 1); err != nil || left != 0 {
		t.Fatalf("more failures than the limit: got %d, %v; want 0", left, err)
	}
}
