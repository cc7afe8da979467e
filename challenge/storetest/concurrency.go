package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge"
)

// checkOutcome is one CheckCode call's result.
type checkOutcome struct {
	res challenge.CheckResult
	err error
}

// checkConcurrently calls CheckCode from one goroutine per mac, all released
// at once, and returns every outcome.
func checkConcurrently(t *testing.T, s challenge.Store, key string, macs [][]byte, maxAttempts int) []checkOutcome {
	t.Helper()
	out := make([]checkOutcome, len(macs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, mac := range macs {
		wg.Go(func() {
			<-start
			res, err := s.CheckCode(t.Context(), key, mac, maxAttempts)
			out[i] = checkOutcome{res, err}
		})
	}
	close(start)
	wg.Wait()
	return out
}

func testConcurrency(t *testing.T, newStore func(*testing.T) challenge.Store) {
	const n = 100

	t.Run("wrong guesses never exceed max attempts", func(t *testing.T) {
		// Several rounds, since a race may need a lucky interleaving.
		for round := range 3 {
			s := newStore(t)
			key := unique(t)
			const max = 5
			c := putCode(t, t.Context(), s, key, "jane@example.com", time.Minute)
			macs := make([][]byte, n)
			for i := range macs {
				macs[i] = newMAC(t)
			}
			var left []int
			for _, o := range checkConcurrently(t, s, key, macs, max) {
				switch {
				case errors.Is(o.err, challenge.ErrNoCode):
				case o.err != nil:
					t.Fatalf("round %d: CheckCode: %v", round, o.err)
				case o.res.OK:
					t.Fatalf("round %d: a wrong mac got OK", round)
				default:
					left = append(left, o.res.AttemptsLeft)
				}
			}
			// Each evaluated guess saw a distinct attempt count: had two
			// read the same count, more than max guesses would be evaluated.
			slices.Sort(left)
			if want := []int{0, 1, 2, 3, 4}; !slices.Equal(left, want) {
				t.Fatalf("round %d: got %d evaluated guesses with AttemptsLeft %v; want %v (max %d)", round, len(left), left, want, max)
			}
			if res, err := s.CheckCode(t.Context(), key, c.MAC, max); !errors.Is(err, challenge.ErrNoCode) {
				t.Fatalf("round %d: right mac after %d wrong: got %+v, %v; want ErrNoCode", round, n, res, err)
			}
		}
	})

	t.Run("right code wins exactly once", func(t *testing.T) {
		for round := range 3 {
			s := newStore(t)
			key := unique(t)
			c := putCode(t, t.Context(), s, key, "jane@example.com", time.Minute)
			macs := make([][]byte, n)
			for i := range macs {
				macs[i] = slices.Clone(c.MAC)
			}
			ok := 0
			for _, o := range checkConcurrently(t, s, key, macs, 5) {
				switch {
				case errors.Is(o.err, challenge.ErrNoCode):
				case o.err != nil:
					t.Fatalf("round %d: CheckCode: %v", round, o.err)
				case o.res.OK:
					ok++
					if o.res.Code.Email != c.Email {
						t.Errorf("round %d: got Email %q; want %q", round, o.res.Code.Email, c.Email)
					}
				default:
					t.Fatalf("round %d: the right mac got a mismatch: %+v", round, o.res)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: got %d OK of %d concurrent right submissions; want exactly 1", round, ok, n)
			}
		}
	})

	t.Run("right and wrong mixed", func(t *testing.T) {
		s := newStore(t)
		key := unique(t)
		c := putCode(t, t.Context(), s, key, "jane@example.com", time.Minute)
		macs := make([][]byte, n)
		for i := range macs {
			if i%2 == 0 {
				macs[i] = slices.Clone(c.MAC)
			} else {
				macs[i] = newMAC(t)
			}
		}
		ok := 0
		for i, o := range checkConcurrently(t, s, key, macs, 1000) {
			switch {
			case errors.Is(o.err, challenge.ErrNoCode):
			case o.err != nil:
				t.Fatalf("CheckCode: %v", o.err)
			case o.res.OK:
				if i%2 != 0 {
					t.Fatalf("a wrong mac got OK")
				}
				ok++
			}
		}
		if ok != 1 {
			t.Fatalf("got %d OK; want exactly 1", ok)
		}
	})

	t.Run("concurrent sends are throttled", func(t *testing.T) {
		// With every send at the same instant, one is allowed and the rest
		// are refused: the check and the record are one atomic step.
		s := newStore(t)
		user := unique(t)
		now := clock()
		var wg sync.WaitGroup
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range errs {
			wg.Go(func() {
				<-start
				errs[i] = s.ThrottleSend(t.Context(), user, now, 30*time.Second, 5)
			})
		}
		close(start)
		wg.Wait()
		allowed := 0
		for _, err := range errs {
			if err == nil {
				allowed++
			} else {
				limitError(t, err, challenge.ErrThrottled)
			}
		}
		if allowed != 1 {
			t.Fatalf("got %d concurrent sends allowed; want 1", allowed)
		}
	})

	t.Run("concurrent failures lock out", func(t *testing.T) {
		// Of n concurrent failures with maxPerHour m, exactly n-m+1 reach
		// the limit (N means N), each seeing a lockout.
		s := newStore(t)
		user := unique(t)
		now := clock()
		const max = 10
		var wg sync.WaitGroup
		locks := make([]time.Duration, n)
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range locks {
			wg.Go(func() {
				<-start
				locks[i], errs[i] = s.AddFailure(t.Context(), user, now, max, time.Minute)
			})
		}
		close(start)
		wg.Wait()
		locked := 0
		for i := range locks {
			if errs[i] != nil {
				t.Fatalf("AddFailure: %v", errs[i])
			}
			if locks[i] > 0 {
				locked++
			}
		}
		if locked != n-max+1 {
			t.Fatalf("got %d failures reporting a lockout; want %d", locked, n-max+1)
		}
	})
}
