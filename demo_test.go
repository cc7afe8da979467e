package main

import (
	"context"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/proctest"
)

// demoRun is a running `stepgate demo`.
type demoRun struct {
	base, admin string // http://host:port of the proxy and the admin server
	stdout      *proctest.Buffer
}

// startDemo runs `stepgate demo` on free loopback ports through runDemo,
// waits for its tour line and for /readyz, and stops it (checking that it
// stops cleanly) when the test ends.
func startDemo(t *testing.T) demoRun {
	t.Helper()
	return startDemoWith(t, nil)
}

// startDemoWith is startDemo with the demo's config changed by tweak (nil:
// exactly `stepgate demo`, through runDemo).
func startDemoWith(t *testing.T, tweak func(*Config)) demoRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &proctest.Buffer{}, &proctest.Buffer{}
	done := make(chan error, 1)
	go func() {
		if tweak == nil {
			done <- runDemo(ctx, []string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}, noEnv, stdout, stderr)
			return
		}
		logger := slog.New(slog.NewJSONHandler(stderr, nil))
		done <- serveDemo(ctx, "127.0.0.1:0", "127.0.0.1:0", logger, stdout, tweak)
	}()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("demo stopped with %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("demo did not stop after cancel")
			}
		})
	})

	running := regexp.MustCompile(`running on (http://127\.0\.0\.1:[0-9]+)/\n\(admin endpoints: (http://127\.0\.0\.1:[0-9]+)/metrics`)
	deadline := time.After(15 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if m := running.FindStringSubmatch(stdout.String()); m != nil {
			d := demoRun{base: m[1], admin: m[2], stdout: stdout}
			for {
				resp, err := http.Get(d.admin + "/readyz")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						return d
					}
				}
				select {
				case <-deadline:
					t.Fatalf("demo never ready: %v\n%s", err, stderr.String())
				case <-tick.C:
				}
			}
		}
		select {
		case err := <-done:
			t.Fatalf("demo ended early: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		case <-deadline:
			t.Fatalf("no start-up tour:\n%s\n%s", stdout.String(), stderr.String())
		case <-tick.C:
		}
	}
}

// browser is an HTTP client that acts like a browser (cookies, Accept:
// text/html) but does not follow redirects, so each hop can be checked.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowser(t *testing.T, base string) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, base: base, c: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends a request and returns status, Location and body.
func (b *browser) do(method, path string, form url.Values) (int, string, string, http.Header) {
	b.t.Helper()
	return b.doWith(method, path, form, nil)
}

// doWith is do with extra request headers.
func (b *browser) doWith(method, path string, form url.Values, extra http.Header) (int, string, string, http.Header) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		b.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(raw), resp.Header
}

// expect checks a response's status and, when want is set, its Location.
func (b *browser) expect(method, path string, form url.Values, status int, location string) string {
	b.t.Helper()
	got, loc, body, _ := b.do(method, path, form)
	if got != status {
		b.t.Fatalf("%s %s: got status %d; want %d\n%s", method, path, got, status, body)
	}
	if location != "" && loc != location {
		b.t.Fatalf("%s %s: got Location %q; want %q", method, path, loc, location)
	}
	return body
}

var (
	csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	inboxCode = regexp.MustCompile(`class="code" type="text" readonly value="([0-9]+)"`)
	inboxTo   = regexp.MustCompile(`<dd class="to">([^<]+)</dd>`)
)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf field in page:\n%s", page)
	}
	return html.UnescapeString(m[1])
}

// TestDemoStepUpFlow walks the demo's tour over HTTP: home, public area,
// login, the admin area's challenge, the code read from the dev inbox,
// and the admin page with the identity stepgate forwarded.
func TestDemoStepUpFlow(t *testing.T) {
	d := startDemo(t)
	if out := d.stdout.String(); !strings.Contains(out, d.base+"/.stepup/dev/inbox") {
		t.Errorf("tour does not point to the dev inbox:\n%s", out)
	}
	b := newBrowser(t, d.base)

	if body := b.expect("GET", "/", nil, http.StatusOK, ""); !strings.Contains(body, "Acme Legacy Portal") {
		t.Errorf("home page: got %q; want the sample app", body)
	}
	// allow: forwarded, and the app received no identity.
	if body := b.expect("GET", "/public", nil, http.StatusOK, ""); strings.Contains(body, "X-Stepup-User") {
		t.Errorf("/public without login: the app got an X-Stepup-User header:\n%s", body)
	}
	b.expect("GET", "/account", nil, http.StatusFound, "/login?rd=%2Faccount")
	b.expect("GET", "/admin", nil, http.StatusFound, "/login?rd=%2Fadmin")
	if body := b.expect("GET", "/login?rd=%2Fadmin", nil, http.StatusOK, ""); !strings.Contains(body, `name="rd" value="/admin"`) {
		t.Errorf("login page does not carry rd=/admin:\n%s", body)
	}
	// The login's rd is cleaned: another origin becomes "/".
	b.expect("POST", "/login", url.Values{"rd": {"//evil.example/x"}}, http.StatusSeeOther, "/")
	// A form posted from another site must not sign the browser in.
	if got, _, _, hdr := b.doWith("POST", "/login", url.Values{"rd": {"/admin"}}, http.Header{"Origin": {"http://evil.example"}}); got != http.StatusForbidden || hdr.Get("Set-Cookie") != "" {
		t.Errorf("cross-origin login: got %d, Set-Cookie %q; want 403 without a cookie", got, hdr.Get("Set-Cookie"))
	}
	if got, loc, _, _ := b.doWith("POST", "/login", url.Values{"rd": {"/admin"}}, http.Header{"Origin": {d.base}}); got != http.StatusSeeOther || loc != "/admin" {
		t.Errorf("same-origin login: got %d to %q; want 303 to /admin", got, loc)
	}

	if body := b.expect("GET", "/account", nil, http.StatusOK, ""); !strings.Contains(body, "<th scope=\"row\">X-Stepup-User</th><td>demo</td>") {
		t.Errorf("/account after login: X-Stepup-User demo not shown:\n%s", body)
	}
	b.expect("GET", "/admin", nil, http.StatusFound, "/.stepup/challenge?rd=%2Fadmin")

	page := b.expect("GET", "/.stepup/challenge?rd=%2Fadmin", nil, http.StatusOK, "")
	for _, masked := range []string{"d***o@example.com", "d***p@example.org"} {
		if !strings.Contains(page, masked) {
			t.Errorf("challenge page lacks %q:\n%s", masked, page)
		}
	}
	if strings.Contains(page, "demo.backup@example.org") {
		t.Errorf("challenge page shows an address unmasked")
	}
	b.expect("POST", "/.stepup/send", url.Values{"email": {"1"}, "rd": {"/admin"}, "csrf": {csrfOf(t, page)}}, http.StatusSeeOther, "/.stepup/verify?rd=%2Fadmin")
	verify := b.expect("GET", "/.stepup/verify?rd=%2Fadmin", nil, http.StatusOK, "")

	// The code, read from the dev inbox over HTTP like a person would.
	_, _, inbox, hdr := b.do("GET", "/.stepup/dev/inbox", nil)
	if got := hdr.Get("Cache-Control"); got != "no-store" {
		t.Errorf("inbox Cache-Control: got %q; want no-store", got)
	}
	if got := hdr.Get("Content-Security-Policy"); !strings.Contains(got, "default-src 'none'") {
		t.Errorf("inbox CSP: got %q; want the strict stepgate CSP", got)
	}
	code := inboxCode.FindStringSubmatch(inbox)
	to := inboxTo.FindStringSubmatch(inbox)
	if code == nil || to == nil {
		t.Fatalf("no code in the inbox:\n%s", inbox)
	}
	if to[1] != "demo.backup@example.org" {
		t.Errorf("code sent to %q; want the chosen address demo.backup@example.org", to[1])
	}

	b.expect("POST", "/.stepup/verify", url.Values{"code": {code[1]}, "rd": {"/admin"}, "csrf": {csrfOf(t, verify)}}, http.StatusSeeOther, "/admin")
	admin := b.expect("GET", "/admin", nil, http.StatusOK, "")
	for _, want := range []string{
		"<h1>Admin area</h1>",
		"<th scope=\"row\">X-Stepup-User</th><td>demo</td>",
		"<th scope=\"row\">X-Stepup-Rule</th><td>admin</td>",
		"<th scope=\"row\">X-Stepup-Email</th><td>demo@example.com</td>",
		"<th scope=\"row\">X-Stepup-Auth-Time</th>",
	} {
		if !strings.Contains(admin, want) {
			t.Errorf("/admin after step-up lacks %q:\n%s", want, admin)
		}
	}
	// The fresh second factor also satisfies payments' 2-minute max_age.
	if body := b.expect("GET", "/payments", nil, http.StatusOK, ""); !strings.Contains(body, "<th scope=\"row\">X-Stepup-Rule</th><td>payments</td>") {
		t.Errorf("/payments after step-up: rule payments not shown:\n%s", body)
	}
	// The inbox still shows the code, but it is single use.
	if got, loc, _, _ := b.do("POST", "/.stepup/verify", url.Values{"code": {code[1]}, "rd": {"/admin"}, "csrf": {csrfOf(t, verify)}}); got == http.StatusSeeOther {
		t.Errorf("reused code: got 303 to %q; want it refused", loc)
	}

	// An anonymous visitor still reaches /public but not /admin.
	anon := newBrowser(t, d.base)
	anon.expect("GET", "/public", nil, http.StatusOK, "")
	anon.expect("GET", "/admin/users", nil, http.StatusFound, "/login?rd=%2Fadmin%2Fusers")
}

// TestDemoInboxOnlyAtItsPath checks that the demo mounts exactly
// {prefix}/dev/inbox, for GET only, and leaves every other spelling to the
// gate.
// TestDemoServerLikeServe checks that the demo's proxy listener is serve's
// server: `OPTIONS *` refused by the gate, not answered by net/http.
func TestDemoServerLikeServe(t *testing.T) {
	d := startDemo(t)
	assertOptionsStarRefused(t, strings.TrimPrefix(d.base, "http://"))
}

func TestDemoInboxOnlyAtItsPath(t *testing.T) {
	d := startDemo(t)
	b := newBrowser(t, d.base)
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/.stepup/dev/inbox", http.StatusOK},
		{"HEAD", "/.stepup/dev/inbox", http.StatusOK},
		{"POST", "/.stepup/dev/inbox", http.StatusMethodNotAllowed},
		{"GET", "/.stepup/dev/inbox/", http.StatusNotFound},
		{"GET", "/.stepup/dev", http.StatusNotFound},
		{"GET", "/.stepup/dev/inbox2", http.StatusNotFound},
	}
	for _, tc := range tests {
		got, _, body, _ := b.do(tc.method, tc.path, nil)
		if got != tc.want {
			t.Errorf("%s %s: got %d; want %d", tc.method, tc.path, got, tc.want)
		}
		if tc.want != http.StatusOK && strings.Contains(body, "Dev inbox") {
			t.Errorf("%s %s: got the inbox page; want the gate's answer", tc.method, tc.path)
		}
	}
}

// TestDemoInboxNotInServe checks that the gate `serve` builds, from the
// very config the demo uses, has no dev inbox: the page only exists where
// serveDemo mounts it.
func TestDemoInboxNotInServe(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("upstream reached for %s", r.URL)
	}))
	defer upstream.Close()
	cfg, err := demoConfig("127.0.0.1:0", "127.0.0.1:0", upstream.URL, randomSecret(), randomSecret(), filepath.Join(t.TempDir(), "f.db"))
	if err != nil {
		t.Fatalf("demoConfig: %v", err)
	}
	logger := slog.New(slog.DiscardHandler)
	shared, err := newSharedParts(cfg, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	gate, err := buildGate(cfg, shared)
	if err != nil {
		t.Fatal(err)
	}
	for _, accept := range []string{"text/html", "application/json"} {
		req := httptest.NewRequest("GET", "/.stepup/dev/inbox", nil)
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		gate.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "Dev inbox") {
			t.Errorf("serve gate, Accept %s: got %d %q; want 404 without the inbox", accept, rec.Code, rec.Body.String())
		}
	}
}

// TestDemoConfigValid checks the demo's config passes the same validation
// as a file, with the policy the tour describes.
func TestDemoConfigValid(t *testing.T) {
	cfg, err := demoConfig("127.0.0.1:8080", "127.0.0.1:9090", "http://127.0.0.1:3000", randomSecret(), randomSecret(), "/nonexistent/f.db")
	if err != nil {
		t.Fatalf("demoConfig: %v", err)
	}
	if got := cfg.SecondFactor.Cookie; strings.HasPrefix(got, "__Host-") {
		t.Errorf("cookie: got %q; want a name without __Host- on http", got)
	}
	if got, want := cfg.OTP.TTL, 5*time.Minute; got != want {
		t.Errorf("otp.ttl: got %v; want the SPEC default %v", got, want)
	}
	if a, b := randomSecret(), randomSecret(); a == b || len(a) != 64 {
		t.Errorf("randomSecret: got %q and %q; want two different 64-hex-digit secrets", a, b)
	}
	if _, err := demoConfig("127.0.0.1:8080", "127.0.0.1:9090", "http://127.0.0.1:3000", "short", randomSecret(), "/nonexistent/f.db"); err == nil {
		t.Errorf("demoConfig with a short HMAC secret: got no error; want validation to refuse it")
	}
}

// TestDemoListenLoopbackOnly checks that the demo, whose inbox shows every
// code, refuses to listen where other machines could reach it.
func TestDemoListenLoopbackOnly(t *testing.T) {
	tests := []struct {
		args []string
		ok   bool
	}{
		{[]string{"-listen", "0.0.0.0:0"}, false},
		{[]string{"-listen", ":0"}, false},
		{[]string{"-listen", "192.0.2.1:8080"}, false},
		{[]string{"-admin-listen", "[::]:0", "-listen", "127.0.0.1:0"}, false},
		{[]string{"-listen", "nonsense"}, false},
		{[]string{"extra"}, false},
	}
	for _, tc := range tests {
		err := runDemo(context.Background(), tc.args, noEnv, io.Discard, io.Discard)
		if (err == nil) != tc.ok {
			t.Errorf("runDemo %q: got error %v; want ok=%v", tc.args, err, tc.ok)
		}
	}
	for _, addr := range []string{"127.0.0.1:8080", "[::1]:0", "localhost:8080", "127.0.0.2:1"} {
		if err := checkLoopback(addr); err != nil {
			t.Errorf("checkLoopback(%q): got %v; want nil", addr, err)
		}
	}
}
