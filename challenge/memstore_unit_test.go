package challenge

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestMemoryStoreBounded(t *testing.T) {
	s := NewMemoryStore(2)
	c := Code{MAC: make([]byte, 32), Email: "a@example.com", ExpiresAt: time.Now().Add(time.Minute)}
	for _, k := range []string{"a", "b"} {
		if err := s.PutCode(ctx0, k, c, time.Minute); err != nil {
			t.Fatalf("PutCode %s: %v", k, err)
		}
	}
	if err := s.PutCode(ctx0, "c", c, time.Minute); !errors.Is(err, ErrStoreFull) {
		t.Errorf("third code: got %v; want ErrStoreFull", err)
	}
	// Replacing a pending code is always allowed.
	if err := s.PutCode(ctx0, "a", c, time.Minute); err != nil {
		t.Errorf("replace: %v", err)
	}
	// Consuming one frees a slot.
	if _, err := s.CheckCode(ctx0, "b", c.MAC, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCode(ctx0, "c", c, time.Minute); err != nil {
		t.Errorf("after consume: %v", err)
	}
}

func TestMemoryStoreConcurrentCheck(t *testing.T) {
	s := NewMemoryStore(0)
	right := []byte("0123456789abcdef0123456789abcdef")
	if err := s.PutCode(ctx0, "k", Code{MAC: right, ExpiresAt: time.Now().Add(time.Minute)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	wins := 0
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := s.CheckCode(ctx0, "k", right, 5)
			if err == nil && res.OK {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if err != nil && !errors.Is(err, ErrNoCode) {
				t.Errorf("CheckCode: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins != 1 {
		t.Errorf("got %d winners; want exactly 1", wins)
	}
}

// TestMemoryStoreFootprint checks that 100,000 pending codes stay well
// under 100 MB (the heap they add is measured, not the RSS, which also
// holds the test binary).
func TestMemoryStoreFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100,000 codes")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := NewMemoryStore(0)
	now := time.Now()
	for i := 0; i < 100_000; i++ {
		c := Code{MAC: codeMAC(make([]byte, 32), "u", "s", "someone@example.com", "123456"), Email: fmt.Sprintf("user%06d@example.com", i), ExpiresAt: now.Add(5 * time.Minute)}
		if err := s.PutCode(ctx0, codeKey(fmt.Sprint("user", i), "session-id-0123456789"), c, 5*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("100,000 pending codes: %.1f MB heap", float64(used)/1e6)
	if used > 50e6 {
		t.Errorf("100,000 pending codes use %d bytes; want under 50 MB", used)
	}
	runtime.KeepAlive(s)
}

// TestMemoryStoreFullRefusalIsCheap: past the cap, a refused PutCode costs
// O(1): the store is swept of expired codes at most once per sweepEvery,
// not on every refusal (each sweep walks every code under the store's
// lock, so a flood of refusals stalled every verification).
func TestMemoryStoreFullRefusalIsCheap(t *testing.T) {
	const n, refusals = 50_000, 2_000
	s := NewMemoryStore(n)
	c := Code{MAC: make([]byte, 32), Email: "a@example.com", ExpiresAt: time.Now().Add(time.Hour)}
	for i := range n {
		if err := s.PutCode(ctx0, fmt.Sprint("k", i), c, time.Hour); err != nil {
			t.Fatalf("PutCode %d: %v", i, err)
		}
	}
	start := time.Now()
	for i := range refusals {
		if err := s.PutCode(ctx0, fmt.Sprint("new", i), c, time.Hour); !errors.Is(err, ErrStoreFull) {
			t.Fatalf("PutCode past the cap: got %v; want ErrStoreFull", err)
		}
	}
	took := time.Since(start)
	s.mu.Lock()
	sweeps := s.sweeps
	s.mu.Unlock()
	if max := int(took/sweepEvery) + 1; sweeps > max {
		t.Errorf("%d refusals in %v swept the store %d times; want at most %d (one per %v)", refusals, took, sweeps, max, sweepEvery)
	}
	// Generous for -race on a loaded machine; a sweep of 50,000 codes per
	// refusal takes milliseconds each.
	if per := took / refusals; per > 200*time.Microsecond {
		t.Errorf("a refused PutCode took %v on average; want O(1) (well under 200µs)", per)
	}
	t.Logf("%d refusals at a cap of %d: %v each, %d sweeps", refusals, n, took/refusals, sweeps)
}

// TestSendStoreFullNotThrottled: a send refused because the store is full
// never happened, so it must not count against the user's send throttle:
// once there is room, the immediate retry is sent, not answered 429.
func TestSendStoreFullNotThrottled(t *testing.T) {
	store := NewMemoryStore(1)
	e := newEnv(t, func(c *Config) { c.Store = store })
	bob := alice
	bob.Subject, bob.Session = "bob", "sess-b1"
	if _, err := e.s.Send(ctx0, bob, 0, Meta{}); err != nil {
		t.Fatalf("bob's send: %v", err)
	}
	_, err := e.s.Send(ctx0, alice, 0, Meta{})
	if !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, ErrStoreFull) {
		t.Fatalf("alice's send with the store full: got %v; want ErrStoreUnavailable (ErrStoreFull)", err)
	}
	// Room again: bob's code is consumed.
	if _, err := store.CheckCode(ctx0, codeKey(bob.Subject, bob.Session), make([]byte, 32), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
		t.Fatalf("alice's retry once there is room: got %v; want sent (the refused send was not counted)", err)
	}
	// The throttle still works for sends that happened.
	var le *LimitError
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); !errors.As(err, &le) || !errors.Is(err, ErrThrottled) {
		t.Fatalf("alice's send right after a real one: got %v; want throttled", err)
	}
}
