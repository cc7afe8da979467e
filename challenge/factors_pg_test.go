package challenge

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepgate/stepgate/factors/pgstore"
	"github.com/stepgate/stepgate/factors/pgstore/pgtest"
)

// TestReplicasSharePostgres: two replicas, each with its own pool on one
// PostgreSQL database, share enrolled factors: enrolled on one, used on
// the other; a step used on one is a replay on the other; of concurrent
// submissions of one code across both, exactly one is accepted.
func TestReplicasSharePostgres(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	replica := func() *totpEnv {
		fs, err := pgstore.Open(t.Context(), pgstore.Options{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fs.Close() })
		return newTOTPEnv(t, "", func(c *Config) {
			c.Factors.Close() // the SQLite one newTOTPEnv opened
			c.Factors = fs
		})
	}
	a, b := replica(), replica()
	_, secret := a.enrol(t)
	b.clock.t = a.clock.now()

	// The confirming step, spent on a, is a replay on b.
	if _, err := b.s.VerifyTOTP(t.Context(), hAlice, a.code(t, secret, b.clock.now()), Meta{}); !errors.Is(err, ErrReplayed) {
		t.Fatalf("confirming step on the other replica: %v; want ErrReplayed", err)
	}
	for _, e := range []*totpEnv{a, b} {
		e.clock.add(30 * time.Second)
	}
	code := a.code(t, secret, a.clock.now())
	if _, err := b.s.VerifyTOTP(t.Context(), hAlice, code, Meta{}); err != nil {
		t.Fatalf("step-up on the replica that did not enrol: %v", err)
	}
	if _, err := a.s.VerifyTOTP(t.Context(), hAlice, code, Meta{}); !errors.Is(err, ErrReplayed) {
		t.Fatalf("same step on the first replica: %v; want ErrReplayed", err)
	}

	for _, e := range []*totpEnv{a, b} {
		e.clock.add(30 * time.Second)
	}
	code = a.code(t, secret, a.clock.now())
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := []*totpEnv{a, b}[i%2]
			if _, err := e.s.VerifyTOTP(t.Context(), hAlice, code, Meta{}); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, ErrReplayed) {
				t.Errorf("concurrent VerifyTOTP: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d concurrent submissions of one code across replicas accepted; want 1", n)
	}
}
