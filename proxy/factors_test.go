package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/policy"
	"github.com/stepgate/stepgate/secondfactor"
)

// TestRuleFactors is SPEC §11: a rule with factors: [totp] is not
// satisfied by an email-code token (browsers are sent to the challenge
// again, API clients get the RFC 9470 401), a TOTP token satisfies it, and
// the upstream learns the method from X-Stepup-Method.
func TestRuleFactors(t *testing.T) {
	e, _ := newStepUpEnv(t, "", nil)
	pol := mustPolicy(t, policy.Config{
		Default: policy.Allow, DefaultMaxAge: time.Hour,
		Rules: []policy.Rule{
			{Name: "vault", Paths: []string{"/vault/**"}, Action: policy.StepUp, Factors: []string{"totp"}},
			{Name: "any", Paths: []string{"/any/**"}, Action: policy.StepUp},
		},
	})
	_, srv := newGate(t, Config{Policy: pol, Upstream: mustURL(t, e.up.URL), Identity: e.auth, SecondFactor: e.tokens, Internal: e.ch.Handler()})
	id := identity.Identity{Subject: "alice", Session: "s1", Emails: []string{"alice@example.com"}}
	access := e.accessToken(t, id.Subject, id.Session, id.Emails...)
	emailG, err := e.tokens.MintMethod(t.Context(), id, secondfactor.MethodEmail)
	if err != nil {
		t.Fatal(err)
	}
	totpG, _ := e.tokens.MintMethod(t.Context(), id, secondfactor.MethodTOTP)

	get := func(path, token string, api bool) rawResponse {
		var b strings.Builder
		b.WriteString("GET " + path + " HTTP/1.1\r\nHost: app.example.com\r\n")
		b.WriteString("Cookie: access_token=" + access + "; " + sfCookie + "=" + token + "\r\n")
		if api {
			b.WriteString("Accept: application/json\r\n")
		} else {
			b.WriteString("Accept: text/html\r\n")
		}
		b.WriteString("Connection: close\r\n\r\n")
		return raw(t, srv, b.String())
	}

	// Browser with an email token on the totp-only rule: back to the challenge.
	r := get("/vault/x", emailG.Token, false)
	if r.Status != http.StatusFound || !strings.HasPrefix(r.Header.Get("Location"), "/.stepup/challenge?rd=") {
		t.Fatalf("browser, email token, factors [totp]: %d Location %q; want 302 to the challenge", r.Status, r.Header.Get("Location"))
	}
	e.up.none(t)
	// API with an email token: RFC 9470 401.
	r = get("/vault/x", emailG.Token, true)
	if r.Status != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), "insufficient_user_authentication") {
		t.Fatalf("API, email token, factors [totp]: %d %q; want the RFC 9470 401", r.Status, r.Header.Get("WWW-Authenticate"))
	}
	e.up.none(t)

	// A TOTP token satisfies it, and the upstream is told so.
	r = get("/vault/x", totpG.Token, false)
	if r.Status != http.StatusOK {
		t.Fatalf("totp token, factors [totp]: %d; want 200", r.Status)
	}
	if got := e.up.take(t).Header.Get("X-Stepup-Method"); got != "totp" {
		t.Fatalf("X-Stepup-Method = %q; want totp", got)
	}
	// A rule without factors takes either.
	for _, g := range []secondfactor.Grant{emailG, totpG} {
		if r := get("/any/x", g.Token, true); r.Status != http.StatusOK {
			t.Fatalf("%s token, no factors: %d; want 200", g.Method, r.Status)
		}
		if got := e.up.take(t).Header.Get("X-Stepup-Method"); got != g.Method {
			t.Fatalf("X-Stepup-Method = %q; want %q", got, g.Method)
		}
	}
}

// TestMethodHeaderNotSpoofable: a client's own X-Stepup-Method never
// reaches the upstream.
func TestMethodHeaderNotSpoofable(t *testing.T) {
	e, send := newStepUpEnv(t, "", nil)
	_ = e
	r := send("GET /public/x HTTP/1.1\r\nHost: app.example.com\r\nX-Stepup-Method: passkey\r\nX_Stepup_Method: passkey\r\nConnection: close\r\n\r\n")
	if r.Status != http.StatusOK {
		t.Fatalf("status %d", r.Status)
	}
	if h := e.up.take(t).Header; h.Get("X-Stepup-Method") != "" || h.Get("X_Stepup_Method") != "" {
		t.Fatalf("client's X-Stepup-Method reached the upstream: %v", h)
	}
}
