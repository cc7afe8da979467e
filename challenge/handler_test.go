package challenge

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stepgate/stepgate/challenge/mailer"
	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
)

const hPrefix = "/.stepup"

var hSecret = []byte("0123456789abcdef0123456789abcdef")

// hAuthenticate reads the identity from test headers, the way a trusted
// SSO proxy would set it: X-Test-Sub, X-Test-Session, X-Test-Emails
// (comma-separated). X-Test-Broken simulates an identity outage.
func hAuthenticate(r *http.Request) (identity.Identity, error) {
	if r.Header.Get("X-Test-Broken") != "" {
		return identity.Identity{}, io.ErrUnexpectedEOF
	}
	sub := r.Header.Get("X-Test-Sub")
	if sub == "" {
		return identity.Identity{}, identity.ErrNoCredential
	}
	id := identity.Identity{Subject: sub, Session: r.Header.Get("X-Test-Session")}
	if e := r.Header.Get("X-Test-Emails"); e != "" {
		id.Emails = strings.Split(e, ",")
	}
	return id, nil
}

// hConfig is a complete config; the core fields (Store, Sender) are set
// by the end-to-end tests.
func hConfig() Config {
	return Config{
		Secret:       hSecret,
		OTP:          OTPConfig{Length: 6, TTL: 5 * time.Minute, MaxAttempts: 3, ResendAfter: 30 * time.Second, MaxSendsPerHour: 5, MaxFailuresPerHour: 20, Lockout: 15 * time.Minute},
		MailSubject:  "Your verification code",
		Prefix:       hPrefix,
		Authenticate: hAuthenticate,
		LoginURL:     "/login?rd={rd}",
		Logger:       slog.New(slog.DiscardHandler),
	}
}

// hMailbox is a Sender that hands each message to the test; the
// end-to-end tests use a real SMTP server instead.
type hMailbox chan mailer.Message

func (b hMailbox) Send(ctx context.Context, m mailer.Message) error {
	select {
	case b <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newHandlerOnly builds a Service with a MemoryStore and a mailbox that
// holds up to 16 messages.
func newHandlerOnly(t *testing.T, cfg Config) *Service {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = NewMemoryStore(0)
	}
	if cfg.Tokens == nil {
		cfg.Tokens = testTokens(cfg.Store, "stepgate", cfg.Now)
	}
	if cfg.Sender == nil {
		cfg.Sender = make(hMailbox, 16)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

var hAlice = identity.Identity{Subject: "alice", Session: "s1", Emails: []string{"alice@example.com", "a.work@corp.example"}}

// browserReq is a request from a browser signed in as id (zero: anonymous).
func browserReq(method, target string, id identity.Identity, form url.Values) *http.Request {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, target, body)
	r.Header.Set("Accept", "text/html,application/xhtml+xml")
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	hSetID(r, id)
	return r
}

// apiReq is an API request with a JSON body (nil: none).
func apiReq(method, target string, id identity.Identity, body string) *http.Request {
	var b io.Reader
	if body != "" {
		b = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, b)
	r.Header.Set("Accept", "application/json")
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	hSetID(r, id)
	return r
}

func hSetID(r *http.Request, id identity.Identity) {
	if id.Subject == "" {
		return
	}
	r.Header.Set("X-Test-Sub", id.Subject)
	r.Header.Set("X-Test-Session", id.Session)
	if len(id.Emails) > 0 {
		r.Header.Set("X-Test-Emails", strings.Join(id.Emails, ","))
	}
}

func hServe(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var hCSRFRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfFrom(t *testing.T, body string) string {
	t.Helper()
	m := hCSRFRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf field in page:\n%s", body)
	}
	return m[1]
}

// checkSecureHeaders fails unless w carries every header SPEC §6 and
// STYLE 10 require on stepgate's own responses.
func checkSecureHeaders(t *testing.T, name string, w *httptest.ResponseRecorder) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": respond.CSP,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "same-origin",
		"Cache-Control":           "no-store",
	}
	for k, v := range want {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s: header %s = %q; want %q", name, k, got, v)
		}
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("%s: CSP %q must forbid framing and allow no script", name, csp)
	}
}

func TestRoutingWithoutCore(t *testing.T) {
	s := newHandlerOnly(t, hConfig())
	h := s.Handler()
	tests := []struct {
		name       string
		r          *http.Request
		wantStatus int
		wantIn     string // in the body
		wantHeader [2]string
	}{
		{"challenge page", browserReq("GET", hPrefix+"/challenge?rd=%2Fadmin", hAlice, nil), 200, `value="/admin"`, [2]string{}},
		{"challenge masks", browserReq("GET", hPrefix+"/challenge", hAlice, nil), 200, "a***k@corp.example", [2]string{}},
		{"challenge first checked", browserReq("GET", hPrefix+"/challenge", hAlice, nil), 200, `value="0" checked`, [2]string{}},
		{"challenge hides address", browserReq("GET", hPrefix+"/challenge", hAlice, nil), 200, "", [2]string{}},
		{"challenge cleans rd", browserReq("GET", hPrefix+"/challenge?rd=%2F%2Fevil.com", hAlice, nil), 200, `name="rd" value="/"`, [2]string{}},
		{"no address", browserReq("GET", hPrefix+"/challenge", identity.Identity{Subject: "bob", Session: "x"}, nil), 403, "No address for a code", [2]string{}},
		{"verify page without a code", browserReq("GET", hPrefix+"/verify?rd=%2Fadmin", hAlice, nil), 200, `There is no code waiting for you`, [2]string{}},
		{"style", browserReq("GET", hPrefix+"/style.css", identity.Identity{}, nil), 200, "prefers-color-scheme", [2]string{"Content-Type", "text/css; charset=utf-8"}},
		{"login redirect", browserReq("GET", hPrefix+"/challenge?rd=%2Fadmin", identity.Identity{}, nil), 302, "", [2]string{"Location", "/login?rd=" + url.QueryEscape(hPrefix+"/challenge?rd=%2Fadmin")}},
		{"anonymous post", browserReq("POST", hPrefix+"/send", identity.Identity{}, url.Values{"email": {"0"}}), 401, "Sign in first", [2]string{}},
		{"api anonymous", apiReq("GET", hPrefix+"/api/trigger", identity.Identity{}, ""), 401, `"error":"unauthenticated"`, [2]string{"WWW-Authenticate", `Bearer realm="stepgate"`}},
		{"api anonymous on page", apiReq("GET", hPrefix+"/challenge", identity.Identity{}, ""), 401, "unauthenticated", [2]string{"WWW-Authenticate", `Bearer realm="stepgate"`}},
		{"identity outage", func() *http.Request {
			r := browserReq("GET", hPrefix+"/challenge", hAlice, nil)
			r.Header.Set("X-Test-Broken", "1")
			return r
		}(), 503, "Try again shortly", [2]string{}},
		{"unknown path", browserReq("GET", hPrefix+"/nope", hAlice, nil), 404, "Not found", [2]string{}},
		{"unknown api path", apiReq("GET", hPrefix+"/api/nope", hAlice, ""), 404, `"error":"not_found"`, [2]string{}},
		{"outside prefix", browserReq("GET", "/admin", hAlice, nil), 404, "", [2]string{}},
		{"prefix lookalike", browserReq("GET", hPrefix+"x/challenge", hAlice, nil), 404, "", [2]string{}},
		{"dot segments", browserReq("GET", hPrefix+"/api/../challenge", hAlice, nil), 404, "", [2]string{}},
		{"double slash", browserReq("GET", hPrefix+"//challenge", hAlice, nil), 404, "", [2]string{}},
		{"wrong method", browserReq("DELETE", hPrefix+"/challenge", hAlice, nil), 405, "Method not allowed", [2]string{"Allow", "GET, HEAD"}},
		{"wrong method api", apiReq("GET", hPrefix+"/api/email-otp", hAlice, ""), 405, `"error":"method_not_allowed"`, [2]string{}},
		{"trigger", apiReq("GET", hPrefix+"/api/trigger", hAlice, ""), 200, `{"IsEmailOtpAuthenticatorVerified":true,"Emails":["a***@example.com","a***@corp.example"],"IsAuthenticatorVerified":false,"IsPasskeyVerified":false,"Methods":["email"]}`, [2]string{"Content-Type", "application/json"}},
		{"trigger no address", apiReq("GET", hPrefix+"/api/trigger", identity.Identity{Subject: "bob"}, ""), 200, `{"IsEmailOtpAuthenticatorVerified":false,"Emails":[],"IsAuthenticatorVerified":false,"IsPasskeyVerified":false,"Methods":[]}`, [2]string{}},
		{"api needs json", func() *http.Request {
			r := apiReq("POST", hPrefix+"/api/email-otp", hAlice, `{"index":0}`)
			r.Header.Set("Content-Type", "text/plain")
			return r
		}(), 415, "unsupported_media_type", [2]string{}},
		{"api form refused", func() *http.Request {
			r := apiReq("PUT", hPrefix+"/api/email-otp", hAlice, `otp=123456`)
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}(), 415, "unsupported_media_type", [2]string{}},
		{"api unknown field", apiReq("POST", hPrefix+"/api/email-otp", hAlice, `{"index":0,"to":"x@evil"}`), 400, "invalid_request", [2]string{}},
		{"api trailing data", apiReq("POST", hPrefix+"/api/email-otp", hAlice, `{"index":0}{"index":1}`), 400, "invalid_request", [2]string{}},
		{"api both fields", apiReq("POST", hPrefix+"/api/email-otp", hAlice, `{"index":0,"email":"alice@example.com"}`), 400, "invalid_request", [2]string{}},
		{"api foreign email", apiReq("POST", hPrefix+"/api/email-otp", hAlice, `{"email":"mallory@evil.example"}`), 400, "invalid_email", [2]string{}},
		{"api index out of range", apiReq("POST", hPrefix+"/api/email-otp", hAlice, `{"index":2}`), 400, "invalid_email", [2]string{}},
		{"api negative index", apiReq("POST", hPrefix+"/api/email-otp", hAlice, `{"index":-1}`), 400, "invalid_email", [2]string{}},
		{"api json too large", apiReq("PUT", hPrefix+"/api/email-otp", hAlice, `{"otp":"`+strings.Repeat("1", maxJSONBytes)+`"}`), 413, "too_large", [2]string{}},
		{"validate no token", apiReq("GET", hPrefix+"/api/validate", hAlice, ""), 401, `{"valid":false,"error":"missing_token"}`, [2]string{}},
		{"form too large", browserReq("POST", hPrefix+"/send", hAlice, url.Values{"email": {"0"}, "pad": {strings.Repeat("x", maxFormBytes)}}), 413, "Request too large", [2]string{}},
		{"send bad index", browserReq("POST", hPrefix+"/send", hAlice, url.Values{"email": {"7"}, "csrf": {csrfToken(s.h.csrfKey, hAlice)}}), 400, "Choose an address", [2]string{}},
		{"cross-site post", func() *http.Request {
			r := browserReq("POST", hPrefix+"/send", hAlice, url.Values{"email": {"7"}, "csrf": {csrfToken(s.h.csrfKey, hAlice)}})
			r.Header.Set("Sec-Fetch-Site", "cross-site")
			return r
		}(), 403, "another site", [2]string{}},
		{"foreign origin post", func() *http.Request {
			r := browserReq("POST", hPrefix+"/send", hAlice, url.Values{"email": {"7"}, "csrf": {csrfToken(s.h.csrfKey, hAlice)}})
			r.Header.Set("Origin", "https://evil.example")
			return r
		}(), 403, "another site", [2]string{}},
		{"null origin post", func() *http.Request {
			r := browserReq("POST", hPrefix+"/send", hAlice, url.Values{"email": {"7"}, "csrf": {csrfToken(s.h.csrfKey, hAlice)}})
			r.Header.Set("Origin", "null")
			return r
		}(), 403, "another site", [2]string{}},
		{"same origin post", func() *http.Request {
			r := browserReq("POST", hPrefix+"/send", hAlice, url.Values{"email": {"7"}, "csrf": {csrfToken(s.h.csrfKey, hAlice)}})
			r.Header.Set("Origin", "http://example.com")
			r.Header.Set("Sec-Fetch-Site", "same-origin")
			return r
		}(), 400, "Choose an address", [2]string{}},
		{"cross-site api put", func() *http.Request {
			r := apiReq("PUT", hPrefix+"/api/email-otp", hAlice, `{"otp":"123456"}`)
			r.Header.Set("Origin", "https://evil.example")
			return r
		}(), 403, "cross_origin", [2]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := hServe(h, tt.r)
			if w.Code != tt.wantStatus {
				t.Errorf("status = %d; want %d; body:\n%s", w.Code, tt.wantStatus, w.Body)
			}
			if tt.wantIn != "" && !strings.Contains(w.Body.String(), tt.wantIn) {
				t.Errorf("body does not contain %q:\n%s", tt.wantIn, w.Body)
			}
			if k := tt.wantHeader[0]; k != "" && w.Header().Get(k) != tt.wantHeader[1] {
				t.Errorf("header %s = %q; want %q", k, w.Header().Get(k), tt.wantHeader[1])
			}
			for _, full := range hAlice.Emails {
				if strings.Contains(w.Body.String(), full) {
					t.Errorf("body discloses the full address %q", full)
				}
			}
			checkSecureHeaders(t, tt.name, w)
		})
	}
}

func TestLoginWithoutURL(t *testing.T) {
	cfg := hConfig()
	cfg.LoginURL = ""
	s := newHandlerOnly(t, cfg)
	w := hServe(s.Handler(), browserReq("GET", hPrefix+"/challenge?rd=%2Fadmin", identity.Identity{}, nil))
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "Sign in first") {
		t.Errorf("got %d %q; want 401 and the sign-in page", w.Code, w.Body)
	}
	if loc := w.Header().Get("Location"); loc != "" {
		t.Errorf("got Location %q; want none", loc)
	}
}

// TestCSRF posts to /send with an invalid address index: a request whose
// token passes reaches the index check (400) without sending anything, one
// whose token fails stops at 403.
func TestCSRF(t *testing.T) {
	s := newHandlerOnly(t, hConfig())
	bob := identity.Identity{Subject: "bob", Session: "s1", Emails: []string{"bob@example.com"}}
	aliceOther := hAlice
	aliceOther.Session = "s2"
	// A subject/session split must not let ("alices","1") reuse ("hAlice","s1").
	shifted := identity.Identity{Subject: "alices", Session: "1", Emails: hAlice.Emails}
	// want is the status for /send, /verify and /logout: past the check,
	// /send refuses the index 99 (400), /verify finds no code (401) and
	// /logout succeeds (303).
	tests := []struct {
		name  string
		token string
		as    identity.Identity
		want  [3]int
	}{
		{"missing", "", hAlice, [3]int{403, 403, 403}},
		{"wrong", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", hAlice, [3]int{403, 403, 403}},
		{"truncated", csrfToken(s.h.csrfKey, hAlice)[:20], hAlice, [3]int{403, 403, 403}},
		{"other user's token", csrfToken(s.h.csrfKey, bob), hAlice, [3]int{403, 403, 403}},
		{"other session's token", csrfToken(s.h.csrfKey, aliceOther), hAlice, [3]int{403, 403, 403}},
		{"shifted boundary", csrfToken(s.h.csrfKey, hAlice), shifted, [3]int{403, 403, 403}},
		{"other secret", csrfToken(deriveKey([]byte("another secret of 32 bytes......"), csrfKeyLabel), hAlice), hAlice, [3]int{403, 403, 403}},
		{"right", csrfToken(s.h.csrfKey, hAlice), hAlice, [3]int{400, 401, 303}},
	}
	for _, tt := range tests {
		for i, path := range []string{"/send", "/verify", "/logout"} {
			form := url.Values{"email": {"99"}, "code": {"123456"}, "rd": {"/admin"}}
			if tt.token != "" {
				form.Set("csrf", tt.token)
			}
			w := hServe(s.Handler(), browserReq("POST", hPrefix+path, tt.as, form))
			if w.Code != tt.want[i] {
				t.Errorf("%s %s: got %d; want %d; body:\n%s", tt.name, path, w.Code, tt.want[i], w.Body)
			}
		}
	}
}

// TestCSRFPagesCarryToken checks that the token on a page is the one the
// POST handlers accept for that user, and differs between users.
func TestCSRFPagesCarryToken(t *testing.T) {
	s := newHandlerOnly(t, hConfig())
	w := hServe(s.Handler(), browserReq("GET", hPrefix+"/challenge", hAlice, nil))
	tok := csrfFrom(t, w.Body.String())
	if !csrfValid(s.h.csrfKey, hAlice, tok) {
		t.Errorf("token on hAlice's page %q is not valid for hAlice", tok)
	}
	bob := identity.Identity{Subject: "bob", Session: "s1", Emails: []string{"bob@example.com"}}
	wb := hServe(s.Handler(), browserReq("GET", hPrefix+"/challenge", bob, nil))
	if got := csrfFrom(t, wb.Body.String()); got == tok {
		t.Errorf("hAlice and bob got the same token %q", got)
	}
}

func TestMaskEmail(t *testing.T) {
	tests := []struct{ in, want string }{
		{"john@example.com", "j***n@example.com"},
		{"jane@example.com", "j***e@example.com"}, // told apart from john
		{"j@example.com", "j***@example.com"},
		{"jo@example.com", "j***@example.com"},
		{"élodie@example.fr", "é***e@example.fr"},
		{"a@b@example.com", "a***b@example.com"},
		{"@example.com", "***"},
		{"nobody", "***"},
		{"", "***"},
	}
	for _, tt := range tests {
		if got := maskEmail(tt.in); got != tt.want {
			t.Errorf("maskEmail(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestTemplatesOverride(t *testing.T) {
	cfg := hConfig()
	cfg.Templates = fstest.MapFS{"layout.html": {Data: []byte(`{{define "layout"}}x{{end}}`)}}
	s := &Service{cfg: cfg}
	if err := s.initHandler(); err == nil {
		t.Errorf("initHandler with missing pages: got nil error; want one")
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{{0, "1"}, {1500 * time.Millisecond, "2"}, {15 * time.Minute, "900"}}
	for _, tt := range tests {
		if got := retryAfter(tt.d); got != tt.want {
			t.Errorf("retryAfter(%v) = %q; want %q", tt.d, got, tt.want)
		}
	}
	for d, want := range map[time.Duration]string{
		time.Second: "1 second", 30 * time.Second: "30 seconds", time.Minute: "1 minute", time.Hour: "1 hour",
		90 * time.Second: "2 minutes", 15 * time.Minute: "15 minutes", 14*time.Minute + 37*time.Second: "15 minutes",
		2 * time.Hour: "2 hours",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q; want %q", d, got, want)
		}
	}
}
