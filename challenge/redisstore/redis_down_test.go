package redisstore_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge/redisstore/redistest"
)

// TestReplicaRedisDown stops the shared redis-server under two replicas:
// the challenge endpoints answer 503 with a plain JSON message, a token
// that was valid a moment ago no longer passes (deny, never a pass: its
// revocation cannot be checked), and Ready fails so that /readyz takes the
// replicas out of the load balancer (SPEC §6, §10).
func TestReplicaRedisDown(t *testing.T) {
	srv := redistest.StartServer(t, redistest.Config{})
	c := newCluster(t, srv.Addr, repOTP())
	alice := accessToken(t, "alice", "s1", "alice@example.com")

	// A token minted while Redis is up.
	if r := c.api(t, 0, "POST", "/api/email-otp", alice, `{"index":0}`); r.code != 200 {
		t.Fatalf("POST /api/email-otp on replica 1: got %d %s; want 200", r.code, r.body)
	}
	code := c.in.Code(t, "alice@example.com")
	r := c.api(t, 1, "PUT", "/api/email-otp", alice, `{"otp":"`+code+`"}`)
	var vr struct{ SecondFactorAuthenticationToken string }
	decodeReply(t, r, &vr)
	token := vr.SecondFactorAuthenticationToken
	if r.code != 200 || token == "" {
		t.Fatalf("PUT /api/email-otp on replica 2: got %d %s; want 200 with a token", r.code, r.body)
	}
	for i := range c.reps {
		if _, ok := c.check(t, i, alice, token); !ok {
			t.Fatalf("%s Check with Redis up: not ok; want ok", c.reps[i].name)
		}
		if err := c.reps[i].svc.Ready(t.Context()); err != nil {
			t.Fatalf("%s Ready with Redis up: %v", c.reps[i].name, err)
		}
	}

	srv.Stop()

	erin := accessToken(t, "erin", "e1", "erin@example.com")
	for i, rep := range c.reps {
		start := time.Now()
		r := c.api(t, i, "POST", "/api/email-otp", erin, `{"index":0}`)
		if r.code != http.StatusServiceUnavailable || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") ||
			strings.TrimSpace(r.body) != `{"error":"temporarily_unavailable","error_description":"no code was sent; try again later"}` {
			t.Errorf("POST /api/email-otp on %s with Redis down: got %d %q %s; want 503 JSON temporarily_unavailable",
				rep.name, r.code, r.header.Get("Content-Type"), r.body)
		}
		// The store's 1s timeout bounds each call; a refused connection
		// must not hold the request for long.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("POST /api/email-otp on %s with Redis down took %v; want under 5s", rep.name, d)
		}
		if strings.Contains(r.body, "IsPosted") || strings.Contains(r.body, "redis") || strings.Contains(r.body, srv.Addr) {
			t.Errorf("POST /api/email-otp on %s with Redis down leaks or claims a send: %s", rep.name, r.body)
		}

		r = c.api(t, i, "PUT", "/api/email-otp", alice, `{"otp":"123456"}`)
		if r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, `"error":"temporarily_unavailable"`) {
			t.Errorf("PUT /api/email-otp on %s with Redis down: got %d %s; want 503 temporarily_unavailable", rep.name, r.code, r.body)
		}

		r = c.api(t, i, "GET", "/api/validate", alice, "", repHeader, token)
		if r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, `"valid":false`) {
			t.Errorf("GET /api/validate on %s with Redis down: got %d %s; want 503 valid:false", rep.name, r.code, r.body)
		}

		if g, ok := c.check(t, i, alice, token); ok {
			t.Errorf("%s Check with Redis down: got %+v, ok; want deny", rep.name, g)
		}

		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := rep.svc.Ready(ctx)
		cancel()
		if err == nil {
			t.Errorf("%s Ready with Redis down: nil; want an error", rep.name)
		}
	}
	c.in.None(t, "sends with Redis down")
}
