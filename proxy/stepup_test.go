package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stepgate/stepgate/challenge"
	"github.com/stepgate/stepgate/challenge/mailer"
	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/secondfactor"
)

var (
	accessSecret = []byte("access-token-secret-for-tests-0123456789")
	secondSecret = []byte("second-factor-secret-for-tests-0123456789")
)

const sfCookie = "stepgate_2fa"

// clock is a settable clock shared by identity and challenge.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

// newClock starts on a whole second: tokens keep auth_time in seconds, so
// an age measured on this clock is exactly what the test advanced it by.
func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().Truncate(time.Second).UnixNano())
	return c
}

// mailbox is a challenge.Sender that keeps the last message per address,
// so that a test can read the code as a user would.
type mailbox struct {
	mu   sync.Mutex
	last map[string]mailer.Message
}

func (m *mailbox) Send(_ context.Context, msg mailer.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last[msg.To] = msg
	return nil
}

var codeRE = regexp.MustCompile(`\b[0-9]{6}\b`)

// stepUpEnv is a Gate with a real JWT identity and a real challenge
// service on a memory store.
type stepUpEnv struct {
	up     *upstream
	gate   *Gate
	auth   *identity.Authenticator
	ch     *challenge.Service
	tokens *secondfactor.Tokens
	clock  *clock
	mail   *mailbox
	m      *Metrics
}

func newStepUpEnv(t testing.TB, loginURL string, transport http.RoundTripper, opts ...func(*Config)) (*stepUpEnv, func(string) rawResponse) {
	t.Helper()
	e := &stepUpEnv{up: newUpstream(t), clock: newClock(), mail: &mailbox{last: map[string]mailer.Message{}}, m: NewMetrics(nil)}
	var err error
	e.auth, err = identity.New(identity.Config{Source: "jwt", JWT: identity.JWTConfig{
		Cookie: "access_token", Algorithms: []string{"HS256"}, HMACSecret: accessSecret, Now: e.clock.now,
	}})
	if err != nil {
		t.Fatalf("identity.New: %v", err)
	}
	store := challenge.NewMemoryStore(1000)
	e.tokens, err = secondfactor.New(secondfactor.Config{
		Secret: secondSecret, CookieName: sfCookie, HeaderName: "X-Second-Factor-Token", TTL: 12 * time.Hour,
		Revocations: store, Now: e.clock.now,
	})
	if err != nil {
		t.Fatalf("secondfactor.New: %v", err)
	}
	e.ch, err = challenge.New(challenge.Config{
		Secret: secondSecret, Tokens: e.tokens,
		OTP:         challenge.OTPConfig{Length: 6, TTL: 5 * time.Minute, MaxAttempts: 5, ResendAfter: 0, MaxSendsPerHour: 100, MaxFailuresPerHour: 100, Lockout: time.Minute},
		MailSubject: "code", Sender: e.mail, Store: store, Prefix: "/.stepup",
		Authenticate: e.auth.Authenticate, Logger: quietLogger(), Now: e.clock.now,
	})
	if err != nil {
		t.Fatalf("challenge.New: %v", err)
	}
	cfg := Config{Upstream: mustURL(t, e.up.URL), Identity: e.auth, SecondFactor: e.tokens, Internal: e.ch.Handler(), LoginURL: loginURL, Metrics: e.m, Transport: transport}
	for _, o := range opts {
		o(&cfg)
	}
	g, srv := newGate(t, cfg)
	e.gate = g
	return e, func(req string) rawResponse { return raw(t, srv, req) }
}

// accessToken mints the user's primary credential.
func (e *stepUpEnv) accessToken(t testing.TB, sub, sid string, emails ...string) string {
	t.Helper()
	now := e.clock.now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "sid": sid, "email": emails, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}).SignedString(accessSecret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// grant runs the real code flow (send, read the mail, verify) and returns
// the second-factor grant.
func (e *stepUpEnv) grant(t testing.TB, id identity.Identity) secondfactor.Grant {
	t.Helper()
	ctx := context.Background()
	if _, err := e.ch.Send(ctx, id, 0, challenge.Meta{}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	e.mail.mu.Lock()
	msg := e.mail.last[id.Emails[0]]
	e.mail.mu.Unlock()
	code := codeRE.FindString(msg.Text)
	if code == "" {
		t.Fatalf("no code in mail %q", msg.Text)
	}
	g, err := e.ch.Verify(ctx, id, code, challenge.Meta{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return g
}

func TestStepUp(t *testing.T) {
	e, send := newStepUpEnv(t, "/login?rd={rd}", nil)
	alice := identity.Identity{Subject: "alice", Emails: []string{"alice@example.com", "a2@example.com"}, Session: "s1"}
	at := e.accessToken(t, alice.Subject, alice.Session, alice.Emails...)
	bobAT := e.accessToken(t, "bob", "s9", "bob@example.com")
	g := e.grant(t, alice)

	browser := "Accept: text/html"
	cookieAT := "Cookie: access_token=" + at
	bearer := "Authorization: Bearer " + at
	sfc := "Cookie: " + sfCookie + "=" + g.Token
	const rfc9470 = `Bearer error="insufficient_user_authentication", error_description="A second factor is required"`

	tests := []struct {
		name     string
		req      string
		status   int
		location string
		wwwAuth  string
		jsonErr  string
		bodyHas  string
		// forwarded request headers (status 200)
		user, email, rule string
		withGrant         bool
	}{
		{name: "no identity browser", req: get("/profile/me?a=1&b=%2F", browser), status: 302, location: "/login?rd=" + url.QueryEscape("/profile/me?a=1&b=%2F")},
		{name: "no identity API", req: get("/profile/me"), status: 401, wwwAuth: `Bearer realm="stepgate"`, jsonErr: "unauthorized"},
		{name: "invalid token API", req: get("/profile/me", "Authorization: Bearer x.y.z"), status: 401, wwwAuth: `Bearer realm="stepgate"`, jsonErr: "unauthorized"},
		{name: "no identity step_up browser", req: get("/account/x", browser), status: 302, location: "/login?rd=%2Faccount%2Fx"},
		{name: "authenticated", req: get("/profile/me", cookieAT, browser), status: 200, user: "alice", email: "alice@example.com", rule: "profile"},
		{name: "authenticated with grant", req: get("/profile/me", bearer, "X-Second-Factor-Token: "+g.Token), status: 200, user: "alice", email: "alice@example.com", rule: "profile", withGrant: true},
		{name: "step_up browser GET", req: get("/account/x?y=1", cookieAT, browser), status: 302, location: "/.stepup/challenge?rd=" + url.QueryEscape("/account/x?y=1")},
		{name: "step_up browser HEAD", req: reqLine("HEAD", "/account/x", cookieAT, browser), status: 302, location: "/.stepup/challenge?rd=%2Faccount%2Fx"},
		{name: "step_up browser POST", req: reqLine("POST", "/account/x", cookieAT, browser, "Content-Length: 0"), status: 401, bodyHas: "/.stepup/challenge?rd=%2faccount%2fx"},
		{name: "step_up API", req: get("/account/x", bearer), status: 401, wwwAuth: rfc9470 + `, max_age="600", acr_values="urn:stepgate:email-otp"`, jsonErr: "insufficient_user_authentication"},
		{name: "step_up API no acr", req: reqLine("POST", "/pay/x", bearer, "Content-Length: 0"), status: 401, wwwAuth: rfc9470 + `, max_age="300"`, jsonErr: "insufficient_user_authentication"},
		{name: "step_up other user's grant", req: get("/account/x", "Authorization: Bearer "+bobAT, "X-Second-Factor-Token: "+g.Token), status: 401, jsonErr: "insufficient_user_authentication", wwwAuth: rfc9470 + `, max_age="600", acr_values="urn:stepgate:email-otp"`},
		{name: "step_up forged grant", req: get("/account/x", bearer, "X-Second-Factor-Token: "+g.Token+"x"), status: 401, jsonErr: "insufficient_user_authentication", wwwAuth: rfc9470 + `, max_age="600", acr_values="urn:stepgate:email-otp"`},
		{name: "step_up cookie grant", req: get("/account/x", cookieAT, browser, sfc), status: 200, user: "alice", email: "alice@example.com", rule: "account", withGrant: true},
		{name: "step_up header grant", req: get("/account/x", bearer, "X-Second-Factor-Token: "+g.Token, "X-Stepup-Auth-Time: 1"), status: 200, user: "alice", email: "alice@example.com", rule: "account", withGrant: true},
		{name: "audit step_up without grant", req: get("/audit-stepup/x", bearer, "X-Stepup-Token: forged"), status: 200, user: "alice", email: "alice@example.com", rule: "audit-stepup"},
		{name: "audit step_up with grant", req: get("/audit-stepup/x", bearer, "X-Second-Factor-Token: "+g.Token), status: 200, user: "alice", email: "alice@example.com", rule: "audit-stepup", withGrant: true},
		{name: "audit step_up no identity", req: get("/audit-stepup/x"), status: 200, rule: "audit-stepup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := send(tt.req)
			if res.Status != tt.status {
				t.Fatalf("got status %d; want %d (body %q)", res.Status, tt.status, res.Body)
			}
			if got := res.Header.Get("Location"); got != tt.location {
				t.Errorf("Location: got %q; want %q", got, tt.location)
			}
			if got := res.Header.Get("WWW-Authenticate"); got != tt.wwwAuth {
				t.Errorf("WWW-Authenticate: got %q; want %q", got, tt.wwwAuth)
			}
			if tt.jsonErr != "" {
				var body struct{ Error string }
				if err := json.Unmarshal([]byte(res.Body), &body); err != nil || body.Error != tt.jsonErr {
					t.Errorf("JSON error: got %q (%v); want %q", body.Error, err, tt.jsonErr)
				}
			}
			if tt.bodyHas != "" && !strings.Contains(strings.ToLower(res.Body), tt.bodyHas) {
				t.Errorf("body %q does not contain %q", res.Body, tt.bodyHas)
			}
			if tt.status != 200 {
				e.up.none(t)
				return
			}
			h := e.up.take(t).Header
			want := map[string]string{"X-Stepup-User": tt.user, "X-Stepup-Email": tt.email, "X-Stepup-Rule": tt.rule}
			if tt.withGrant {
				want["X-Stepup-Auth-Time"] = strconv.FormatInt(g.AuthTime.Unix(), 10)
			}
			// X-Stepup-Token only with upstream.forward_token (off here).
			for _, k := range []string{"X-Stepup-User", "X-Stepup-Email", "X-Stepup-Rule", "X-Stepup-Auth-Time", "X-Stepup-Token"} {
				if got := strings.Join(h[k], ","); got != want[k] {
					t.Errorf("upstream %s: got %q; want %q", k, got, want[k])
				}
			}
			// SPEC §7: neither the second-factor header nor its cookie
			// reaches the upstream; the access token cookie does.
			if v, ok := h["X-Second-Factor-Token"]; ok {
				t.Errorf("upstream got X-Second-Factor-Token %q", v)
			}
			cookies := strings.Join(h["Cookie"], "; ")
			if strings.Contains(cookies, sfCookie+"=") || (g.Token != "" && strings.Contains(cookies, g.Token)) {
				t.Errorf("upstream Cookie %q carries the second-factor cookie", cookies)
			}
			if strings.Contains(tt.req, cookieAT) && !strings.Contains(cookies, "access_token="+at) {
				t.Errorf("upstream Cookie %q lost the access token cookie", cookies)
			}
		})
	}
	if got := testutil.ToFloat64(e.m.Requests.WithLabelValues("audit-stepup", Audited)); got != 3 {
		t.Errorf("audited: got %v; want 3", got)
	}
	if got := testutil.ToFloat64(e.m.Requests.WithLabelValues("account", Challenged)); got != 6 {
		t.Errorf("account challenged: got %v; want 6", got)
	}

	t.Run("max_age", func(t *testing.T) {
		// Six minutes on: too old for /pay (5m), fresh enough for /account (10m).
		e.clock.add(6 * time.Minute)
		defer e.clock.add(-6 * time.Minute)
		if res := send(get("/pay/x", bearer, "X-Second-Factor-Token: "+g.Token)); res.Status != 401 {
			t.Errorf("/pay: got status %d; want 401", res.Status)
		}
		e.up.none(t)
		if res := send(get("/account/x", bearer, "X-Second-Factor-Token: "+g.Token)); res.Status != 200 {
			t.Errorf("/account: got status %d; want 200", res.Status)
		}
		e.up.take(t)
	})

	t.Run("challenge handler under prefix", func(t *testing.T) {
		res := send(get("//.stepup/api/trigger", bearer))
		if res.Status != 200 || !strings.Contains(res.Body, "a***@example.com") {
			t.Errorf("trigger: got %d %q; want 200 with masked emails", res.Status, res.Body)
		}
		res = send(get("/.stepup/challenge?rd=%2Faccount%2Fx", cookieAT, browser))
		if res.Status != 200 {
			t.Errorf("challenge page: got status %d; want 200", res.Status)
		}
		e.up.none(t)
	})
}

func TestUnauthenticatedWithoutLoginURL(t *testing.T) {
	e, send := newStepUpEnv(t, "", nil)
	res := send(get("/profile/me", "Accept: text/html"))
	if res.Status != 401 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || res.Header.Get("Location") != "" {
		t.Errorf("got %d %q Location %q; want a 401 page", res.Status, res.Header.Get("Content-Type"), res.Header.Get("Location"))
	}
	e.up.none(t)
}

// TestIdentityHeaders checks that identity headers of the header source are
// stripped unless the peer may set them (SPEC §7).
func TestIdentityHeaders(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		t.Run("trusted="+strconv.FormatBool(trusted), func(t *testing.T) {
			hc := identity.HeaderConfig{User: "X-Auth-User", Email: "X-Auth-Email"}
			if trusted {
				hc.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			} else {
				hc.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
			}
			auth, err := identity.New(identity.Config{Source: "header", Header: hc})
			if err != nil {
				t.Fatal(err)
			}
			up := newUpstream(t)
			_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL), Identity: auth})
			res := raw(t, srv, get("/public/x", "X-Auth-User: alice", "X_Auth_Email: alice@example.com", "x-auth-email: a@example.com"))
			if res.Status != 200 {
				t.Fatalf("got status %d; want 200", res.Status)
			}
			h := up.take(t).Header
			for name := range h {
				n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
				if (n == "x-auth-user" || n == "x-auth-email") && !trusted {
					t.Errorf("upstream got %s from an untrusted peer; want it stripped", name)
				}
			}
			if trusted && h.Get("X-Auth-User") != "alice" {
				t.Errorf("X-Auth-User: got %q; want %q from a trusted peer", h.Get("X-Auth-User"), "alice")
			}
			res = raw(t, srv, get("/profile/me", "X-Auth-User: alice", "X-Auth-Email: alice@example.com"))
			wantStatus := map[bool]int{false: 401, true: 200}[trusted]
			if res.Status != wantStatus {
				t.Fatalf("/profile/me: got status %d; want %d", res.Status, wantStatus)
			}
			if trusted {
				if got := up.take(t).Header.Get("X-Stepup-User"); got != "alice" {
					t.Errorf("X-Stepup-User: got %q; want %q", got, "alice")
				}
			}
		})
	}
}

// TestIdentityHeadersJWT checks that with the jwt source the configured
// identity headers never reach the upstream, even from a peer listed in
// identity.header.trusted_proxies: stepgate does not use them, and an app
// that once sat behind an SSO proxy may still believe them.
func TestIdentityHeadersJWT(t *testing.T) {
	auth, err := identity.New(identity.Config{Source: "jwt",
		JWT:    identity.JWTConfig{Algorithms: []string{"HS256"}, HMACSecret: accessSecret},
		Header: identity.HeaderConfig{User: "X-Forwarded-User", Email: "X-Forwarded-Email", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t)
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL), Identity: auth, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if res := raw(t, srv, get("/public/x", "X-Forwarded-User: admin", "X_Forwarded_Email: admin@example.com")); res.Status != 200 {
		t.Fatalf("got status %d; want 200", res.Status)
	}
	for name := range up.take(t).Header {
		if n := strings.ReplaceAll(strings.ToLower(name), "_", "-"); n == "x-forwarded-user" || n == "x-forwarded-email" {
			t.Errorf("upstream got %s; want it stripped with the jwt source", name)
		}
	}
}

// TestStepUpWebSocket checks that a WebSocket upgrade on a step_up path is
// passed through only once the policy is satisfied (SPEC §4): without a
// second factor the upstream never sees the upgrade.
func TestStepUpWebSocket(t *testing.T) {
	e, send := newStepUpEnv(t, "", nil)
	alice := identity.Identity{Subject: "alice", Emails: []string{"alice@example.com"}, Session: "s1"}
	bearer := "Authorization: Bearer " + e.accessToken(t, alice.Subject, alice.Session, alice.Emails...)
	upgrade := []string{"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="}

	res := send(get("/account/ws", append([]string{bearer}, upgrade...)...))
	if res.Status != http.StatusUnauthorized {
		t.Fatalf("upgrade without a second factor: got %d; want 401", res.Status)
	}
	e.up.none(t)

	res = send(get("/account/ws", append([]string{bearer, "X-Second-Factor-Token: " + e.grant(t, alice).Token}, upgrade...)...))
	if res.Status != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade with a second factor: got %d; want 101", res.Status)
	}
	if got := e.up.take(t).Header.Get("X-Stepup-User"); got != "alice" {
		t.Errorf("upstream X-Stepup-User: got %q; want alice", got)
	}
}
