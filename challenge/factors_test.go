package challenge

import (
	"encoding/base32"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/sqlitestore"
	"github.com/stepgate/stepgate/factors/totp"
	"github.com/stepgate/stepgate/secondfactor"
)

// fclock is a settable clock for the TOTP tests.
type fclock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fclock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fclock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type totpEnv struct {
	s      *Service
	clock  *fclock
	tokens *secondfactor.Tokens
	mail   hMailbox
	path   string
}

func newTOTPEnv(t *testing.T, path string, mod func(*Config)) *totpEnv {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "factors.db")
	}
	fs, err := sqlitestore.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	kr, err := factors.NewKeyring([]byte("factor-encryption-key-for-tests-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	e := &totpEnv{clock: &fclock{t: time.Unix(1_800_000_000, 0)}, mail: make(hMailbox, 64), path: path}
	cfg := hConfig()
	cfg.Now = e.clock.now
	cfg.Store = NewMemoryStore(0)
	cfg.Sender = e.mail
	cfg.Methods = []string{"totp", "email"}
	cfg.Factors, cfg.Keyring = fs, kr
	cfg.TOTP, cfg.TOTPIssuer = totp.Default, "stepgate test"
	cfg.OTP.MaxFailuresPerHour = 4
	if mod != nil {
		mod(&cfg)
	}
	e.tokens = testTokens(cfg.Store, "stepgate", cfg.Now)
	cfg.Tokens = e.tokens
	e.s = newHandlerOnly(t, cfg)
	return e
}

// do sends r (API) with the token, if any, and decodes a JSON body into v.
func (e *totpEnv) do(t *testing.T, r *http.Request, token string, v any) *httptest.ResponseRecorder {
	t.Helper()
	if token != "" {
		r.Header.Set("X-Second-Factor-Token", token)
	}
	w := httptest.NewRecorder()
	e.s.Handler().ServeHTTP(w, r)
	if v != nil && w.Code < 300 {
		if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
			t.Fatalf("%s %s: %d %q: %v", r.Method, r.URL, w.Code, w.Body, err)
		}
	}
	return w
}

func (e *totpEnv) code(t *testing.T, secretB32 string, at time.Time) string {
	t.Helper()
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secretB32)
	if err != nil {
		t.Fatal(err)
	}
	c, err := totp.Code(secret, totp.Step(at, totp.Default), totp.Default)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrol adds a TOTP factor for hAlice over the API with a fresh email
// grant and returns its base32 secret.
func (e *totpEnv) enrol(t *testing.T) (id, secret string) {
	t.Helper()
	fresh, err := e.tokens.MintMethod(t.Context(), hAlice, secondfactor.MethodEmail)
	if err != nil {
		t.Fatal(err)
	}
	var en Enrolment
	if w := e.do(t, apiReq("POST", hPrefix+"/api/factors/totp", hAlice, `{"name":"Phone"}`), fresh.Token, &en); w.Code != http.StatusCreated {
		t.Fatalf("POST /api/factors/totp: %d %s", w.Code, w.Body)
	}
	if en.ID == "" || en.Secret == "" || !strings.HasPrefix(en.URI, "otpauth://totp/") || !strings.Contains(en.URI, "secret="+en.Secret) {
		t.Fatalf("enrolment %+v", en)
	}
	// Pending: not usable yet.
	if _, err := e.s.VerifyTOTP(t.Context(), hAlice, e.code(t, en.Secret, e.clock.now()), Meta{}); err == nil {
		t.Fatalf("a pending factor verified a step-up")
	}
	// A wrong code does not confirm it.
	if w := e.do(t, apiReq("PUT", hPrefix+"/api/factors/totp/"+en.ID, hAlice, `{"code":"000000"}`), "", nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("confirm with a wrong code: %d %s", w.Code, w.Body)
	}
	if w := e.do(t, apiReq("PUT", hPrefix+"/api/factors/totp/"+en.ID, hAlice, `{"code":"`+e.code(t, en.Secret, e.clock.now())+`"}`), "", nil); w.Code != http.StatusOK {
		t.Fatalf("confirm: %d %s", w.Code, w.Body)
	}
	return en.ID, en.Secret
}

// TestTOTPFlowAPI: enrol with a code computed from the shown secret, step
// up with TOTP, replay of the same step refused, a later step accepted,
// wrong codes lock out like wrong email codes, removal needs a fresh
// second factor and mails the user.
func TestTOTPFlowAPI(t *testing.T) {
	e := newTOTPEnv(t, "", nil)
	fid, secret := e.enrol(t)
	// The addition was mailed to every address.
	for range hAlice.Emails {
		select {
		case m := <-e.mail:
			if !strings.Contains(m.Text, "authenticator app") {
				t.Fatalf("notification %q", m.Text)
			}
		default:
			t.Fatalf("no notification mail for the added factor")
		}
	}

	// The trigger lists totp first.
	var trig triggerResponse
	e.do(t, apiReq("GET", hPrefix+"/api/trigger", hAlice, ""), "", &trig)
	if !trig.IsAuthenticatorVerified || strings.Join(trig.Methods, ",") != "totp,email" {
		t.Fatalf("trigger %+v; want IsAuthenticatorVerified and [totp email]", trig)
	}

	// The step used to confirm is spent: the same code is a replay.
	w := e.do(t, apiReq("PUT", hPrefix+"/api/totp", hAlice, `{"code":"`+e.code(t, secret, e.clock.now())+`"}`), "", nil)
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `"replayed_otp"`) {
		t.Fatalf("replay of the confirming step: %d %s; want 401 replayed_otp", w.Code, w.Body)
	}
	e.clock.add(30 * time.Second)
	c := e.code(t, secret, e.clock.now())
	var vr verifyResponse
	w = e.do(t, apiReq("PUT", hPrefix+"/api/totp", hAlice, `{"code":"`+c+`"}`), "", &vr)
	if w.Code != http.StatusOK || vr.SecondFactorAuthenticationToken == "" {
		t.Fatalf("PUT /api/totp: %d %s", w.Code, w.Body)
	}
	g, err := e.tokens.Validate(t.Context(), vr.SecondFactorAuthenticationToken, hAlice)
	if err != nil || g.Method != secondfactor.MethodTOTP {
		t.Fatalf("minted token: %+v, %v; want method totp", g, err)
	}
	// Back ends validating the token learn the method.
	var val validateResponse
	if w := e.do(t, apiReq("GET", hPrefix+"/api/validate", hAlice, ""), vr.SecondFactorAuthenticationToken, &val); w.Code != 200 || !val.Valid || val.Method != "totp" {
		t.Fatalf("GET /api/validate: %d %+v; want valid, method totp", w.Code, val)
	}
	// Replay of the same step.
	w = e.do(t, apiReq("PUT", hPrefix+"/api/totp", hAlice, `{"code":"`+c+`"}`), "", nil)
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `"replayed_otp"`) {
		t.Fatalf("replay: %d %s; want 401 replayed_otp", w.Code, w.Body)
	}
	// Malformed input is a clear 401, never a panic or a grant.
	for _, bad := range []string{`{"code":""}`, `{"code":"12ab56"}`, `{"code":"` + strings.Repeat("9", 50) + `"}`} {
		if w := e.do(t, apiReq("PUT", hPrefix+"/api/totp", hAlice, bad), "", nil); w.Code != http.StatusUnauthorized && w.Code != http.StatusTooManyRequests {
			t.Fatalf("PUT /api/totp %s: %d %s", bad, w.Code, w.Body)
		}
	}
	// Listing shows last use.
	var list []FactorView
	e.do(t, apiReq("GET", hPrefix+"/api/factors", hAlice, ""), "", &list)
	if len(list) != 1 || list[0].ID != fid || list[0].Type != "totp" || list[0].LastUsedAt != e.clock.now().Unix() {
		t.Fatalf("GET /api/factors = %+v", list)
	}

	// Removal needs a second factor from the last 5 minutes.
	e.clock.add(6 * time.Minute)
	if w := e.do(t, apiReq("DELETE", hPrefix+"/api/factors/"+fid, hAlice, ""), vr.SecondFactorAuthenticationToken, nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("DELETE with a 6-minute-old factor: %d %s; want 401", w.Code, w.Body)
	}
	fresh, _ := e.tokens.MintMethod(t.Context(), hAlice, secondfactor.MethodTOTP)
	if w := e.do(t, apiReq("DELETE", hPrefix+"/api/factors/"+fid, hAlice, ""), fresh.Token, nil); w.Code != http.StatusNoContent {
		t.Fatalf("DELETE with a fresh factor: %d %s", w.Code, w.Body)
	}
	e.do(t, apiReq("GET", hPrefix+"/api/factors", hAlice, ""), "", &list)
	if len(list) != 0 {
		t.Fatalf("factors after removal: %+v", list)
	}
}

func TestTOTPWrongCodesLockOut(t *testing.T) {
	e := newTOTPEnv(t, "", nil)
	_, secret := e.enrol(t) // one wrong confirm code already counted
	e.clock.add(30 * time.Second)
	var last *httptest.ResponseRecorder
	for range 4 {
		last = e.do(t, apiReq("PUT", hPrefix+"/api/totp", hAlice, `{"code":"000001"}`), "", nil)
	}
	if last.Code != http.StatusTooManyRequests || last.Header().Get("Retry-After") == "" {
		t.Fatalf("after 5 wrong codes (max 4 per hour): %d %s; want 429 with Retry-After", last.Code, last.Body)
	}
	// Locked: even the right code is refused, and email codes are too.
	if w := e.do(t, apiReq("PUT", hPrefix+"/api/totp", hAlice, `{"code":"`+e.code(t, secret, e.clock.now())+`"}`), "", nil); w.Code != http.StatusTooManyRequests {
		t.Fatalf("right code while locked: %d; want 429", w.Code)
	}
	if _, err := e.s.Send(t.Context(), hAlice, 0, Meta{}); err == nil {
		t.Fatalf("email code sent while locked by TOTP failures")
	}
}

// TestTOTPLockUntilSlotFree: TOTP checks follow the same rule as email
// codes (Store.BeginCheck): with 3 wrong codes per hour and a 1m lockout,
// the third locks until the first leaves the hour, and after the lockout
// the right code, too, gets 429 with Retry-After until then.
func TestTOTPLockUntilSlotFree(t *testing.T) {
	e := newTOTPEnv(t, "", func(c *Config) {
		c.OTP.MaxFailuresPerHour = 3
		c.OTP.Lockout = time.Minute
	})
	t0 := e.clock.now()
	_, secret := e.enrol(t) // the wrong confirm code at t0 is failure 1
	put := func(code string) *httptest.ResponseRecorder {
		return e.do(t, apiReq("PUT", hPrefix+"/api/totp", hAlice, `{"code":"`+code+`"}`), "", nil)
	}
	e.clock.add(10 * time.Minute)
	if w := put("000001"); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong code 2 of 3: %d %s; want 401", w.Code, w.Body)
	}
	e.clock.add(10 * time.Minute)
	if w := put("000001"); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2400" {
		t.Fatalf("wrong code 3 of 3 at +20m: %d Retry-After %q; want 429 and 2400 (until the one at 0 leaves the hour)", w.Code, w.Header().Get("Retry-After"))
	}
	e.clock.add(10 * time.Minute) // the 1m lockout ended long ago
	if w := put(e.code(t, secret, e.clock.now())); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1800" {
		t.Fatalf("right code at +30m, 3 failures in the hour: %d Retry-After %q; want 429 and 1800", w.Code, w.Header().Get("Retry-After"))
	}
	e.clock.add(t0.Add(time.Hour).Sub(e.clock.now()))
	if w := put(e.code(t, secret, e.clock.now())); w.Code != http.StatusOK {
		t.Fatalf("right code at +1h, a slot free: %d %s; want 200", w.Code, w.Body)
	}
}

// TestTOTPEnrolNeedsFresh: adding needs a second factor ≤ 5 minutes old.
func TestTOTPEnrolNeedsFresh(t *testing.T) {
	e := newTOTPEnv(t, "", nil)
	if w := e.do(t, apiReq("POST", hPrefix+"/api/factors/totp", hAlice, `{"name":"x"}`), "", nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("enrol without a second factor: %d; want 401", w.Code)
	}
	old, _ := e.tokens.MintMethod(t.Context(), hAlice, secondfactor.MethodEmail)
	e.clock.add(5*time.Minute + time.Second)
	if w := e.do(t, apiReq("POST", hPrefix+"/api/factors/totp", hAlice, `{"name":"x"}`), old.Token, nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("enrol with a stale second factor: %d; want 401", w.Code)
	}
	fresh, _ := e.tokens.MintMethod(t.Context(), hAlice, secondfactor.MethodEmail)
	if w := e.do(t, apiReq("POST", hPrefix+"/api/factors/totp", hAlice, `{"name":"`+strings.Repeat("n", 65)+`"}`), fresh.Token, nil); w.Code != http.StatusBadRequest {
		t.Fatalf("enrol with a 65-byte name: %d; want 400", w.Code)
	}
}

// TestTOTPBrowserFlow drives the pages: the factors page, add, the setup
// page with its same-origin QR image, confirm, then the chooser offering
// TOTP first and a TOTP step-up through POST /totp.
func TestTOTPBrowserFlow(t *testing.T) {
	e := newTOTPEnv(t, "", nil)
	fresh, _ := e.tokens.MintMethod(t.Context(), hAlice, secondfactor.MethodEmail)
	send := func(r *http.Request) *httptest.ResponseRecorder {
		r.AddCookie(&http.Cookie{Name: "stepgate", Value: fresh.Token})
		w := httptest.NewRecorder()
		e.s.Handler().ServeHTTP(w, r)
		return w
	}
	w := send(browserReq("GET", hPrefix+"/factors", hAlice, nil))
	if w.Code != 200 || !strings.Contains(w.Body.String(), "Add an authenticator app") {
		t.Fatalf("GET /factors: %d %s", w.Code, w.Body)
	}
	csrf := csrfToken(e.s.h.csrfKey, hAlice)
	w = send(browserReq("POST", hPrefix+"/factors/totp", hAlice, url.Values{"name": {"Phone"}, "csrf": {csrf}}))
	if w.Code != http.StatusSeeOther {
		t.Fatalf("POST /factors/totp: %d %s", w.Code, w.Body)
	}
	setup := w.Header().Get("Location")
	w = send(browserReq("GET", setup, hAlice, nil))
	body := w.Body.String()
	i := strings.Index(body, `<code id="totp-secret">`)
	if w.Code != 200 || i < 0 || !strings.Contains(body, `src="`+setup+`/qr.png"`) {
		t.Fatalf("setup page: %d %s", w.Code, body)
	}
	secret := body[i+len(`<code id="totp-secret">`):]
	secret = secret[:strings.Index(secret, "<")]
	if w := send(browserReq("GET", setup+"/qr.png", hAlice, nil)); w.Code != 200 || w.Header().Get("Content-Type") != "image/png" {
		t.Fatalf("QR: %d %s", w.Code, w.Header())
	}
	w = send(browserReq("POST", setup, hAlice, url.Values{"code": {e.code(t, secret, e.clock.now())}, "csrf": {csrf}}))
	if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Location"), "done=added") {
		t.Fatalf("confirm: %d %s", w.Code, w.Body)
	}
	// The chooser offers TOTP first, email after.
	w = send(browserReq("GET", hPrefix+"/challenge?rd=/admin", hAlice, nil))
	body = w.Body.String()
	ti, ei := strings.Index(body, `action="/.stepup/totp"`), strings.Index(body, `action="/.stepup/send"`)
	if ti < 0 || ei < 0 || ti > ei {
		t.Fatalf("chooser: totp form at %d, email at %d; want totp first:\n%s", ti, ei, body)
	}
	e.clock.add(30 * time.Second)
	w = send(browserReq("POST", hPrefix+"/totp", hAlice, url.Values{"code": {e.code(t, secret, e.clock.now())}, "rd": {"/admin"}, "csrf": {csrf}}))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/admin" {
		t.Fatalf("POST /totp: %d %s", w.Code, w.Body)
	}
	if !strings.Contains(w.Header().Get("Set-Cookie"), "stepgate=") {
		t.Fatalf("no cookie set after TOTP step-up")
	}
	// Replayed in the browser: the chooser again, saying so.
	w = send(browserReq("POST", hPrefix+"/totp", hAlice, url.Values{"code": {e.code(t, secret, e.clock.now())}, "rd": {"/admin"}, "csrf": {csrf}}))
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "already used") {
		t.Fatalf("replayed POST /totp: %d %s", w.Code, w.Body)
	}
}

// TestChooserRuleMethods: a rule that allows only totp offers no email
// form, and a user without TOTP gets a page saying how to add one.
func TestChooserRuleMethods(t *testing.T) {
	e := newTOTPEnv(t, "", func(c *Config) {
		c.RuleMethods = func(r *http.Request, rd string) []string {
			if strings.HasPrefix(rd, "/vault") {
				return []string{"totp"}
			}
			return nil
		}
	})
	w := httptest.NewRecorder()
	e.s.Handler().ServeHTTP(w, browserReq("GET", hPrefix+"/challenge?rd=/vault", hAlice, nil))
	if w.Code != http.StatusForbidden || strings.Contains(w.Body.String(), `action="/.stepup/send"`) || !strings.Contains(w.Body.String(), hPrefix+"/factors") {
		t.Fatalf("totp-only rule, no TOTP enrolled: %d %s; want 403 linking to the factors page, no email form", w.Code, w.Body)
	}
	var trig triggerResponse
	e.do(t, apiReq("GET", hPrefix+"/api/trigger?rd=/vault", hAlice, ""), "", &trig)
	if len(trig.Methods) != 0 {
		t.Fatalf("trigger for the totp-only rule: %v; want none", trig.Methods)
	}
	e.do(t, apiReq("GET", hPrefix+"/api/trigger?rd=/other", hAlice, ""), "", &trig)
	if strings.Join(trig.Methods, ",") != "email" {
		t.Fatalf("trigger for another rule: %v; want [email]", trig.Methods)
	}
}

// TestFactorsSurviveRestart: a second service on the same SQLite file (a
// restarted stepgate) has the factor, and its replay guard.
func TestFactorsSurviveRestart(t *testing.T) {
	e := newTOTPEnv(t, "", nil)
	_, secret := e.enrol(t)
	e2 := newTOTPEnv(t, e.path, nil)
	e2.clock.t = e.clock.now()
	if _, err := e2.s.VerifyTOTP(t.Context(), hAlice, e.code(t, secret, e.clock.now()), Meta{}); err == nil {
		t.Fatalf("the confirming step was accepted after a restart")
	}
	e2.clock.add(30 * time.Second)
	if _, err := e2.s.VerifyTOTP(t.Context(), hAlice, e.code(t, secret, e2.clock.now()), Meta{}); err != nil {
		t.Fatalf("VerifyTOTP after a restart: %v", err)
	}
}

// TestFactorStoreDown: with the factor store closed (database down),
// TOTP and enrolment answer 503 and never succeed.
func TestFactorStoreDown(t *testing.T) {
	e := newTOTPEnv(t, "", nil)
	e.s.cfg.Factors.Close()
	fresh, _ := e.tokens.MintMethod(t.Context(), hAlice, secondfactor.MethodEmail)
	for _, c := range []struct {
		r     *http.Request
		token string
	}{
		{apiReq("PUT", hPrefix+"/api/totp", hAlice, `{"code":"123456"}`), ""},
		{apiReq("GET", hPrefix+"/api/factors", hAlice, ""), ""},
		{apiReq("POST", hPrefix+"/api/factors/totp", hAlice, `{"name":"x"}`), fresh.Token},
		{apiReq("GET", hPrefix+"/api/trigger", hAlice, ""), ""},
	} {
		if w := e.do(t, c.r, c.token, nil); w.Code != http.StatusServiceUnavailable {
			t.Errorf("%s %s with the factor store down: %d %s; want 503", c.r.Method, c.r.URL, w.Code, w.Body)
		}
	}
	if err := e.s.Ready(t.Context()); err == nil {
		t.Errorf("Ready with the factor store down: nil")
	}
	// The browser chooser falls back to email codes, which need no
	// factor store, and an email code still works.
	w := httptest.NewRecorder()
	e.s.Handler().ServeHTTP(w, browserReq("GET", hPrefix+"/challenge?rd=/admin", hAlice, nil))
	if w.Code != 200 || !strings.Contains(w.Body.String(), `action="/.stepup/send"`) || strings.Contains(w.Body.String(), `action="/.stepup/totp"`) {
		t.Errorf("chooser with the factor store down: %d %s; want the email form only", w.Code, w.Body)
	}
	if _, err := e.s.Send(t.Context(), hAlice, 0, Meta{}); err != nil {
		t.Errorf("email code with the factor store down: %v", err)
	}
}
