package proxy

import (
	"strings"
	"testing"

	"github.com/stepgate/stepgate/identity"
)

// TestSecondFactorNotForwarded checks SPEC §7 on the wire: the client's
// second-factor header (in any spelling) and the second-factor cookie never
// reach the upstream, the other cookies do, and X-Stepup-Token is sent only
// with upstream.forward_token.
func TestSecondFactorNotForwarded(t *testing.T) {
	e, _ := newStepUpEnv(t, "", nil)
	alice := identity.Identity{Subject: "alice", Emails: []string{"alice@example.com"}, Session: "s1"}
	at := e.accessToken(t, alice.Subject, alice.Session, alice.Emails...)
	g := e.grant(t, alice)

	for _, forward := range []bool{false, true} {
		_, srv := newGate(t, Config{Upstream: mustURL(t, e.up.URL), Identity: e.auth, SecondFactor: e.tokens,
			Internal: e.ch.Handler(), Metrics: NewMetrics(nil), ForwardToken: forward})
		reqs := map[string]string{
			"cookie": get("/account/x", "Cookie: theme=dark; "+sfCookie+"="+g.Token+"; access_token="+at, "Cookie: lang=en"),
			"header": get("/account/x", "Authorization: Bearer "+at, "Cookie: theme=dark", "X-Second-Factor-Token: "+g.Token,
				"x-second_factor-token: "+g.Token),
		}
		for name, req := range reqs {
			res := raw(t, srv, req)
			if res.Status != 200 {
				t.Fatalf("forward_token %v, %s: status %d; want 200 (body %q)", forward, name, res.Status, res.Body)
			}
			h := e.up.take(t).Header
			for k, v := range h {
				if strings.Contains(strings.Join(v, ","), g.Token) && !(forward && k == "X-Stepup-Token") {
					t.Errorf("forward_token %v, %s: upstream header %s carries the token", forward, name, k)
				}
				if headerIs(k, "x-second-factor-token") {
					t.Errorf("forward_token %v, %s: upstream got %s", forward, name, k)
				}
			}
			cookies := strings.Join(h["Cookie"], "; ")
			for _, c := range []string{"theme=dark"} {
				if !strings.Contains(cookies, c) {
					t.Errorf("forward_token %v, %s: upstream Cookie %q lost %s", forward, name, cookies, c)
				}
			}
			if name == "cookie" && (!strings.Contains(cookies, "access_token="+at) || !strings.Contains(cookies, "lang=en")) {
				t.Errorf("forward_token %v: upstream Cookie %q lost the other cookies", forward, cookies)
			}
			if strings.Contains(cookies, sfCookie) {
				t.Errorf("forward_token %v, %s: upstream Cookie %q has %s", forward, name, cookies, sfCookie)
			}
			want := ""
			if forward {
				want = g.Token
			}
			if got := strings.Join(h["X-Stepup-Token"], ","); got != want {
				t.Errorf("forward_token %v, %s: X-Stepup-Token %q; want %q", forward, name, got, want)
			}
			if h.Get("X-Stepup-Auth-Time") == "" {
				t.Errorf("forward_token %v, %s: no X-Stepup-Auth-Time", forward, name)
			}
		}
	}
}
