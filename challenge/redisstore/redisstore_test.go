package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stepgate/stepgate/challenge"
	"github.com/stepgate/stepgate/challenge/redisstore"
	"github.com/stepgate/stepgate/challenge/redisstore/redistest"
	"github.com/stepgate/stepgate/challenge/storetest"
)

// newStore returns a Store on addr with opts, closed when t ends.
func newStore(t testing.TB, o redisstore.Options) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// randomPrefix returns a key prefix no other store uses.
func randomPrefix(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "test-" + hex.EncodeToString(b[:]) + ":"
}

// TestStore runs the shared Store suite on one real server, each subtest
// with its own key prefix.
func TestStore(t *testing.T) {
	addr := redistest.Start(t)
	storetest.Run(t, func(t *testing.T) challenge.Store {
		return newStore(t, redisstore.Options{Addr: addr, KeyPrefix: randomPrefix(t)})
	})
}

// flow exercises every kind of key the store writes.
func flow(t *testing.T, s challenge.Store, user string) {
	t.Helper()
	ctx := t.Context()
	now := time.Now()
	if err := s.ThrottleSend(ctx, user, now, time.Second, 5); err != nil {
		t.Fatalf("ThrottleSend: %v", err)
	}
	mac := []byte(strings.Repeat("m", 32))
	if err := s.PutCode(ctx, user, challenge.Code{MAC: mac, Email: user, ExpiresAt: now.Add(time.Minute)}, time.Minute); err != nil {
		t.Fatalf("PutCode: %v", err)
	}
	if _, err := s.CheckCode(ctx, user, []byte("wrong"), 5); err != nil {
		t.Fatalf("CheckCode: %v", err)
	}
	for range 3 {
		if _, err := s.AddFailure(ctx, user, now, 1, time.Minute); err != nil {
			t.Fatalf("AddFailure: %v", err)
		}
	}
	if err := s.Revoke(ctx, "jti-"+user, time.Minute); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
}

// keys returns every key in db with its TTL.
func keys(t *testing.T, addr string, db int) map[string]time.Duration {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	defer c.Close()
	out := map[string]time.Duration{}
	iter := c.Scan(t.Context(), 0, "*", 100).Iterator()
	for iter.Next(t.Context()) {
		ttl, err := c.PTTL(t.Context(), iter.Val()).Result()
		if err != nil {
			t.Fatalf("PTTL: %v", err)
		}
		out[iter.Val()] = ttl
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return out
}

func TestKeys(t *testing.T) {
	addr := redistest.Start(t)
	const db = 3
	s := newStore(t, redisstore.Options{Addr: addr, DB: db, KeyPrefix: "sg:"})
	const user = "jane.doe@example.com"
	flow(t, s, user)

	if got := keys(t, addr, 0); len(got) != 0 {
		t.Errorf("db 0: got keys %v; want none (the store uses db %d)", got, db)
	}
	got := keys(t, addr, db)
	kinds := map[string]bool{}
	for k, ttl := range got {
		// Every key is prefix + kind + ":" + 64 hex digits, so no user
		// string reaches the keyspace.
		kind, hash, ok := strings.Cut(strings.TrimPrefix(k, "sg:"), ":")
		if !strings.HasPrefix(k, "sg:") || !ok || len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
			t.Errorf("key %q: want sg:<kind>:<sha256 hex>", k)
		}
		if strings.Contains(k, "jane") {
			t.Errorf("key %q holds the user name", k)
		}
		// Everything carries a TTL so that nothing accumulates.
		if ttl <= 0 {
			t.Errorf("key %q: got TTL %v; want a positive TTL", k, ttl)
		}
		kinds[kind] = true
	}
	for _, kind := range []string{"send", "code", "fail", "lock", "revoked"} {
		if !kinds[kind] {
			t.Errorf("no %q key after the flow; got keys %v", kind, got)
		}
	}
}

func TestSharedState(t *testing.T) {
	// Two replicas on one Redis: what one writes, the other sees (SPEC §10).
	addr := redistest.Start(t)
	prefix := randomPrefix(t)
	a := newStore(t, redisstore.Options{Addr: addr, KeyPrefix: prefix})
	b := newStore(t, redisstore.Options{Addr: addr, KeyPrefix: prefix})
	other := newStore(t, redisstore.Options{Addr: addr, KeyPrefix: randomPrefix(t)})
	ctx := t.Context()
	now := time.Now()

	mac := []byte(strings.Repeat("k", 32))
	if err := a.PutCode(ctx, "u", challenge.Code{MAC: mac, Email: "u@example.com", ExpiresAt: now.Add(time.Minute)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := other.PeekCode(ctx, "u"); !errors.Is(err, challenge.ErrNoCode) {
		t.Errorf("PeekCode under another prefix: got %v; want ErrNoCode", err)
	}
	if res, err := b.CheckCode(ctx, "u", mac, 5); err != nil || !res.OK || res.Code.Email != "u@example.com" {
		t.Errorf("CheckCode via b of a code put via a: got %+v, %v; want OK", res, err)
	}
	if _, err := a.CheckCode(ctx, "u", mac, 5); !errors.Is(err, challenge.ErrNoCode) {
		t.Errorf("CheckCode via a after b consumed it: got %v; want ErrNoCode", err)
	}

	if err := a.ThrottleSend(ctx, "u", now, time.Minute, 5); err != nil {
		t.Fatal(err)
	}
	var le *challenge.LimitError
	if err := b.ThrottleSend(ctx, "u", now, time.Minute, 5); !errors.As(err, &le) || !errors.Is(err, challenge.ErrThrottled) {
		t.Errorf("ThrottleSend via b right after a: got %v; want ErrThrottled", err)
	}

	for range 2 {
		if _, err := a.AddFailure(ctx, "u", now, 1, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if left, err := b.Locked(ctx, "u", now); err != nil || left <= 0 {
		t.Errorf("Locked via b after a locked: got %v, %v; want locked", left, err)
	}

	if err := a.Revoke(ctx, "jti", time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Revoked(ctx, "jti", epochOf(ctx, b)); err != nil || !got {
		t.Errorf("Revoked via b after a revoked: got %v, %v; want true", got, err)
	}
	if got, err := other.Revoked(ctx, "jti", epochOf(ctx, other)); err != nil || got {
		t.Errorf("Revoked under another prefix: got %v, %v; want false", got, err)
	}
}

func TestPassword(t *testing.T) {
	const password = `s3cret "with" spaces\and\slashes`
	srv := redistest.StartServer(t, redistest.Config{Password: password})
	tests := []struct {
		name     string
		password string
		ok       bool
	}{
		{"right", password, true},
		{"wrong", "nope", false},
		{"none", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, redisstore.Options{Addr: srv.Addr, Password: tt.password, KeyPrefix: randomPrefix(t), Timeout: time.Second})
			err := s.Ping(t.Context())
			if (err == nil) != tt.ok {
				t.Fatalf("Ping: got %v; want ok=%v", err, tt.ok)
			}
			// Without the password a security decision fails as an error,
			// never as "not revoked".
			revoked, err := s.Revoked(t.Context(), "jti", epochOf(t.Context(), s))
			if tt.ok && (err != nil || revoked) {
				t.Errorf("Revoked: got %v, %v; want false, nil", revoked, err)
			}
			if !tt.ok && err == nil {
				t.Errorf("Revoked without auth: got %v, nil; want an error", revoked)
			}
			if tt.ok {
				flow(t, s, "u")
			}
		})
	}
}

// epochOf returns s's epoch, or "" when it cannot be read (then Revoked
// fails too, which is what the callers check).
func epochOf(ctx context.Context, s challenge.Store) string {
	e, _ := s.Epoch(ctx)
	return e
}

// methods calls every Store method once and returns their errors by name.
func methods(ctx context.Context, s challenge.Store) map[string]error {
	now := time.Now()
	errs := map[string]error{}
	errs["ThrottleSend"] = s.ThrottleSend(ctx, "u", now, time.Second, 5)
	errs["PutCode"] = s.PutCode(ctx, "u", challenge.Code{MAC: []byte("m"), ExpiresAt: now.Add(time.Minute)}, time.Minute)
	_, errs["PeekCode"] = s.PeekCode(ctx, "u")
	_, errs["CheckCode"] = s.CheckCode(ctx, "u", []byte("m"), 5)
	_, errs["AddFailure"] = s.AddFailure(ctx, "u", now, 5, time.Minute)
	_, errs["Locked"] = s.Locked(ctx, "u", now)
	errs["Revoke"] = s.Revoke(ctx, "jti", time.Minute)
	_, errs["Epoch"] = s.Epoch(ctx)
	_, errs["Revoked"] = s.Revoked(ctx, "jti", "e")
	errs["PutCeremony"] = s.PutCeremony(ctx, "k", []byte("x"), time.Minute)
	_, errs["TakeCeremony"] = s.TakeCeremony(ctx, "k")
	errs["Ping"] = s.Ping(ctx)
	return errs
}

func TestRedisDown(t *testing.T) {
	const timeout = 300 * time.Millisecond
	// Each method must fail within its timeout plus scheduling slack, not
	// hang the request for go-redis's 5s defaults and retries.
	const limit = 4 * timeout

	stopped := redistest.StartServer(t, redistest.Config{})
	hanging := hangingServer(t)
	tests := []struct {
		name   string
		addr   string
		stop   func()
		rounds int
	}{
		// A server that was up and went away: the pool holds connections
		// the server closed, then dials are refused.
		{"stopped", stopped.Addr, stopped.Stop, 2},
		// A server that accepts but never answers: only timeouts end calls.
		{"hanging", hanging, func() {}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, redisstore.Options{Addr: tt.addr, KeyPrefix: randomPrefix(t), Timeout: timeout})
			if tt.name == "stopped" {
				if err := s.Ping(t.Context()); err != nil {
					t.Fatalf("Ping before stop: %v", err)
				}
			}
			tt.stop()
			// A second round sees the pool after failed connections.
			for range tt.rounds {
				for name, err := range timed(t, limit, func() map[string]error { return methods(t.Context(), s) }) {
					if err == nil {
						t.Errorf("%s with Redis down: got nil error; want an error", name)
					}
					if errors.Is(err, challenge.ErrNoCode) {
						t.Errorf("%s with Redis down: got ErrNoCode; want a store error, not an answer", name)
					}
				}
			}
		})
	}
}

// timed runs f, failing if it takes longer than limit per method.
func timed(t *testing.T, limit time.Duration, f func() map[string]error) map[string]error {
	t.Helper()
	start := time.Now()
	errs := f()
	if d, max := time.Since(start), limit*time.Duration(len(errs)); d > max {
		t.Errorf("%d calls took %v; want under %v", len(errs), d, max)
	}
	return errs
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		o    redisstore.Options
		ok   bool
	}{
		{"no address", redisstore.Options{}, false},
		{"negative timeout", redisstore.Options{Addr: "127.0.0.1:1", Timeout: -time.Second}, false},
		// New is lazy: a server that is not there is not an error yet.
		{"nothing listening", redisstore.Options{Addr: "127.0.0.1:1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := redisstore.New(tt.o)
			if (err == nil) != tt.ok {
				t.Fatalf("New: got %v; want ok=%v", err, tt.ok)
			}
			if s != nil {
				if err := s.Ping(t.Context()); err == nil {
					t.Errorf("Ping with nothing listening: got nil; want an error")
				}
				s.Close()
			}
		})
	}
}

func TestArguments(t *testing.T) {
	// Inputs no configuration should produce are refused, never stored as
	// something that lives forever or allows everything.
	addr := redistest.Start(t)
	s := newStore(t, redisstore.Options{Addr: addr, KeyPrefix: randomPrefix(t)})
	ctx := t.Context()
	if err := s.PutCode(ctx, "k", challenge.Code{MAC: []byte("m")}, 0); err == nil {
		t.Errorf("PutCode with ttl 0: got nil; want an error")
	}
	if _, err := s.PeekCode(ctx, "k"); !errors.Is(err, challenge.ErrNoCode) {
		t.Errorf("PeekCode after refused PutCode: got %v; want ErrNoCode", err)
	}
	if err := s.ThrottleSend(ctx, "u", time.Now(), time.Second, 0); err == nil {
		t.Errorf("ThrottleSend with maxPerHour 0: got nil; want an error")
	}
	if err := s.PutCode(ctx, "k", challenge.Code{MAC: []byte("m")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckCode(ctx, "k", []byte("m"), 0); err == nil {
		t.Errorf("CheckCode with maxAttempts 0: got nil; want an error")
	}
	// A code whose attempts already reach a lowered limit is dead, even
	// for the right MAC.
	if err := s.PutCode(ctx, "k", challenge.Code{MAC: []byte("m"), Attempts: 3}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if res, err := s.CheckCode(ctx, "k", []byte("m"), 3); !errors.Is(err, challenge.ErrNoCode) || res.OK {
		t.Errorf("right MAC at the attempt limit: got %+v, %v; want ErrNoCode", res, err)
	}
	// The zero ExpiresAt round-trips.
	if err := s.PutCode(ctx, "z", challenge.Code{MAC: []byte("m")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if c, err := s.PeekCode(ctx, "z"); err != nil || !c.ExpiresAt.IsZero() {
		t.Errorf("PeekCode of a zero ExpiresAt: got %v, %v; want the zero time", c.ExpiresAt, err)
	}
}

// TestBeginCheckAcrossReplicas: checks racing on two replicas (two Stores
// on one server) are admitted max_failures_per_hour times in all, so no
// interleaving gets more wrong codes checked (N means N).
func TestBeginCheckAcrossReplicas(t *testing.T) {
	addr := redistest.Start(t)
	prefix := randomPrefix(t)
	stores := []*redisstore.Store{
		newStore(t, redisstore.Options{Addr: addr, KeyPrefix: prefix}),
		newStore(t, redisstore.Options{Addr: addr, KeyPrefix: prefix}),
	}
	const n, max = 40, 5
	now := time.Now()
	tickets := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range tickets {
		wg.Go(func() {
			<-start
			tickets[i], _, errs[i] = stores[i%2].BeginCheck(t.Context(), "u", now, max, time.Minute)
		})
	}
	close(start)
	wg.Wait()
	admitted := 0
	for i, tk := range tickets {
		if errs[i] != nil {
			t.Fatalf("BeginCheck: %v", errs[i])
		}
		if tk != "" {
			admitted++
		}
	}
	if admitted != max {
		t.Fatalf("got %d of %d racing checks admitted on two replicas; want %d", admitted, n, max)
	}
	// Settled wrong on either replica, the fifth locks both.
	var left time.Duration
	k := 0
	for i, tk := range tickets {
		if tk == "" {
			continue
		}
		var err error
		if left, err = stores[(i+1)%2].EndCheck(t.Context(), "u", tk, true, now, max, time.Minute); err != nil {
			t.Fatal(err)
		}
		if k++; (k == max) != (left > 0) {
			t.Fatalf("wrong code %d of %d: lockout %v; want one only at the %dth", k, max, left, max)
		}
	}
	for _, s := range stores {
		if l, err := s.Locked(t.Context(), "u", now); err != nil || l <= 0 {
			t.Errorf("Locked: got %v, %v; want locked on both replicas", l, err)
		}
	}
}
