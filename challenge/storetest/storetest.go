// Package storetest is the behaviour suite every challenge.Store
// implementation must pass (the embedded memory store and Redis alike).
// It checks what challenge/store.go documents: throttles, single-use codes
// under concurrency, attempt counting, lockouts, revocation and expiry.
//
// Use it from an implementation's tests:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) challenge.Store {
//			s := challenge.NewMemoryStore(0)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge"
)

// Run runs the whole suite as subtests of t. newStore is called once per
// subtest with that subtest's t; it returns a store that is either fresh or
// shares a backend with others (the suite makes every user, key and token id
// unique per subtest, so shared backends do not interfere). newStore owns
// the store's lifetime: it should register Close with t.Cleanup.
//
// Run returns only when every subtest, parallel ones included, is done, so a
// caller may release shared resources afterwards.
func Run(t *testing.T, newStore func(t *testing.T) challenge.Store) {
	t.Helper()
	t.Run("ThrottleSend", func(t *testing.T) { testThrottleSend(t, newStore) })
	t.Run("Code", func(t *testing.T) { testCode(t, newStore) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, newStore) })
	t.Run("Failures", func(t *testing.T) { testFailures(t, newStore) })
	t.Run("FailuresLeft", func(t *testing.T) { testFailuresLeft(t, newStore) })
	t.Run("Revoke", func(t *testing.T) { testRevoke(t, newStore) })
	t.Run("Ceremony", func(t *testing.T) { testCeremony(t, newStore) })
	t.Run("OpaqueKeys", func(t *testing.T) { testOpaqueKeys(t, newStore) })
	t.Run("Ping", func(t *testing.T) {
		if err := newStore(t).Ping(t.Context()); err != nil {
			t.Fatalf("Ping: %v; want nil", err)
		}
	})
	// Expiry waits on real TTLs of a second or two, so its subtests run in
	// parallel with one another; t.Run waits for all of them.
	t.Run("Expiry", func(t *testing.T) { testExpiry(t, newStore) })
}

// unique returns a string that no other subtest (in this process or another
// sharing the backend) uses, with the subtest name in it for debugging. The
// name holds '/' and maybe spaces, which also exercises key escaping.
func unique(t *testing.T) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("crypto/rand: %v", err)
	}
	return t.Name() + "#" + hex.EncodeToString(b[:])
}

// newMAC returns a random 32-byte MAC, the size of an HMAC-SHA256.
func newMAC(t *testing.T) []byte {
	mac := make([]byte, 32)
	if _, err := rand.Read(mac); err != nil {
		t.Fatalf("crypto/rand: %v", err)
	}
	return mac
}

// clock returns a fake "now" base close to real time, on a whole second so
// that durations computed from it are exact. Staying close to real time
// keeps implementations that also hold real TTLs (go-cache, Redis PX)
// consistent with the fake clock.
func clock() time.Time { return time.Now().Truncate(time.Second) }

// limitError asserts err is a *challenge.LimitError wrapping want and
// returns it.
func limitError(t *testing.T, err, want error) *challenge.LimitError {
	t.Helper()
	var le *challenge.LimitError
	if !errors.As(err, &le) {
		t.Fatalf("got error %v (%T); want *challenge.LimitError", err, err)
	}
	if !errors.Is(err, want) {
		t.Fatalf("got error %v; want it to wrap %v", err, want)
	}
	return le
}

// near reports whether got is within [want, want+slack]: implementations
// may round a wait up (to the millisecond or second) but never down, since a
// client retrying after a shorter wait would be refused again.
func near(got, want, slack time.Duration) bool {
	return got >= want && got <= want+slack
}

// eventually polls cond every 20ms until it returns true or the deadline
// passes. It is how tests wait for TTL expiry without sleeping a fixed time.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, timeout)
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		}
	}
}

// putCode stores a fresh code with a random MAC under key and returns it.
func putCode(t *testing.T, ctx context.Context, s challenge.Store, key, email string, ttl time.Duration) challenge.Code {
	t.Helper()
	c := challenge.Code{MAC: newMAC(t), Email: email, ExpiresAt: time.Now().Add(ttl)}
	if err := s.PutCode(ctx, key, c, ttl); err != nil {
		t.Fatalf("PutCode(%q): %v", key, err)
	}
	return c
}
