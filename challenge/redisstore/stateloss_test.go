package redisstore_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stepgate/stepgate/challenge/redisstore"
	"github.com/stepgate/stepgate/challenge/redisstore/redistest"
)

// These tests lose Redis's state under two running replicas, by a real
// restart of a redis-server without persistence and by FLUSHALL, and check
// SPEC §13: a revoked second factor never becomes valid again, and a user
// who was locked out is not unlocked by the loss.

// stepUp runs the email-code ceremony for at on replica i and returns the
// token.
func stepUp(t *testing.T, c *cluster, i int, at, email string) string {
	t.Helper()
	if r := c.api(t, i, "POST", "/api/email-otp", at, `{"index":0}`); r.code != 200 {
		t.Fatalf("POST /api/email-otp on %s: got %d %s; want 200", c.reps[i].name, r.code, r.body)
	}
	code := c.in.Code(t, email)
	r := c.api(t, i, "PUT", "/api/email-otp", at, `{"otp":"`+code+`"}`)
	var vr struct{ SecondFactorAuthenticationToken string }
	decodeReply(t, r, &vr)
	if r.code != 200 || vr.SecondFactorAuthenticationToken == "" {
		t.Fatalf("PUT /api/email-otp on %s: got %d %s; want 200 with a token", c.reps[i].name, r.code, r.body)
	}
	return vr.SecondFactorAuthenticationToken
}

// lockOut sends a code to at and enters wrong codes until replica 0
// answers 429.
func lockOut(t *testing.T, c *cluster, at, email string, failures int) {
	t.Helper()
	if r := c.api(t, 0, "POST", "/api/email-otp", at, `{"index":0}`); r.code != 200 {
		t.Fatalf("POST /api/email-otp: got %d %s; want 200", r.code, r.body)
	}
	wrong := wrongCode(c.in.Code(t, email))
	for range failures - 1 {
		c.api(t, 0, "PUT", "/api/email-otp", at, `{"otp":"`+wrong+`"}`)
	}
	if r := c.api(t, 0, "PUT", "/api/email-otp", at, `{"otp":"`+wrong+`"}`); r.code != http.StatusTooManyRequests {
		t.Fatalf("wrong code past max_failures_per_hour: got %d %s; want 429", r.code, r.body)
	}
}

func TestStateLoss(t *testing.T) {
	losses := []struct {
		name string
		lose func(t *testing.T, srv *redistest.Server)
	}{
		{"restart without persistence", func(t *testing.T, srv *redistest.Server) { srv.Restart(t) }},
		{"FLUSHALL", func(t *testing.T, srv *redistest.Server) {
			rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
			defer rc.Close()
			if err := rc.FlushAll(t.Context()).Err(); err != nil {
				t.Fatalf("FLUSHALL: %v", err)
			}
		}},
	}
	// A real restart also with the revocation cache (as serve runs it):
	// the restart drops its subscription, so the cache is bypassed at once.
	type variant struct {
		name  string
		lose  func(t *testing.T, srv *redistest.Server)
		cache int
	}
	var variants []variant
	for _, l := range losses {
		variants = append(variants, variant{l.name, l.lose, 0})
	}
	variants = append(variants, variant{"restart with the revocation cache", losses[0].lose, 1024})
	for _, loss := range variants {
		t.Run(loss.name, func(t *testing.T) {
			srv := redistest.StartServer(t, redistest.Config{})
			otp := repOTP()
			otp.MaxFailuresPerHour = 2
			c := newCluster(t, srv.Addr, otp, func(o *redisstore.Options) { o.RevocationCache = loss.cache })
			alice := accessToken(t, "alice", "a1", "alice@example.com")
			bob := accessToken(t, "bob", "b1", "bob@example.com")
			dave := accessToken(t, "dave", "d1", "dave@example.com")
			erin := accessToken(t, "erin", "e1", "erin@example.com")

			revoked := stepUp(t, c, 0, alice, "alice@example.com")
			kept := stepUp(t, c, 1, bob, "bob@example.com")
			g, ok := c.check(t, 1, alice, revoked)
			if !ok {
				t.Fatal("alice's fresh token refused; want accepted")
			}
			if err := c.reps[1].svc.Revoke(t.Context(), g); err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			for i := range c.reps {
				if _, ok := c.check(t, i, alice, revoked); ok {
					t.Fatalf("revoked token accepted by %s before the loss", c.reps[i].name)
				}
				if _, ok := c.check(t, i, bob, kept); !ok {
					t.Fatalf("bob's token refused by %s before the loss", c.reps[i].name)
				}
			}
			lockOut(t, c, dave, "dave@example.com", otp.MaxFailuresPerHour)

			loss.lose(t, srv)
			if loss.cache > 0 {
				// The revoked token was never cached as valid: refused at
				// once. A token the cache holds as not revoked may pass
				// until the replica sees its subscription drop (at most
				// the cache's 1s lease); then it is refused for good.
				for i := range c.reps {
					if _, ok := c.check(t, i, alice, revoked); ok {
						t.Errorf("revoked token accepted by %s right after the restart (cached)", c.reps[i].name)
					}
				}
				eventually(t, 3*time.Second, "the caches to drop tokens from before the restart", func() (bool, error) {
					_, ok0 := c.check(t, 0, bob, kept)
					_, ok1 := c.check(t, 1, bob, kept)
					return !ok0 && !ok1, nil
				})
			}

			// The revocation is gone from Redis; the token must stay
			// refused on every replica, and so must every token minted
			// before the loss (users step up again).
			for i := range c.reps {
				if _, ok := c.check(t, i, alice, revoked); ok {
					t.Errorf("revoked token accepted by %s after Redis lost its state", c.reps[i].name)
				}
				if _, ok := c.check(t, i, bob, kept); ok {
					t.Errorf("token minted before the loss accepted by %s; want refused", c.reps[i].name)
				}
				if r := c.api(t, i, "GET", "/api/validate", bob, "", repHeader, kept); r.code == 200 {
					t.Errorf("GET /api/validate on %s with a token from before the loss: got 200; want refused", c.reps[i].name)
				}
			}
			// Lockouts fail closed: dave, locked before the loss, is still
			// refused a code and a verification; so is erin, since the
			// replicas cannot know who was locked.
			for _, at := range []string{dave, erin} {
				for i := range c.reps {
					r := c.api(t, i, "POST", "/api/email-otp", at, `{"index":0}`)
					if r.code != http.StatusTooManyRequests {
						t.Errorf("send on %s after the loss: got %d %s; want 429 (locked while the loss marker lives)", c.reps[i].name, r.code, r.body)
					}
					checkRetryAfter(t, "locked after the loss", r.header, otp.Lockout)
				}
			}
			c.in.None(t, "send after the loss")
		})
	}
}

// TestStatePersisted restarts a redis-server that runs as
// deploy/kubernetes/redis.yaml runs it (append-only file, fsync on every
// write): nothing is lost, so no token is refused and nobody is locked out.
func TestStatePersisted(t *testing.T) {
	srv := redistest.StartServer(t, redistest.Config{AppendOnly: true})
	c := newCluster(t, srv.Addr, repOTP())
	alice := accessToken(t, "alice", "a1", "alice@example.com")
	bob := accessToken(t, "bob", "b1", "bob@example.com")
	revoked := stepUp(t, c, 0, alice, "alice@example.com")
	kept := stepUp(t, c, 1, bob, "bob@example.com")
	g, _ := c.check(t, 0, alice, revoked)
	if err := c.reps[0].svc.Revoke(t.Context(), g); err != nil {
		t.Fatalf("Revoke: %v", err)
	}

	srv.Restart(t)

	for i := range c.reps {
		if _, ok := c.check(t, i, alice, revoked); ok {
			t.Errorf("revoked token accepted by %s after a persisted restart", c.reps[i].name)
		}
		if _, ok := c.check(t, i, bob, kept); !ok {
			t.Errorf("bob's token refused by %s after a persisted restart; want accepted", c.reps[i].name)
		}
	}
	carol := accessToken(t, "carol", "c1", "carol@example.com")
	if r := c.api(t, 1, "POST", "/api/email-otp", carol, `{"index":0}`); r.code != 200 {
		t.Errorf("send after a persisted restart: got %d %s; want 200 (no loss, no lockout)", r.code, r.body)
	}
}

// TestStateLossMarker checks the store-level mechanics: a Store that saw
// one epoch and then another sets the loss marker, every user is locked out
// for StateLossLockout, and then the new epoch serves as usual; a Store
// that starts against an empty Redis (a first start) sets none.
func TestStateLossMarker(t *testing.T) {
	srv := redistest.StartServer(t, redistest.Config{})
	const lossLockout = 1500 * time.Millisecond
	prefix := randomPrefix(t)
	s := newStore(t, redisstore.Options{Addr: srv.Addr, KeyPrefix: prefix, StateLossLockout: lossLockout})
	ctx := t.Context()
	before, err := s.Epoch(ctx)
	if err != nil {
		t.Fatalf("Epoch: %v", err)
	}
	if left, err := s.Locked(ctx, "anyone", time.Now()); err != nil || left != 0 {
		t.Fatalf("Locked on a first start: got %v, %v; want 0 (no loss seen)", left, err)
	}

	srv.Restart(t)

	// A fresh Store (a replica started after the loss) cannot tell it
	// from a first start.
	fresh := newStore(t, redisstore.Options{Addr: srv.Addr, KeyPrefix: prefix, StateLossLockout: lossLockout})
	after, err := fresh.Epoch(ctx)
	if err != nil {
		t.Fatalf("Epoch after the restart: %v", err)
	}
	if after == before {
		t.Fatalf("Epoch after a restart without persistence: got %q again; want a new one", after)
	}
	if left, err := fresh.Locked(ctx, "anyone", time.Now()); err != nil || left != 0 {
		t.Fatalf("Locked via a store that never saw the old epoch: got %v, %v; want 0", left, err)
	}
	// The Store that knew the old epoch sees the change and locks every
	// user; the other replica sees the marker too.
	if left, err := s.Locked(ctx, "anyone", time.Now()); err != nil || left <= 0 || left > lossLockout {
		t.Fatalf("Locked via the store that saw the loss: got %v, %v; want 0 < left <= %v", left, err, lossLockout)
	}
	if left, err := fresh.Locked(ctx, "someone else", time.Now()); err != nil || left <= 0 {
		t.Fatalf("Locked via the other store once the loss was seen: got %v, %v; want locked", left, err)
	}
	if revoked, err := s.Revoked(ctx, "jti", before); err != nil || !revoked {
		t.Fatalf("Revoked(old epoch): got %v, %v; want true", revoked, err)
	}
	if revoked, err := s.Revoked(ctx, "jti", after); err != nil || revoked {
		t.Fatalf("Revoked(new epoch): got %v, %v; want false", revoked, err)
	}
	eventually(t, 10*time.Second, "the loss marker to expire", func() (bool, error) {
		left, err := s.Locked(ctx, "anyone", time.Now())
		return left == 0, err
	})
	if e, err := s.Epoch(ctx); err != nil || e != after {
		t.Fatalf("Epoch once the marker expired: got %q, %v; want %q", e, err, after)
	}
}

// eventually polls cond every 20ms until it holds or wait passes.
func eventually(t *testing.T, wait time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil && !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", wait, what)
		case <-tick.C:
		}
	}
}
