package challenge

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTooOldNamesThePageLimit: the challenge page names the max_age of the
// rule deciding rd, as the live policy (RuleFor) says now, never a rule or
// limit from the query; a confirmation the rule still accepts is not
// called too old; without a rule the limit is not named.
func TestTooOldNamesThePageLimit(t *testing.T) {
	clock := newClock()
	var mu sync.Mutex
	limits := map[string]time.Duration{"/admin": 10 * time.Minute}
	var asked []string
	cfg := hConfig()
	cfg.Now = clock.Now
	cfg.RuleFor = func(r *http.Request, rd string) (string, time.Duration, bool) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, r.Host+" "+rd)
		age, ok := limits[strings.SplitN(rd, "?", 2)[0]]
		return "admin", age, ok
	}
	s := newHandlerOnly(t, cfg)
	g, err := s.cfg.Tokens.Mint(t.Context(), hAlice)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.cfg.Tokens.SetCookie(rec, g)
	cookie := rec.Header().Get("Set-Cookie")
	clock.Advance(12 * time.Minute)

	get := func(target string) string {
		t.Helper()
		r := browserReq(http.MethodGet, target, hAlice, nil)
		r.Header.Set("Cookie", strings.SplitN(cookie, ";", 2)[0])
		w := hServe(s.Handler(), r)
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: status %d", target, w.Code)
		}
		return w.Body.String()
	}
	const named = "Your confirmation from 12 minutes ago is older than this page allows (10 minutes), so it&#39;s needed again."
	if body := get(hPrefix + "/challenge?rd=%2Fadmin%3Fx%3D1&rule=lax&max_age=1h"); !strings.Contains(body, named) {
		t.Errorf("too-old page does not name the rule's limit; want %q in:\n%s", named, body)
	}
	mu.Lock()
	if len(asked) == 0 || asked[len(asked)-1] != "example.com /admin?x=1" {
		t.Errorf("RuleFor asked %q; want the host and the cleaned rd only", asked)
	}
	mu.Unlock()
	// A foreign rd is cleaned to "/" before the policy is asked.
	if body := get(hPrefix + "/challenge?rd=https%3A%2F%2Fevil.example%2Fadmin"); strings.Contains(body, "(10 minutes)") {
		t.Errorf("an off-site rd got the limit of /admin:\n%s", body)
	}
	// No step_up rule decides rd: the age is said, the limit is not.
	if body := get(hPrefix + "/challenge?rd=%2Fother"); !strings.Contains(body, "older than this page allows, so it&#39;s needed again.") || strings.Contains(body, "allows (") {
		t.Errorf("without a rule: want the sentence without a limit in:\n%s", body)
	}
	// A reload raised the limit: the confirmation is young enough, so the
	// page does not call it too old.
	mu.Lock()
	limits["/admin"] = 30 * time.Minute
	mu.Unlock()
	if body := get(hPrefix + "/challenge?rd=%2Fadmin"); strings.Contains(body, "older than this page allows") {
		t.Errorf("after the limit went up to 30 minutes the 12-minute confirmation is called too old:\n%s", body)
	}
}
