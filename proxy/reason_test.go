package proxy

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/identity"
)

// TestStepUpRequiredReason: the step_up_required audit record says why
// no token counted, with the rule's max_age and, for a token too old, its
// age as duration strings.
func TestStepUpRequiredReason(t *testing.T) {
	logs := &logBuffer{}
	e, send := newStepUpEnv(t, "", nil, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	alice := identity.Identity{Subject: "alice", Emails: []string{"alice@example.com"}, Session: "s1"}
	at := "Authorization: Bearer " + e.accessToken(t, alice.Subject, alice.Session, alice.Emails...)
	// auth_time has whole seconds: start on one, so that the age below is
	// exactly what the clock moved.
	e.clock.ns.Store(e.clock.now().Truncate(time.Second).UnixNano())
	g := e.grant(t, alice)
	bob := identity.Identity{Subject: "bob", Emails: []string{"bob@example.com"}, Session: "s9"}
	bobAT := "Authorization: Bearer " + e.accessToken(t, bob.Subject, bob.Session, bob.Emails...)
	sf := "X-Second-Factor-Token: " + g.Token

	last := func() map[string]any {
		t.Helper()
		var rec map[string]any
		for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil && r["event"] == "step_up_required" {
				rec = r
			}
		}
		if rec == nil {
			t.Fatalf("no step_up_required record:\n%s", logs.String())
		}
		return rec
	}
	check := func(name string, res rawResponse, want map[string]string) {
		t.Helper()
		if res.Status != 401 {
			t.Fatalf("%s: got status %d; want 401", name, res.Status)
		}
		rec := last()
		for k, w := range want {
			if got, _ := rec[k].(string); got != w {
				t.Errorf("%s: %s: got %q; want %q (%v)", name, k, got, w, rec)
			}
		}
	}
	check("no token", send(get("/pay/x", at)), map[string]string{"reason": "no_second_factor", "max_age": "5m0s", "path": "/pay/x"})
	check("another user's token", send(get("/pay/x", bobAT, sf)), map[string]string{"reason": "other_user_or_session", "user": "bob"})
	check("garbage", send(get("/pay/x", at, "X-Second-Factor-Token: x.y.z")), map[string]string{"reason": "invalid_token"})
	e.clock.add(6 * time.Minute)
	check("too old", send(get("/pay/x", at, sf)), map[string]string{"reason": "too_old", "max_age": "5m0s"})
	// auth_time has whole seconds, so the age is 6m0s or 6m1s.
	if age, _ := last()["age"].(string); age != "6m0s" && age != "6m1s" {
		t.Errorf("too old: age: got %q; want 6m0s (or 6m1s)", age)
	}
	// The closest candidate wins: a stranger's token does not hide that
	// the user's own is too old.
	check("too old beside garbage", send(get("/pay/x", at, "X-Second-Factor-Token: x.y.z", sf)), map[string]string{"reason": "too_old"})
}
