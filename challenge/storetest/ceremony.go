package storetest

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge"
)

// testCeremony checks PutCeremony and TakeCeremony: the state comes back
// once, never twice (also under concurrency), and dies with its TTL.
func testCeremony(t *testing.T, newStore func(*testing.T) challenge.Store) {
	t.Run("TakeOnce", func(t *testing.T) {
		s := newStore(t)
		key := unique(t)
		state := []byte("challenge state \x00\xff")
		if err := s.PutCeremony(t.Context(), key, state, time.Minute); err != nil {
			t.Fatalf("PutCeremony: %v", err)
		}
		got, err := s.TakeCeremony(t.Context(), key)
		if err != nil || !bytes.Equal(got, state) {
			t.Fatalf("TakeCeremony = %q, %v; want %q, nil", got, err, state)
		}
		if _, err := s.TakeCeremony(t.Context(), key); !errors.Is(err, challenge.ErrNoCeremony) {
			t.Fatalf("second TakeCeremony: %v; want ErrNoCeremony", err)
		}
		if _, err := s.TakeCeremony(t.Context(), unique(t)); !errors.Is(err, challenge.ErrNoCeremony) {
			t.Fatalf("TakeCeremony of an unknown key: %v; want ErrNoCeremony", err)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		// Two tabs (or two replicas) finishing with one challenge: exactly
		// one of them gets it.
		s := newStore(t)
		key := unique(t)
		if err := s.PutCeremony(t.Context(), key, []byte("x"), time.Minute); err != nil {
			t.Fatalf("PutCeremony: %v", err)
		}
		const n = 50
		var won, lost atomic.Int32
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				<-start
				_, err := s.TakeCeremony(t.Context(), key)
				switch {
				case err == nil:
					won.Add(1)
				case errors.Is(err, challenge.ErrNoCeremony):
					lost.Add(1)
				default:
					t.Errorf("TakeCeremony: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if won.Load() != 1 || lost.Load() != n-1 {
			t.Fatalf("%d takes won, %d lost; want 1 and %d", won.Load(), lost.Load(), n-1)
		}
	})
	t.Run("Expiry", func(t *testing.T) {
		// The wait is the TTL itself, not synchronisation: the state must be
		// gone once its life is over, however the store expires entries.
		s := newStore(t)
		key := unique(t)
		const ttl = 200 * time.Millisecond
		if err := s.PutCeremony(t.Context(), key, []byte("x"), ttl); err != nil {
			t.Fatalf("PutCeremony: %v", err)
		}
		time.Sleep(ttl + 100*time.Millisecond)
		if _, err := s.TakeCeremony(t.Context(), key); !errors.Is(err, challenge.ErrNoCeremony) {
			t.Fatalf("TakeCeremony after the TTL: %v; want ErrNoCeremony", err)
		}
		if err := s.PutCeremony(t.Context(), key, []byte("x"), 0); err == nil {
			t.Fatal("PutCeremony with ttl 0: nil error; want a refusal (an entry without a TTL would never die)")
		}
	})
}
