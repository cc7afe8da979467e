package secondfactor

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/identity"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-current")

var alice = identity.Identity{Subject: "alice", Emails: []string{"alice@example.com", "a.work@example.org"}, Session: "sess-a1"}

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// revocations is an in-memory Revocations; challenge's stores are tested
// against the same contract in challenge/storetest.
type revocations struct {
	mu sync.Mutex
	m  map[string]time.Duration
}

func (r *revocations) Revoke(_ context.Context, jti string, ttl time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]time.Duration{}
	}
	r.m[jti] = ttl
	return nil
}

// testEpoch is the epoch of every revocations list.
const testEpoch = "epoch-1"

func (r *revocations) Epoch(context.Context) (string, error) { return testEpoch, nil }

func (r *revocations) Revoked(_ context.Context, jti, epoch string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.m[jti]
	return ok || epoch != testEpoch, nil
}

type testEnv struct {
	s     *Tokens
	clock *fakeClock
	rev   *revocations
}

func testConfig(clock *fakeClock, rev Revocations) Config {
	return Config{
		Secret:      testSecret,
		CookieName:  "__Host-stepgate",
		HeaderName:  "X-Second-Factor-Token",
		TTL:         12 * time.Hour,
		Revocations: rev,
		Now:         clock.Now,
	}
}

func newEnv(t testing.TB, mod ...func(*Config)) *testEnv {
	t.Helper()
	e := &testEnv{clock: newClock(), rev: &revocations{}}
	cfg := testConfig(e.clock, e.rev)
	for _, f := range mod {
		f(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.s = s
	return e
}
