package challenge

import (
	"bytes"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/secondfactor"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// lockedErr and throttledErr are the two refusals the locked page shows.
var (
	lockedErr    = &LimitError{RetryAfter: 15 * time.Minute, Err: ErrLocked}
	throttledErr = &LimitError{RetryAfter: 30 * time.Second, Err: ErrThrottled}
)

// TestGoldenPages renders each page with fixed data and compares it with
// testdata/golden/NAME.html; run `go test ./challenge/ -run Golden -update`
// after an intended change and review the diff.
func TestGoldenPages(t *testing.T) {
	s := newHandlerOnly(t, hConfig())
	f := formData{CSRF: csrfToken(s.h.csrfKey, hAlice), RD: "/admin?x=1"}
	at := time.Date(2026, 3, 4, 9, 30, 0, 0, time.UTC)
	g := secondfactor.Grant{Subject: "alice", AuthTime: at, ExpiresAt: at.Add(12 * time.Hour)}
	s.h.now = func() time.Time { return at.Add(3 * time.Minute) }
	s.cfg.Areas = []Area{{Rule: "admin", MaxAge: 10 * time.Minute}, {Rule: "payments", MaxAge: 2 * time.Minute}}
	verify := verifyData{formData: f, SentTo: "a***e@example.com", CodeLength: 6, MaxLength: maxCodeInput,
		ExpiresAt: "09:35 UTC", ExpiresIn: "in 5 minutes", ResendAt: "09:31 UTC", ResendIn: "in 30 seconds"}
	lockedE, throttledE := errorFor(opVerify, lockedErr), errorFor(opSend, throttledErr)
	pages := []struct {
		name   string
		status int
		page   string
		data   respond.PageData
	}{
		{"challenge", 200, "challenge", withUser(s, challengePage(f, hAlice.Emails))},
		{"challenge_no_address", 403, "challenge", withUser(s, challengePage(f, nil))},
		{"verify", 200, "verify", s.page(hAlice, "Enter your code", "", verify)},
		{"verify_attempts_left", 401, "verify", s.page(hAlice, "Enter your code", "", withErr(verify, attemptsLeftMessage(2), true))},
		{"verify_dead", 401, "verify", s.page(hAlice, "Enter your code", "", verifyData{formData: f, CodeLength: 6, MaxLength: maxCodeInput, Error: deadCodeMessage, Dead: true})},
		{"verify_killed", 401, "verify", s.page(hAlice, "Enter your code", "", verifyData{formData: f, CodeLength: 6, MaxLength: maxCodeInput, Error: killedCodeMessage, Dead: true})},
		{"verify_throttled", 429, "verify", s.page(hAlice, "Enter your code", "", withNotice(verify, "A code was sent a moment ago; enter it below. You can ask for another in 30 seconds."))},
		{"status_with_factor", 200, "status", s.statusPage(f, hAlice, g, true)},
		{"status_without_factor", 200, "status", s.statusPage(f, hAlice, secondfactor.Grant{}, false)},
		{"locked", 429, "locked", s.page(hAlice, lockedE.Title, lockedE.Msg, lockedData{Wait: "15 minutes", Until: "09:48 UTC", RD: f.RD, Locked: true})},
		{"throttled", 429, "locked", s.page(hAlice, throttledE.Title, throttledE.Msg, lockedData{Wait: "30 seconds", Until: "09:33 UTC", RD: f.RD, Pending: true})},
		{"error", 404, "error", respond.PageData{Title: "Not found", Message: "There is nothing at this address.",
			Link: &respond.Link{URL: hPrefix + "/", Text: "Your sign-in status"}}},
	}
	for _, p := range pages {
		t.Run(p.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			s.h.pages.Render(w, p.status, p.page, p.data)
			if w.Code != p.status {
				t.Fatalf("status = %d; want %d", w.Code, p.status)
			}
			checkSecureHeaders(t, p.name, w)
			checkPage(t, w.Body.String())
			file := filepath.Join("testdata", "golden", p.name+".html")
			if *update {
				if err := os.WriteFile(file, w.Body.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(w.Body.Bytes(), want) {
				t.Errorf("%s differs from the golden file; got:\n%s\nwant:\n%s", file, w.Body, want)
			}
		})
	}
}

func withUser(s *Service, p respond.PageData) respond.PageData {
	shared := s.page(hAlice, "", "", nil)
	p.User, p.Back = shared.User, shared.Back
	return p
}

func withErr(d verifyData, msg string, warn bool) verifyData {
	d.Error, d.Warn = msg, warn
	return d
}

func withNotice(d verifyData, msg string) verifyData {
	d.Notice = msg
	return d
}

// checkPage asserts what every page must be: a language, no script, no
// external asset, forms that post with a CSRF token, labelled inputs.
func checkPage(t *testing.T, body string) {
	t.Helper()
	for _, bad := range []string{"<script", "javascript:", "http://", "https://", " on"} {
		if bad == " on" {
			// Inline event handlers (onclick=) would need script-src.
			for _, attr := range []string{"onclick", "onload", "onsubmit", "onerror"} {
				if strings.Contains(body, attr+"=") {
					t.Errorf("page has an inline handler %s", attr)
				}
			}
			continue
		}
		if strings.Contains(body, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if !strings.Contains(body, `<html lang="en">`) || !strings.Contains(body, `name="viewport"`) {
		t.Errorf("page lacks lang or viewport")
	}
	forms := strings.Count(body, "<form")
	if forms != strings.Count(body, `method="post"`) || forms != strings.Count(body, `name="csrf"`) {
		t.Errorf("every form must post with a csrf field: %d forms", forms)
	}
	for _, id := range []string{"code", "email-0"} {
		if strings.Contains(body, `id="`+id+`"`) && !strings.Contains(body, `<label for="`+id+`"`) {
			t.Errorf("input %s has no label", id)
		}
	}
}

// TestPagesThroughHandler checks that the handlers render the pages the
// golden files pin, with the identity's own data.
func TestPagesThroughHandler(t *testing.T) {
	s := newHandlerOnly(t, hConfig())
	for _, tt := range []struct {
		target string
		id     identity.Identity
		want   []string
	}{
		{hPrefix + "/", hAlice, []string{"Not confirmed", "alice@example.com", "<dd>alice</dd>"}},
		{hPrefix, hAlice, []string{"Not confirmed"}},
		{hPrefix + "/verify?rd=%2Fpay", hAlice, []string{`href="/.stepup/challenge?rd=%2fpay"`, "There is no code waiting for you", "Signed in as <strong>alice (a***e@example.com)</strong>"}},
	} {
		w := hServe(s.Handler(), browserReq(http.MethodGet, tt.target, tt.id, nil))
		if w.Code != http.StatusOK {
			t.Errorf("GET %s: status %d; want 200", tt.target, w.Code)
		}
		for _, want := range tt.want {
			if !strings.Contains(w.Body.String(), want) {
				t.Errorf("GET %s: body lacks %q:\n%s", tt.target, want, w.Body)
			}
		}
		checkPage(t, w.Body.String())
	}
}
