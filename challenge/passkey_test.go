package challenge

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/passkey"
	"github.com/stepgate/stepgate/factors/passkey/passkeytest"
	"github.com/stepgate/stepgate/factors/sqlitestore"
	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/secondfactor"
)

const pkOrigin = "https://app.example.com"

type pkEnv struct {
	s     *Service
	h     http.Handler
	rp    *passkey.RP
	store factors.Store
	mail  hMailbox
	logs  *bytes.Buffer
	reg   *prometheus.Registry
}

func newPasskeyEnv(t *testing.T) *pkEnv {
	t.Helper()
	return newPasskeyEnvAt(t, nil)
}

// newPasskeyEnvAt is newPasskeyEnv with the service and its tokens on the
// clock now (nil: the real one).
func newPasskeyEnvAt(t *testing.T, now func() time.Time) *pkEnv {
	t.Helper()
	st, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "factors.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := factors.NewKeyring([]byte("factor key factor key factor key!"))
	if err != nil {
		t.Fatal(err)
	}
	states := NewMemoryStore(0)
	t.Cleanup(func() { states.Close() })
	rp, err := passkey.New(passkey.Config{Origin: pkOrigin}, st, keys, states, ErrNoCeremony)
	if err != nil {
		t.Fatal(err)
	}
	e := &pkEnv{rp: rp, store: st, mail: make(hMailbox, 16), logs: &bytes.Buffer{}, reg: prometheus.NewRegistry()}
	cfg := hConfig()
	cfg.Now = now
	cfg.Store = states
	cfg.Sender = e.mail
	cfg.Passkeys = rp
	cfg.Factors, cfg.Keyring = st, keys // as built: passkeys live in the factor store
	cfg.Metrics = NewMetrics(e.reg)
	cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, nil))
	e.s = newHandlerOnly(t, cfg)
	e.h = e.s.Handler()
	return e
}

// call sends an API request as id with an optional second-factor token.
func (e *pkEnv) call(t *testing.T, path string, id identity.Identity, token string, body []byte) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	r := apiReq(http.MethodPost, hPrefix+path, id, string(body))
	if token != "" {
		r.Header.Set("X-Second-Factor-Token", token)
	}
	w := hServe(e.h, r)
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("%s: answer %d %q is not JSON", path, w.Code, w.Body)
	}
	return w, m
}

// emailToken is a fresh email-code grant of id, as after PUT /api/email-otp.
func (e *pkEnv) emailToken(t *testing.T, id identity.Identity) string {
	g, err := e.s.cfg.Tokens.Mint(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return g.Token
}

// register adds a passkey from a through the API and returns its view.
func (e *pkEnv) register(t *testing.T, id identity.Identity, token string, a *passkeytest.Authenticator, name string) map[string]any {
	t.Helper()
	w, opts := e.call(t, "/api/factors/passkey/begin", id, token, []byte(`{"name":"`+name+`"}`))
	if w.Code != http.StatusOK {
		t.Fatalf("register begin: %d %s", w.Code, w.Body)
	}
	body, err := a.Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	w, v := e.call(t, "/api/factors/passkey/finish", id, token, body)
	if w.Code != http.StatusCreated {
		t.Fatalf("register finish: %d %s", w.Code, w.Body)
	}
	return v
}

// stepUp runs begin and finish with a and returns the finish answer.
func (e *pkEnv) stepUp(t *testing.T, id identity.Identity, a *passkeytest.Authenticator) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	w, opts := e.call(t, "/api/passkey/begin", id, "", []byte(`{}`))
	if w.Code != http.StatusOK {
		return w, opts
	}
	body, err := a.Get(opts)
	if err != nil {
		t.Fatal(err)
	}
	return e.call(t, "/api/passkey/finish", id, "", body)
}

func TestPasskeyAPI(t *testing.T) {
	e := newPasskeyEnv(t)
	a := passkeytest.New(pkOrigin, "app.example.com")
	a.AAGUID = [16]byte{0xee, 0x88, 0x28, 0x79}

	// Adding a passkey needs a fresh second factor.
	if w, m := e.call(t, "/api/factors/passkey/begin", hAlice, "", []byte(`{"name":"Laptop"}`)); w.Code != http.StatusUnauthorized || m["error"] != "insufficient_user_authentication" {
		t.Fatalf("register without a second factor: %d %v; want 401 insufficient_user_authentication", w.Code, m)
	}
	// Before any passkey, step-up with one is refused.
	if w, m := e.stepUp(t, hAlice, a); w.Code != http.StatusNotFound || m["error"] != "no_passkey" {
		t.Fatalf("begin without a passkey: %d %v; want 404 no_passkey", w.Code, m)
	}

	tok := e.emailToken(t, hAlice)
	v := e.register(t, hAlice, tok, a, "Laptop")
	if v["name"] != "Laptop" || v["type"] != "passkey" || v["aaguid"] != "ee882879-0000-0000-0000-000000000000" {
		t.Fatalf("registered %v", v)
	}
	for range hAlice.Emails {
		m := <-e.mail
		if !strings.Contains(m.Subject, "passkey was added") || !strings.Contains(m.Text, `"Laptop"`) {
			t.Fatalf("notification %q: %q", m.Subject, m.Text)
		}
	}

	w, m := e.stepUp(t, hAlice, a)
	if w.Code != http.StatusOK || m["SecondFactorAuthenticationToken"] == nil || m["ExpiresIn"] == nil {
		t.Fatalf("step-up: %d %v; want the PUT /api/email-otp answer", w.Code, m)
	}
	g, err := e.s.cfg.Tokens.Validate(t.Context(), m["SecondFactorAuthenticationToken"].(string), hAlice)
	if err != nil || g.Method != secondfactor.MethodPasskey {
		t.Fatalf("passkey token: %+v, %v; want method passkey", g, err)
	}
	if c := cookieNamed(w.Result().Cookies(), "stepgate"); c == nil || c.Value != m["SecondFactorAuthenticationToken"] {
		t.Fatalf("no second-factor cookie with the token: %v", w.Result().Cookies())
	}

	// Audit: name and AAGUID, never the credential id or key material.
	logs := e.logs.String()
	if !strings.Contains(logs, `"event":"passkey_verified"`) || !strings.Contains(logs, `"aaguid":"ee882879-0000-0000-0000-000000000000"`) || !strings.Contains(logs, `"factor_name":"Laptop"`) {
		t.Fatalf("audit lacks the passkey event, name or AAGUID:\n%s", logs)
	}
	for _, secret := range []string{base64.RawURLEncoding.EncodeToString(a.ID), base64.StdEncoding.EncodeToString(a.ID)} {
		if strings.Contains(logs, secret) {
			t.Fatalf("credential id in the logs:\n%s", logs)
		}
	}
	if got := testutil.ToFloat64(e.s.metrics.Passkey.WithLabelValues("assert", "ok")); got != 1 {
		t.Fatalf("stepgate_passkey_total{assert,ok} = %v; want 1", got)
	}
	if got := testutil.ToFloat64(e.s.metrics.Passkey.WithLabelValues("register", "ok")); got != 1 {
		t.Fatalf("stepgate_passkey_total{register,ok} = %v; want 1", got)
	}
}

func TestPasskeyAPIRefusals(t *testing.T) {
	e := newPasskeyEnv(t)
	a := passkeytest.New(pkOrigin, "app.example.com")
	e.register(t, hAlice, e.emailToken(t, hAlice), a, "Key")
	<-e.mail
	<-e.mail

	t.Run("replayed", func(t *testing.T) {
		_, opts := e.call(t, "/api/passkey/begin", hAlice, "", []byte(`{}`))
		body, _ := a.Get(opts)
		if w, _ := e.call(t, "/api/passkey/finish", hAlice, "", body); w.Code != http.StatusOK {
			t.Fatalf("first finish: %d %s", w.Code, w.Body)
		}
		if w, m := e.call(t, "/api/passkey/finish", hAlice, "", body); w.Code != http.StatusUnauthorized || m["error"] != "expired_challenge" {
			t.Fatalf("replay: %d %v; want 401 expired_challenge", w.Code, m)
		}
	})
	t.Run("wrong origin", func(t *testing.T) {
		evil := *a
		evil.Origin = "https://app-example.com"
		if w, m := e.stepUp(t, hAlice, &evil); w.Code != http.StatusUnauthorized || m["error"] != "invalid_passkey" {
			t.Fatalf("wrong origin: %d %v; want 401 invalid_passkey", w.Code, m)
		}
		a.Counter = evil.Counter
	})
	t.Run("no user verification", func(t *testing.T) {
		lazy := *a
		lazy.Flags = passkeytest.FlagUP
		if w, m := e.stepUp(t, hAlice, &lazy); w.Code != http.StatusUnauthorized || m["error"] != "invalid_passkey" {
			t.Fatalf("UV missing: %d %v; want 401 invalid_passkey", w.Code, m)
		}
		a.Counter = lazy.Counter
	})
	t.Run("another user", func(t *testing.T) {
		bob := identity.Identity{Subject: "bob", Session: "s9", Emails: []string{"bob@example.com"}}
		e.register(t, bob, e.emailToken(t, bob), passkeytest.New(pkOrigin, "app.example.com"), "Bob's")
		<-e.mail
		// Bob's challenge, Alice's authenticator.
		_, opts := e.call(t, "/api/passkey/begin", bob, "", []byte(`{}`))
		a.Counter++
		body, _ := a.Assert(passkeytest.Challenge(opts), a.Counter)
		if w, m := e.call(t, "/api/passkey/finish", bob, "", body); w.Code != http.StatusUnauthorized || m["error"] != "invalid_passkey" {
			t.Fatalf("alice's passkey for bob: %d %v; want 401 invalid_passkey", w.Code, m)
		}
	})
	t.Run("counter regression", func(t *testing.T) {
		_, opts := e.call(t, "/api/passkey/begin", hAlice, "", []byte(`{}`))
		body, _ := a.Assert(passkeytest.Challenge(opts), 1)
		w, m := e.call(t, "/api/passkey/finish", hAlice, "", body)
		if w.Code != http.StatusUnauthorized || m["error"] != "passkey_cloned" {
			t.Fatalf("regression: %d %v; want 401 passkey_cloned", w.Code, m)
		}
		if !strings.Contains(e.logs.String(), `"event":"passkey_cloned"`) {
			t.Fatal("no passkey_cloned audit record")
		}
		for range hAlice.Emails {
			if m := <-e.mail; !strings.Contains(m.Subject, "blocked") {
				t.Fatalf("mail %q; want the blocked-passkey notice", m.Subject)
			}
		}
		// From now on the credential is not offered.
		if w, m := e.stepUp(t, hAlice, a); w.Code != http.StatusNotFound || m["error"] != "no_passkey" {
			t.Fatalf("after regression: %d %v; want 404 no_passkey", w.Code, m)
		}
	})
	t.Run("bad bodies", func(t *testing.T) {
		r := apiReq(http.MethodPost, hPrefix+"/api/passkey/finish", hAlice, "{}")
		r.Header.Set("Content-Type", "text/plain")
		if w := hServe(e.h, r); w.Code != http.StatusUnsupportedMediaType {
			t.Fatalf("text/plain: %d; want 415 (a cross-site form cannot send JSON)", w.Code)
		}
		for _, b := range []string{"not json", `{"id":"x"}`, strings.Repeat("[", 20<<10)} {
			w, _ := e.call(t, "/api/passkey/finish", hAlice, "", []byte(b))
			if w.Code < 400 || w.Code >= 500 {
				t.Errorf("body %.20q: %d; want a 4xx", b, w.Code)
			}
		}
	})
}

func TestPasskeyOff(t *testing.T) {
	s := newHandlerOnly(t, hConfig())
	w := hServe(s.Handler(), apiReq(http.MethodPost, hPrefix+"/api/passkey/begin", hAlice, "{}"))
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "not_enabled") {
		t.Fatalf("passkeys off: %d %s; want 404 not_enabled", w.Code, w.Body)
	}
}

func TestPasskeyPages(t *testing.T) {
	e := newPasskeyEnv(t)
	get := func(path, token string) *httptest.ResponseRecorder {
		r := browserReq(http.MethodGet, hPrefix+path, hAlice, nil)
		if token != "" {
			r.Header.Set("X-Second-Factor-Token", token)
		}
		return hServe(e.h, r)
	}
	// No passkey yet: the step-up page says so.
	if w := get("/passkey?rd=/admin", ""); w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "no passkey") {
		t.Fatalf("passkey page without a passkey: %d %s", w.Code, w.Body)
	}
	// The registration page without a fresh factor: a link to confirm, no script.
	w := get("/factors/passkey", "")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "confirm it&#39;s you") || strings.Contains(w.Body.String(), "<script") {
		t.Fatalf("registration page, not fresh: %d %s", w.Code, w.Body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); strings.Contains(csp, "script-src") {
		t.Fatalf("page without the script has CSP %q", csp)
	}
	tok := e.emailToken(t, hAlice)
	w = get("/factors/passkey", tok)
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, `<script src="/.stepup/passkey.js" defer></script>`) || !strings.Contains(body, `data-mode="create"`) || !strings.Contains(body, "<noscript>") {
		t.Fatalf("registration page, fresh: %d %s", w.Code, body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("registration page CSP %q; want script-src 'self' and nothing inline", csp)
	}
	a := passkeytest.New(pkOrigin, "app.example.com")
	a.Flags |= passkeytest.FlagBE | passkeytest.FlagBS
	e.register(t, hAlice, tok, a, "Phone")
	if w := get("/factors/passkey", tok); !strings.Contains(w.Body.String(), "Phone") || !strings.Contains(w.Body.String(), "synced to other devices") {
		t.Fatalf("registration page lists no synced passkey: %s", w.Body)
	}
	w = get("/passkey?rd=/admin", "")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Use a passkey") || !strings.Contains(w.Body.String(), `data-done="/admin"`) {
		t.Fatalf("passkey page: %d %s", w.Code, w.Body)
	}
	if w := get("/passkey?rd=//evil.example/x", ""); !strings.Contains(w.Body.String(), `data-done="/"`) {
		t.Fatalf("open redirect through data-done: %s", w.Body)
	}
	w = get("/passkey.js", "")
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/javascript") || !strings.Contains(w.Body.String(), "navigator.credentials") {
		t.Fatalf("passkey.js: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if csp := get("/challenge?rd=/", "").Header().Get("Content-Security-Policy"); strings.Contains(csp, "script") {
		t.Fatalf("challenge page CSP %q allows scripts", csp)
	}
}

// TestSecondPasskeyNeedsAPasskey: once a user has a passkey, a fresh email
// code no longer adds another; a fresh passkey grant does.
func TestSecondPasskeyNeedsAPasskey(t *testing.T) {
	e := newPasskeyEnv(t)
	a := passkeytest.New(pkOrigin, "app.example.com")
	email := e.emailToken(t, hAlice)
	first := e.register(t, hAlice, email, a, "First")
	if w, m := e.call(t, "/api/factors/passkey/begin", hAlice, email, []byte(`{"name":"Second"}`)); w.Code != http.StatusUnauthorized || m["error"] != "insufficient_user_authentication" {
		t.Fatalf("second passkey after an email code: %d %v; want 401", w.Code, m)
	}
	// Nor may an email code remove the passkey (and so clear the way to
	// add another).
	r := apiReq(http.MethodDelete, hPrefix+"/api/factors/"+first["id"].(string), hAlice, "")
	r.Header.Set("X-Second-Factor-Token", email)
	if w := hServe(e.h, r); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "insufficient_user_authentication") {
		t.Fatalf("removing the passkey after an email code: %d %s; want 401", w.Code, w.Body)
	}
	if has, err := e.s.HasPasskey(t.Context(), hAlice); err != nil || !has {
		t.Fatalf("after the refused removal HasPasskey = %v, %v; want true", has, err)
	}
	_, m := e.stepUp(t, hAlice, a)
	pk, _ := m["SecondFactorAuthenticationToken"].(string)
	e.register(t, hAlice, pk, passkeytest.New(pkOrigin, "app.example.com"), "Second")
}

// TestPasskeyOnlyChooser: on a rule that lists only passkey, the chooser
// offers the passkey and nothing else, also to a user who holds a fresh
// email token (the gate refused it for that rule); without a passkey it
// says to add one.
func TestPasskeyOnlyChooser(t *testing.T) {
	e := newPasskeyEnv(t)
	e.s.cfg.Methods = []string{secondfactor.MethodPasskey, secondfactor.MethodEmail}
	e.s.cfg.RuleMethods = func(_ *http.Request, rd string) []string {
		if strings.HasPrefix(rd, "/vault") {
			return []string{secondfactor.MethodPasskey}
		}
		return nil
	}
	tok := e.emailToken(t, hAlice)
	page := func(rd string) (int, string) {
		r := browserReq(http.MethodGet, hPrefix+"/challenge?rd="+rd, hAlice, nil)
		r.Header.Set("X-Second-Factor-Token", tok)
		w := hServe(e.h, r)
		return w.Code, w.Body.String()
	}
	if code, body := page("/vault"); code != http.StatusForbidden || !strings.Contains(body, "Add a passkey first") || strings.Contains(body, "/send") {
		t.Fatalf("passkey-only rule, no passkey: %d %s", code, body)
	}
	e.register(t, hAlice, tok, passkeytest.New(pkOrigin, "app.example.com"), "Key")
	code, body := page("/vault")
	if code != http.StatusOK || !strings.Contains(body, `href="/.stepup/passkey?rd=%2Fvault"`) || strings.Contains(body, `action="/.stepup/send"`) || strings.Contains(body, "a***@") {
		t.Fatalf("passkey-only rule: %d %s; want only the passkey offered", code, body)
	}
	// Elsewhere the passkey comes first, email after it.
	_, body = page("/elsewhere")
	if i, j := strings.Index(body, "Use a passkey"), strings.Index(body, `action="/.stepup/send"`); i < 0 || j < 0 || i > j {
		t.Fatalf("default rule: passkey at %d, email at %d; want both, passkey first", i, j)
	}
	// The passkey page of a passkey-only rule links to no other way.
	r := browserReq(http.MethodGet, hPrefix+"/passkey?rd=/vault", hAlice, nil)
	if body := hServe(e.h, r).Body.String(); !strings.Contains(body, "accepts only a passkey") || strings.Contains(body, "Use another way") {
		t.Fatalf("passkey page, passkey-only: %s", body)
	}
	// The trigger API names the passkey.
	tw := hServe(e.h, apiReq(http.MethodGet, hPrefix+"/api/trigger?rd=/vault", hAlice, ""))
	var m map[string]any
	if err := json.Unmarshal(tw.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["IsPasskeyVerified"] != true || len(m["Methods"].([]any)) != 1 || m["Methods"].([]any)[0] != "passkey" {
		t.Fatalf("trigger for a passkey-only rule: %v", m)
	}
}

// TestPasskeyFailuresNMeansN: refused passkey answers are admitted and
// counted like codes (Store.BeginCheck): of many concurrent refused answers
// exactly max_failures_per_hour are checked, the rest get 429, and then the
// right answer gets 429 too, with the lock lasting until the failures leave
// the hour (they are a moment old: 3600 s, longer than the 15m lockout).
func TestPasskeyFailuresNMeansN(t *testing.T) {
	e := newPasskeyEnv(t)
	e.s.cfg.OTP.MaxFailuresPerHour = 3
	a := passkeytest.New(pkOrigin, "app.example.com")
	e.register(t, hAlice, e.emailToken(t, hAlice), a, "Key")
	evil := *a
	evil.Origin = "https://app-example.com"
	const n = 10
	bodies := make([][]byte, n)
	for i := range bodies {
		_, opts := e.call(t, "/api/passkey/begin", hAlice, "", []byte(`{}`))
		b, err := evil.Get(opts)
		if err != nil {
			t.Fatal(err)
		}
		bodies[i] = b
	}
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range bodies {
		wg.Go(func() {
			<-start
			r := apiReq(http.MethodPost, hPrefix+"/api/passkey/finish", hAlice, string(bodies[i]))
			codes[i] = hServe(e.h, r).Code
		})
	}
	close(start)
	wg.Wait()
	if got := testutil.ToFloat64(e.s.metrics.FactorVerified.WithLabelValues("passkey", verifyInvalid)); got != 3 {
		t.Errorf("refused answers checked: %v (statuses %v); want 3", got, codes)
	}
	a.Counter = evil.Counter
	w, _ := e.stepUp(t, hAlice, a)
	if ra, _ := strconv.Atoi(w.Header().Get("Retry-After")); w.Code != http.StatusTooManyRequests || ra <= 900 || ra > 3600 {
		t.Fatalf("right passkey after 3 refused: %d Retry-After %q; want 429 with about 3600", w.Code, w.Header().Get("Retry-After"))
	}
}
