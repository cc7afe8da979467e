package challenge

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge/mailer"
	"github.com/stepgate/stepgate/challenge/mailtest"
	"github.com/stepgate/stepgate/identity"
)

// newSMTPService is a full Service: MemoryStore and the SMTP sender
// talking to port.
func newSMTPService(t *testing.T, port int, mod func(*Config)) *Service {
	t.Helper()
	sender, err := mailer.NewSMTPSender(mailer.SMTPConfig{Host: "127.0.0.1", Port: port, TLS: "none",
		Timeout: 5 * time.Second, From: "stepgate <no-reply@example.com>"})
	if err != nil {
		t.Fatalf("NewSMTPSender: %v", err)
	}
	cfg := hConfig()
	cfg.Sender = sender
	cfg.Store = NewMemoryStore(0)
	if mod != nil {
		mod(&cfg)
	}
	return newHandlerOnly(t, cfg)
}

func cookieNamed(rs []*http.Cookie, name string) *http.Cookie {
	for _, c := range rs {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestBrowserFlowSMTP(t *testing.T) {
	in := mailtest.Start(t, mailtest.Options{})
	s := newSMTPService(t, in.Port(), nil)
	h := s.Handler()

	w := hServe(h, browserReq("GET", hPrefix+"/challenge?rd=%2Fadmin%3Fx%3D1", hAlice, nil))
	if w.Code != 200 {
		t.Fatalf("GET /challenge: %d", w.Code)
	}
	csrf := csrfFrom(t, w.Body.String())

	w = hServe(h, browserReq("POST", hPrefix+"/send", hAlice, url.Values{"email": {"1"}, "rd": {"/admin?x=1"}, "csrf": {csrf}}))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != hPrefix+"/verify?rd=%2Fadmin%3Fx%3D1" {
		t.Fatalf("POST /send: got %d Location %q; want 303 to the code form", w.Code, w.Header().Get("Location"))
	}
	code := in.Code(t, hAlice.Emails[1])

	w = hServe(h, browserReq("GET", hPrefix+"/verify?rd=%2Fadmin%3Fx%3D1", hAlice, nil))
	for _, want := range []string{"6-digit code to <strong>a***k@corp.example</strong>", `inputmode="numeric"`, `autocomplete="one-time-code"`, `maxlength="32"`, "It works until <strong>"} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("code form lacks %q:\n%s", want, w.Body)
		}
	}
	if strings.Contains(w.Body.String(), "pattern=") {
		t.Errorf("code form still has a pattern, which refuses pasted spaces")
	}

	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	w = hServe(h, browserReq("POST", hPrefix+"/verify", hAlice, url.Values{"code": {wrong}, "rd": {"/admin?x=1"}, "csrf": {csrf}}))
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "2 tries left for this code") {
		t.Fatalf("wrong code: got %d; want 401 with 2 tries left:\n%s", w.Code, w.Body)
	}
	if cookieNamed(w.Result().Cookies(), "stepgate") != nil {
		t.Fatalf("wrong code set the second-factor cookie")
	}

	w = hServe(h, browserReq("POST", hPrefix+"/verify", hAlice, url.Values{"code": {code[:3] + " " + code[3:]}, "rd": {"/admin?x=1"}, "csrf": {csrf}}))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/admin?x=1" {
		t.Fatalf("right code: got %d Location %q; want 303 to /admin?x=1:\n%s", w.Code, w.Header().Get("Location"), w.Body)
	}
	c := cookieNamed(w.Result().Cookies(), "stepgate")
	if c == nil || c.Value == "" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
		t.Fatalf("right code: cookie %q; want the second-factor cookie", w.Header().Get("Set-Cookie"))
	}
	checkSecureHeaders(t, "verify", w)

	// The same code is single use.
	w = hServe(h, browserReq("POST", hPrefix+"/verify", hAlice, url.Values{"code": {code}, "rd": {"/admin"}, "csrf": {csrf}}))
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "expired or was already used") {
		t.Errorf("reused code: got %d; want 401 'expired or was already used':\n%s", w.Code, w.Body)
	}

	r := browserReq("GET", hPrefix+"/", hAlice, nil)
	r.AddCookie(c)
	w = hServe(h, r)
	if !strings.Contains(w.Body.String(), "Confirmed at") || !strings.Contains(w.Body.String(), "/logout") {
		t.Fatalf("status with cookie: want a confirmed factor and a logout form:\n%s", w.Body)
	}

	// Another session of the same user does not see the factor.
	other := hAlice
	other.Session = "s2"
	r = browserReq("GET", hPrefix+"/", other, nil)
	r.AddCookie(c)
	if w := hServe(h, r); !strings.Contains(w.Body.String(), "Not confirmed") {
		t.Errorf("status for another session shows the factor:\n%s", w.Body)
	}

	r = browserReq("POST", hPrefix+"/logout", hAlice, url.Values{"csrf": {csrf}, "rd": {"//evil.example"}})
	r.AddCookie(c)
	w = hServe(h, r)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
		t.Fatalf("logout: got %d Location %q; want 303 to /", w.Code, w.Header().Get("Location"))
	}
	if cl := cookieNamed(w.Result().Cookies(), "stepgate"); cl == nil || cl.MaxAge >= 0 || cl.Value != "" {
		t.Errorf("logout: Set-Cookie %q; want the cookie cleared", w.Header().Get("Set-Cookie"))
	}
	// The old cookie is revoked, not just forgotten by the browser.
	r = browserReq("GET", hPrefix+"/", hAlice, nil)
	r.AddCookie(c)
	if w := hServe(h, r); !strings.Contains(w.Body.String(), "Not confirmed") {
		t.Errorf("status after logout still shows the factor:\n%s", w.Body)
	}
}

func TestAPIFlowSMTP(t *testing.T) {
	in := mailtest.Start(t, mailtest.Options{})
	s := newSMTPService(t, in.Port(), nil)
	h := s.Handler()
	decode := func(w interface{ Result() *http.Response }, v any) {
		t.Helper()
		if err := json.NewDecoder(w.Result().Body).Decode(v); err != nil {
			t.Fatalf("decode: %v", err)
		}
	}

	w := hServe(h, apiReq("POST", hPrefix+"/api/email-otp", hAlice, `{"email":"Alice@Example.com"}`))
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{"IsPosted":true,"ExpiresIn":300}` {
		t.Fatalf("POST /api/email-otp: got %d %s", w.Code, w.Body)
	}
	code := in.Code(t, "alice@example.com")

	// A second send within resend_after is throttled: 429 + Retry-After.
	w = hServe(h, apiReq("POST", hPrefix+"/api/email-otp", hAlice, `{"index":1}`))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), `"error":"too_many_requests"`) {
		t.Errorf("second send: got %d Retry-After %q %s; want 429", w.Code, w.Header().Get("Retry-After"), w.Body)
	}

	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	w = hServe(h, apiReq("PUT", hPrefix+"/api/email-otp", hAlice, `{"otp":"`+wrong+`"}`))
	var oe struct {
		Error        string `json:"error"`
		AttemptsLeft *int   `json:"attempts_left"`
	}
	decode(w, &oe)
	if w.Code != 401 || oe.Error != "invalid_otp" || oe.AttemptsLeft == nil || *oe.AttemptsLeft != 2 {
		t.Fatalf("wrong otp: got %d %+v; want 401 invalid_otp attempts_left 2", w.Code, oe)
	}

	w = hServe(h, apiReq("PUT", hPrefix+"/api/email-otp", hAlice, `{"otp":"`+code+`"}`))
	var vr struct {
		SecondFactorAuthenticationToken string
		ExpiresIn                       int
	}
	decode(w, &vr)
	if w.Code != 200 || vr.SecondFactorAuthenticationToken == "" || vr.ExpiresIn < 43190 || vr.ExpiresIn > 43200 {
		t.Fatalf("right otp: got %d %+v; want 200, a token and ExpiresIn 43200", w.Code, vr)
	}
	if c := cookieNamed(w.Result().Cookies(), "stepgate"); c == nil || c.Value != vr.SecondFactorAuthenticationToken {
		t.Errorf("right otp: the cookie does not carry the token")
	}

	w = hServe(h, apiReq("PUT", hPrefix+"/api/email-otp", hAlice, `{"otp":"`+code+`"}`))
	if w.Code != 401 || !strings.Contains(w.Body.String(), `"error":"expired_otp"`) {
		t.Errorf("reused otp: got %d %s; want 401 expired_otp", w.Code, w.Body)
	}

	validate := func(tok string) (int, map[string]any) {
		r := apiReq("GET", hPrefix+"/api/validate", hAlice, "")
		r.Header.Set("X-Second-Factor-Token", tok)
		w := hServe(h, r)
		var m map[string]any
		decode(w, &m)
		return w.Code, m
	}
	code2, m := validate(vr.SecondFactorAuthenticationToken)
	if code2 != 200 || m["valid"] != true || m["sub"] != "alice" || m["auth_time"] == nil || m["expires_at"] == nil {
		t.Errorf("validate: got %d %v; want 200 valid for alice", code2, m)
	}
	code2, m = validate(vr.SecondFactorAuthenticationToken + "x")
	if code2 != 401 || m["valid"] != false || m["error"] == "" {
		t.Errorf("validate tampered: got %d %v; want 401 valid:false", code2, m)
	}
	// The token of alice's session is no good for another session.
	other := hAlice
	other.Session = "s2"
	r := apiReq("GET", hPrefix+"/api/validate", other, "")
	r.Header.Set("X-Second-Factor-Token", vr.SecondFactorAuthenticationToken)
	if w := hServe(h, r); w.Code != 401 || !strings.Contains(w.Body.String(), `"valid":false`) {
		t.Errorf("validate for another session: got %d %s; want 401", w.Code, w.Body)
	}
}

func TestLockedSMTP(t *testing.T) {
	in := mailtest.Start(t, mailtest.Options{})
	s := newSMTPService(t, in.Port(), func(c *Config) {
		c.OTP.MaxAttempts = 5
		c.OTP.MaxFailuresPerHour = 2
	})
	h := s.Handler()
	csrf := csrfToken(s.h.csrfKey, hAlice)
	w := hServe(h, browserReq("POST", hPrefix+"/send", hAlice, url.Values{"email": {"0"}, "rd": {"/pay"}, "csrf": {csrf}}))
	if w.Code != http.StatusSeeOther {
		t.Fatalf("send: %d", w.Code)
	}
	code := in.Code(t, "alice@example.com")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	var last *http.Response
	for range 3 {
		w = hServe(h, browserReq("POST", hPrefix+"/verify", hAlice, url.Values{"code": {wrong}, "rd": {"/pay"}, "csrf": {csrf}}))
		last = w.Result()
	}
	// Both failures were just now: locked until they leave the hour, longer
	// than the 15m lockout (at most N wrong codes in any rolling hour).
	if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") != "3600" {
		t.Fatalf("third wrong code: got %d Retry-After %q; want 429 and 3600", last.StatusCode, last.Header.Get("Retry-After"))
	}
	if !strings.Contains(w.Body.String(), "Too many wrong codes") || !strings.Contains(w.Body.String(), "60 minutes") {
		t.Errorf("locked page:\n%s", w.Body)
	}
	checkSecureHeaders(t, "locked", w)
	// Locked: even the right code is refused now.
	w = hServe(h, browserReq("POST", hPrefix+"/verify", hAlice, url.Values{"code": {code}, "rd": {"/pay"}, "csrf": {csrf}}))
	if w.Code != http.StatusTooManyRequests || cookieNamed(w.Result().Cookies(), "stepgate") != nil {
		t.Errorf("right code while locked: got %d; want 429 and no cookie", w.Code)
	}
	w = hServe(h, apiReq("PUT", hPrefix+"/api/email-otp", hAlice, `{"otp":"`+code+`"}`))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "too_many_requests") {
		t.Errorf("api while locked: got %d %s; want 429 too_many_requests", w.Code, w.Body)
	}
}

// TestMailDown points the sender at a closed port: 503 and never a page
// that says a code was sent.
func TestMailDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := newSMTPService(t, port, nil)
	h := s.Handler()
	w := hServe(h, browserReq("POST", hPrefix+"/send", hAlice, url.Values{"email": {"0"}, "rd": {"/pay"}, "csrf": {csrfToken(s.h.csrfKey, hAlice)}}))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Location") != "" || strings.Contains(w.Body.String(), "We sent") {
		t.Errorf("browser send with mail down: got %d Location %q:\n%s; want 503", w.Code, w.Header().Get("Location"), w.Body)
	}
	// Another user: the failed send above still counts against alice's
	// throttle, by design (a failing mail server is not hammered).
	bob := identity.Identity{Subject: "bob", Session: "b1", Emails: []string{"bob@example.com"}}
	w = hServe(h, apiReq("POST", hPrefix+"/api/email-otp", bob, `{"index":0}`))
	if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "IsPosted") {
		t.Errorf("api send with mail down: got %d %s; want 503", w.Code, w.Body)
	}
}
