package proxy

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stepgate/stepgate/identity"
)

// faCase is one original request, sent once through the gate in proxy
// mode and once described to each forward-auth endpoint.
type faCase struct {
	name    string
	method  string
	target  string   // raw, as the client sent it
	host    string   // "" means app.example.com
	headers []string // the client's headers (cookies, Accept, overrides)
}

// faStyle describes an original request to one endpoint as its proxy does.
type faStyle struct {
	name     string
	nginx    bool // redirects come as 401
	absolute bool // Location is absolute (the endpoint is told the scheme)
	call     func(c faCase) string
}

var faStyles = []faStyle{
	{name: "auth-request", nginx: true, absolute: true, call: func(c faCase) string {
		return get("/.stepup/authz/auth-request", append([]string{"Host: stepgate.internal",
			"X-Original-Method: " + c.method, "X-Original-URL: http://" + c.hostOr() + c.target}, c.headers...)...)
	}},
	{name: "forward-auth", absolute: true, call: func(c faCase) string {
		return get("/.stepup/authz/forward-auth", append([]string{"Host: stepgate.internal",
			"X-Forwarded-Method: " + c.method, "X-Forwarded-Proto: http", "X-Forwarded-Host: " + c.hostOr(),
			"X-Forwarded-Uri: " + c.target}, c.headers...)...)
	}},
	{name: "ext-authz", call: func(c faCase) string {
		// Envoy sends the original method and Host, no body.
		return reqLine(c.method, "/.stepup/authz/ext-authz"+c.target,
			append([]string{"Host: " + c.hostOr(), "Content-Length: 0"}, c.headers...)...)
	}},
}

func (c faCase) hostOr() string {
	if c.host == "" {
		return "app.example.com"
	}
	return c.host
}

// proxied is the request as a client sends it to the gate in proxy mode.
func (c faCase) proxied() string {
	h := append([]string{"Host: " + c.hostOr()}, c.headers...)
	if c.method == "POST" || c.method == "PUT" || c.method == "DELETE" {
		h = append(h, "Content-Length: 0")
	}
	return reqLine(c.method, c.target, h...)
}

func newForwardAuthEnv(t *testing.T, trusted []netip.Prefix, log *slog.Logger) (*stepUpEnv, func(string) rawResponse) {
	t.Helper()
	return newStepUpEnv(t, "/login?rd={rd}", nil, func(c *Config) {
		c.ForwardAuth = true
		c.TrustedProxies = trusted
		if log != nil {
			c.Logger = log
		}
	})
}

var stepupHeaders = []string{"X-Stepup-User", "X-Stepup-Email", "X-Stepup-Rule", "X-Stepup-Auth-Time", "X-Stepup-Token"}

// TestForwardAuthSameDecision checks that each forward-auth endpoint
// answers every original request as proxy mode does (SPEC §12): 200 with
// exactly the X-Stepup-* headers the upstream got, and otherwise the same
// status, redirect, challenge and error — nginx's redirects as 401 with an
// absolute Location.
func TestForwardAuthSameDecision(t *testing.T) {
	e, send := newForwardAuthEnv(t, loopback(), nil)
	alice := identity.Identity{Subject: "alice", Emails: []string{"alice@example.com"}, Session: "s1"}
	at := e.accessToken(t, alice.Subject, alice.Session, alice.Emails...)
	g := e.grant(t, alice)
	browser := "Accept: text/html"
	cookieAT := "Cookie: access_token=" + at
	bearer := "Authorization: Bearer " + at
	full := "Cookie: access_token=" + at + "; " + sfCookie + "=" + g.Token

	cases := []faCase{
		{name: "allow", method: "GET", target: "/public/x?q=1"},
		{name: "allow encoded unreserved", method: "GET", target: "/public/%7Ex"},
		{name: "deny", method: "GET", target: "/admin/users"},
		{name: "deny params", method: "GET", target: "/admin;x=1/users"},
		{name: "host rule", method: "GET", target: "/hostonly/x"},
		{name: "host rule upper case port", method: "GET", target: "/hostonly/x", host: "APP.example.com:8443"},
		{name: "host rule other host", method: "GET", target: "/hostonly/x", host: "other.example.com"},
		{name: "no identity browser", method: "GET", target: "/profile/me?a=1", headers: []string{browser}},
		{name: "no identity API", method: "GET", target: "/profile/me"},
		{name: "authenticated", method: "GET", target: "/profile/me", headers: []string{cookieAT, browser}},
		{name: "step_up browser", method: "GET", target: "/account/x?y=1", headers: []string{cookieAT, browser}},
		{name: "step_up browser HEAD", method: "HEAD", target: "/account/x", headers: []string{cookieAT, browser}},
		{name: "step_up browser PUT", method: "PUT", target: "/account/x", headers: []string{cookieAT, browser}},
		{name: "step_up API", method: "GET", target: "/account/x", headers: []string{bearer}},
		{name: "step_up with grant", method: "GET", target: "/account/x", headers: []string{full, browser}},
		{name: "step_up header grant", method: "GET", target: "/account/x", headers: []string{bearer, "X-Second-Factor-Token: " + g.Token}},
		{name: "audit deny", method: "GET", target: "/audit/x"},
		{name: "audit step_up", method: "GET", target: "/audit-stepup/x", headers: []string{bearer}},
		{name: "method rule", method: "DELETE", target: "/items/1"},
		{name: "method rule other method", method: "GET", target: "/items/1"},
		{name: "override header", method: "PUT", target: "/items/1", headers: []string{"X-HTTP-Method-Override: delete"}},
		{name: "override underscore header", method: "PUT", target: "/items/1", headers: []string{"X_HTTP_Method: DELETE"}},
		{name: "override query", method: "GET", target: "/items/1?_method=DELETE"},
		{name: "override query PHP spelling", method: "GET", target: "/items/1?%20method=delete"},
		{name: "override query undecodable", method: "GET", target: "/items/1?_method=%zz"},
		{name: "encoded slash", method: "GET", target: "/public/..%2Fadmin/x"},
		{name: "encoded slash 2", method: "GET", target: "/admin%2Fusers"},
		{name: "encoded backslash", method: "GET", target: "/public%5C..%5Cadmin"},
		{name: "dot segment", method: "GET", target: "/public/../admin/x"},
		{name: "encoded dot segment", method: "GET", target: "/public/%2e%2e/admin/x"},
		{name: "single dot", method: "GET", target: "/./admin/x"},
		{name: "double encoding", method: "GET", target: "/%2561dmin/x"},
		{name: "encoded NUL", method: "GET", target: "/public/x%00.html"},
		{name: "encoded hash", method: "GET", target: "/public/x%23/../../admin"},
		{name: "bad escape", method: "GET", target: "/public/%zz"},
		{name: "bad UTF-8", method: "GET", target: "/public/%C3%28"},
		{name: "absolute form", method: "GET", target: "http://app.example.com/admin/x"},
		{name: "CONNECT", method: "CONNECT", target: "/public/x"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := send(c.proxied())
			var forwarded http.Header
			if want.Status == http.StatusOK {
				forwarded = e.up.take(t).Header
			} else {
				e.up.none(t)
			}
			for _, st := range faStyles {
				if st.name == "ext-authz" && (c.method == "CONNECT" || !strings.HasPrefix(c.target, "/")) {
					// Envoy appends the original path to the endpoint's;
					// Go's server takes a CONNECT target as an authority.
					continue
				}
				got := send(st.call(c))
				e.up.none(t) // a decision is never a forwarded request
				checkSameAnswer(t, st, want, got, forwarded)
			}
		})
	}
}

// checkSameAnswer compares a forward-auth answer got with proxy mode's
// answer want (forwarded: the headers the upstream received).
func checkSameAnswer(t *testing.T, st faStyle, want, got rawResponse, forwarded http.Header) {
	t.Helper()
	wantStatus, wantLoc := want.Status, want.Header.Get("Location")
	if st.absolute && wantLoc != "" {
		wantLoc = "http://app.example.com" + wantLoc
	}
	if st.nginx && wantStatus == http.StatusFound {
		wantStatus = http.StatusUnauthorized
	}
	if st.nginx && wantStatus == http.StatusUnauthorized && wantLoc == "" && strings.Contains(want.Body, "<a href=\"/.stepup/challenge?rd=") {
		// Browsers' non-GET step-up: nginx cannot pass on the 401 page,
		// so it is told where the page links to.
		wantLoc = "http://app.example.com/.stepup/challenge?rd=%2Faccount%2Fx"
	}
	if host := got.Header.Get("Location"); host != "" && strings.Contains(host, "APP.example.com") {
		wantLoc = strings.Replace(wantLoc, "app.example.com", "APP.example.com:8443", 1)
	}
	if got.Status != wantStatus {
		t.Fatalf("%s: got status %d; want %d as in proxy mode (body %q)", st.name, got.Status, wantStatus, got.Body)
	}
	if l := got.Header.Get("Location"); l != wantLoc {
		t.Errorf("%s: Location: got %q; want %q", st.name, l, wantLoc)
	}
	if a, b := got.Header.Get("WWW-Authenticate"), want.Header.Get("WWW-Authenticate"); a != b {
		t.Errorf("%s: WWW-Authenticate: got %q; want %q", st.name, a, b)
	}
	if strings.HasPrefix(want.Header.Get("Content-Type"), "application/json") && got.Body != want.Body {
		t.Errorf("%s: body: got %q; want %q", st.name, got.Body, want.Body)
	}
	if got.Status != http.StatusOK {
		return
	}
	for _, k := range stepupHeaders {
		if a, b := got.Header.Get(k), forwarded.Get(k); a != b {
			t.Errorf("%s: %s: got %q; want %q as the upstream received it", st.name, k, a, b)
		}
	}
	if cc := got.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control: got %q; want no-store", st.name, cc)
	}
}

// TestForwardAuthRawTarget checks what forward-auth refuses beyond proxy
// mode because the outer proxy forwards the raw target, and how a POST
// whose body it cannot see is decided.
func TestForwardAuthRawTarget(t *testing.T) {
	e, send := newForwardAuthEnv(t, loopback(), nil)
	tests := []struct {
		name   string
		c      faCase
		proxy  int // proxy mode's status
		status int // every endpoint's
	}{
		// Proxy mode merges "//" and forwards the merged path; the outer
		// proxy would forward "//" as sent, so forward-auth refuses.
		{"duplicated slash allowed path", faCase{method: "GET", target: "//public/x"}, 200, 400},
		{"duplicated slash inside", faCase{method: "GET", target: "/public//x"}, 200, 400},
		{"duplicated slash denied path", faCase{method: "GET", target: "/admin//x"}, 403, 400},
		{"slashes in query are fine", faCase{method: "GET", target: "/public/x?u=http://a//b"}, 200, 200},
		// A form POST's `_method` is in the body, which the endpoints
		// never see: decided as any method the rules name (DELETE: deny).
		{"form POST", faCase{method: "POST", target: "/items/1", headers: []string{"Content-Type: application/x-www-form-urlencoded"}}, 200, 403},
		{"POST without Content-Type", faCase{method: "POST", target: "/items/1"}, 200, 403},
		{"JSON POST", faCase{method: "POST", target: "/items/1", headers: []string{"Content-Type: application/json"}}, 200, 403},
		{"multipart POST", faCase{method: "POST", target: "/items/1", headers: []string{"Content-Type: multipart/form-data; boundary=x"}}, 200, 403},
		{"lower-case post", faCase{method: "post", target: "/items/1"}, 200, 403},
		{"text POST", faCase{method: "POST", target: "/items/1", headers: []string{"Content-Type: text/plain"}}, 200, 200},
		{"form PUT", faCase{method: "PUT", target: "/items/1", headers: []string{"Content-Type: application/x-www-form-urlencoded"}}, 200, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := send(tt.c.proxied()); got.Status != tt.proxy {
				t.Fatalf("proxy mode: got %d; want %d", got.Status, tt.proxy)
			}
			if tt.proxy == 200 {
				e.up.take(t)
			}
			for _, st := range faStyles {
				if got := send(st.call(tt.c)); got.Status != tt.status {
					t.Errorf("%s: got %d; want %d (body %q)", st.name, got.Status, tt.status, got.Body)
				}
			}
			e.up.none(t)
		})
	}
}

// TestForwardAuthBadCalls checks that calls whose description of the
// original request is missing, doubled or malformed are refused with 400.
func TestForwardAuthBadCalls(t *testing.T) {
	_, send := newForwardAuthEnv(t, loopback(), nil)
	ar := func(h ...string) string { return get("/.stepup/authz/auth-request", h...) }
	fa := func(h ...string) string { return get("/.stepup/authz/forward-auth", h...) }
	okFA := []string{"X-Forwarded-Method: GET", "X-Forwarded-Host: app.example.com", "X-Forwarded-Uri: /public/x"}
	tests := []struct {
		name string
		req  string
		want int
	}{
		{"auth-request ok", ar("X-Original-Method: GET", "X-Original-URL: https://app.example.com/public/x"), 200},
		{"auth-request scheme case", ar("X-Original-Method: GET", "X-Original-URL: HTTPS://app.example.com/public/x"), 200},
		{"no X-Original-URL", ar("X-Original-Method: GET"), 400},
		{"no X-Original-Method", ar("X-Original-URL: http://app.example.com/public/x"), 400},
		{"two X-Original-URL", ar("X-Original-Method: GET", "X-Original-URL: http://app.example.com/public/x", "X-Original-URL: http://app.example.com/admin/x"), 400},
		{"two X-Original-Method", ar("X-Original-Method: GET", "X-Original-Method: DELETE", "X-Original-URL: http://app.example.com/items/1"), 400},
		{"not http", ar("X-Original-Method: GET", "X-Original-URL: ftp://app.example.com/public/x"), 400},
		{"relative", ar("X-Original-Method: GET", "X-Original-URL: /public/x"), 400},
		{"no path", ar("X-Original-Method: GET", "X-Original-URL: http://app.example.com?x=/public/x"), 400},
		{"empty host", ar("X-Original-Method: GET", "X-Original-URL: http:///public/x"), 400},
		{"user info", ar("X-Original-Method: GET", "X-Original-URL: http://app.example.com@other.example/public/x"), 400},
		{"host list", ar("X-Original-Method: GET", "X-Original-URL: http://other.example,app.example.com/hostonly/x"), 400},
		{"two ports", ar("X-Original-Method: GET", "X-Original-URL: http://app.example.com:80:81/public/x"), 400},
		{"port too big", ar("X-Original-Method: GET", "X-Original-URL: http://app.example.com:65536/public/x"), 400},
		{"IPv6 host", ar("X-Original-Method: GET", "X-Original-URL: http://[::1]:8080/public/x"), 200},
		{"IPv6 zone", ar("X-Original-Method: GET", "X-Original-URL: http://[fe80::1%25eth0]/public/x"), 400},
		{"method not a token", ar("X-Original-Method: GE T", "X-Original-URL: http://app.example.com/public/x"), 400},
		{"method list", ar("X-Original-Method: GET,DELETE", "X-Original-URL: http://app.example.com/items/1"), 400},
		{"forward-auth ok", fa(okFA...), 200},
		{"forward-auth no proto is fine", fa(okFA...), 200},
		{"forward-auth bad proto", fa(append(okFA, "X-Forwarded-Proto: gopher")...), 400},
		{"forward-auth proto list", fa(append(okFA, "X-Forwarded-Proto: https, http")...), 400},
		{"forward-auth no host", fa("X-Forwarded-Method: GET", "X-Forwarded-Uri: /public/x"), 400},
		{"forward-auth no uri", fa("X-Forwarded-Method: GET", "X-Forwarded-Host: app.example.com"), 400},
		{"forward-auth two uris", fa(append(okFA, "X-Forwarded-Uri: /admin/x")...), 400},
		{"forward-auth host list", fa("X-Forwarded-Method: GET", "X-Forwarded-Host: other.example, app.example.com", "X-Forwarded-Uri: /hostonly/x"), 400},
		{"forward-auth absolute uri", fa("X-Forwarded-Method: GET", "X-Forwarded-Host: app.example.com", "X-Forwarded-Uri: http://app.example.com/admin/x"), 400},
		{"forward-auth asterisk", fa("X-Forwarded-Method: OPTIONS", "X-Forwarded-Host: app.example.com", "X-Forwarded-Uri: *"), 400},
		{"ext-authz ok", get("/.stepup/authz/ext-authz/public/x"), 200},
		{"ext-authz without path", get("/.stepup/authz/ext-authz"), 400},
		{"ext-authz other spelling", get("/.stepup/authz/Ext-Authz/public/x"), 400},
		{"ext-authz encoded spelling", get("/.stepup/authz/ext%2Dauthz/public/x"), 400},
		{"ext-authz host list", get("/.stepup/authz/ext-authz/hostonly/x", "Host: other.example,app.example.com"), 400},
		{"unknown authz path", get("/.stepup/authz/other"), 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := send(tt.req); got.Status != tt.want {
				t.Errorf("got %d; want %d (body %q)", got.Status, tt.want, got.Body)
			}
		})
	}
}

// TestForwardAuthUntrustedPeer checks that only server.trusted_proxies get
// answers: anyone else gets 403, counted and audited, even for a request
// that would be allowed.
func TestForwardAuthUntrustedPeer(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	e, send := newForwardAuthEnv(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, log)
	for _, st := range faStyles {
		got := send(st.call(faCase{method: "GET", target: "/public/x"}))
		if got.Status != http.StatusForbidden {
			t.Errorf("%s: got %d; want 403", st.name, got.Status)
		}
		if got.Header.Get("X-Stepup-Rule") != "" {
			t.Errorf("%s: an untrusted peer got decision headers", st.name)
		}
	}
	if n := testutil.ToFloat64(e.m.Requests.WithLabelValues(noRule, Denied)); n != 3 {
		t.Errorf("stepgate_requests_total{rule=none,decision=denied}: got %v; want 3", n)
	}
	var audited int
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["event"] == "forward_auth_refused" {
			audited++
			if rec["client"] != "127.0.0.1" || rec["via"] == "" || rec["outcome"] != Denied {
				t.Errorf("audit record %v: want client 127.0.0.1, via, outcome denied", rec)
			}
		}
	}
	if audited != 3 {
		t.Errorf("got %d forward_auth_refused audit records; want 3\n%s", audited, logs.String())
	}
}

// TestForwardAuthOff checks that without server.forward_auth the
// endpoints do not exist, even for trusted proxies.
func TestForwardAuthOff(t *testing.T) {
	_, send := newStepUpEnv(t, "", nil, func(c *Config) { c.TrustedProxies = loopback() })
	for _, st := range faStyles[:2] {
		if got := send(st.call(faCase{method: "GET", target: "/public/x"})); got.Status != http.StatusNotFound {
			t.Errorf("%s: got %d; want 404", st.name, got.Status)
		}
	}
}

// TestForwardAuthMetricsAndAudit checks that decisions made for the
// outer proxy are counted under the same labels as proxied ones, and that
// their audit records name the original method and path and the endpoint.
func TestForwardAuthMetricsAndAudit(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	e, send := newForwardAuthEnv(t, loopback(), log)
	at := e.accessToken(t, "alice", "s1", "alice@example.com")
	for _, st := range faStyles {
		send(st.call(faCase{method: "GET", target: "/admin/x"}))
		send(st.call(faCase{method: "GET", target: "/account/x", headers: []string{"Authorization: Bearer " + at}}))
		send(st.call(faCase{method: "GET", target: "/audit/x"}))
		send(st.call(faCase{method: "GET", target: "/public/..%2fadmin"}))
		send(st.call(faCase{method: "GET", target: "/public/x"}))
	}
	for _, m := range []struct {
		rule, decision string
	}{{"admin", Denied}, {"account", Challenged}, {"audit", Audited}, {noRule, Rejected}, {"public", Forwarded}} {
		if n := testutil.ToFloat64(e.m.Requests.WithLabelValues(m.rule, m.decision)); n != 3 {
			t.Errorf("stepgate_requests_total{rule=%s,decision=%s}: got %v; want 3", m.rule, m.decision, n)
		}
	}
	var denied, challenged int
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		json.Unmarshal([]byte(line), &rec)
		switch rec["event"] {
		case "denied":
			denied++
			if rec["method"] != "GET" || rec["path"] != "/admin/x" || rec["via"] == nil {
				t.Errorf("denied record %v: want the original method and path, and via", rec)
			}
		case "step_up_required":
			challenged++
			if rec["user"] != "alice" || rec["path"] != "/account/x" {
				t.Errorf("step_up_required record %v: want user alice, path /account/x", rec)
			}
		}
	}
	if denied != 3 || challenged != 3 {
		t.Errorf("got %d denied and %d step_up_required records; want 3 each", denied, challenged)
	}
}

// TestForwardAuthLocation checks that redirects are absolute on the
// original origin when the endpoint is told the scheme (Traefik resolves a
// relative Location against the decision endpoint's URL), and relative
// otherwise (Envoy passes it to the browser as it is).
func TestForwardAuthLocation(t *testing.T) {
	e, send := newForwardAuthEnv(t, loopback(), nil)
	at := e.accessToken(t, "alice", "s1", "alice@example.com")
	h := []string{"Cookie: access_token=" + at, "Accept: text/html", "X-Forwarded-Method: GET", "X-Forwarded-Host: app.example.com:8443", "X-Forwarded-Uri: /account/x"}
	const rd = "/.stepup/challenge?rd=%2Faccount%2Fx"
	for _, tt := range []struct {
		name, req, want string
	}{
		{"https", get("/.stepup/authz/forward-auth", append(h, "X-Forwarded-Proto: https")...), "https://app.example.com:8443" + rd},
		{"no proto", get("/.stepup/authz/forward-auth", h...), rd},
		{"ext-authz", get("/.stepup/authz/ext-authz/account/x", h[:2]...), rd},
		{"login", get("/.stepup/authz/forward-auth", "Accept: text/html", "X-Forwarded-Proto: https", "X-Forwarded-Method: GET", "X-Forwarded-Host: app.example.com", "X-Forwarded-Uri: /account/x"), "https://app.example.com/login?rd=%2Faccount%2Fx"},
	} {
		res := send(tt.req)
		if res.Status != http.StatusFound || res.Header.Get("Location") != tt.want {
			t.Errorf("%s: got %d to %q; want 302 to %q", tt.name, res.Status, res.Header.Get("Location"), tt.want)
		}
	}
}
