package main

import (
	"context"
	"encoding/base32"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stepgate/stepgate/factors/totp"
)

// TestTOTPBrowser drives the demo in a real headless chromium: the
// totp-only Vault refuses an email-only user and points to the factors
// page; an email code makes the second factor fresh; the factors page adds
// an authenticator app from the QR page (the QR image loads under the
// page's CSP; the code is computed from the secret the page shows, as an
// app would); then the Vault's challenge offers only the authenticator
// form, and a TOTP code opens it with X-Stepup-Method: totp.
func TestTOTPBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tab := newChromium(t, ctx, 1280, 900)
	d := startDemo(t)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	steps, cancelSteps := context.WithTimeout(tab, 75*time.Second)
	defer cancelSteps()
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(steps, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(steps, chromedp.Location())
		if err != nil {
			t.Fatalf("location: %v", err)
		}
		return loc
	}

	// Sign in on the way to the Vault: no allowed factor yet.
	if err := chromedp.Do(steps,
		chromedp.Navigate(d.base+"/vault"),
		chromedp.WaitVisible(chromedp.CSS("#signin")),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS(`main a[href="/.stepup/factors"]`)),
		landed("/.stepup/challenge"), // before the next Navigate
	); err != nil {
		t.Fatalf("login to /vault: %v", err)
	}
	if body := text("main"); !strings.Contains(body, "Add an authenticator app first") || strings.Contains(body, "Send code") {
		t.Fatalf("vault challenge without TOTP: %q; want the page pointing to the factors page, no email form", body)
	}

	// An email code for the factors page (fresh second factor).
	if err := chromedp.Do(steps,
		chromedp.Navigate(d.base+"/.stepup/challenge?rd=%2F.stepup%2Ffactors"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="email"]`)),
		chromedp.Click(chromedp.CSS(`form[action="/.stepup/send"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#code")),
	); err != nil {
		t.Fatalf("send code: %v", err)
	}
	inboxTab, closeInbox := chromedp.NewContext(steps)
	var code string
	err := chromedp.Do(inboxTab,
		chromedp.Navigate(d.base+"/.stepup/dev/inbox"),
		chromedp.WaitVisible(chromedp.CSS("#code-0")),
	)
	if err == nil {
		code, err = chromedp.Run(inboxTab, chromedp.Value(chromedp.CSS("#code-0")))
	}
	closeInbox()
	if err != nil {
		t.Fatalf("read inbox: %v", err)
	}
	if err := chromedp.Do(steps,
		chromedp.SendKeys(chromedp.CSS("#code"), code),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#name")),
	); err != nil {
		t.Fatalf("verify email code: %v", err)
	}

	// Add an authenticator app from the QR page.
	if err := chromedp.Do(steps,
		chromedp.SendKeys(chromedp.CSS("#name"), "Test phone"),
		chromedp.Click(chromedp.CSS(`form[action="/.stepup/factors/totp"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#totp-secret")),
	); err != nil {
		t.Fatalf("start enrolment: %v", err)
	}
	qrWidth, err := chromedp.Run(steps, chromedp.Poll[int](`(() => { const i = document.querySelector('img'); return i && i.complete && i.naturalWidth > 0 ? i.naturalWidth : 0 })()`, chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil || qrWidth < 100 {
		t.Fatalf("QR image did not load (CSP?): width %d, %v", qrWidth, err)
	}
	secretB32 := text("#totp-secret")
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secretB32)
	if err != nil {
		t.Fatalf("secret %q on the page: %v", secretB32, err)
	}
	step := totp.Step(time.Now(), totp.Default)
	first, _ := totp.Code(secret, step, totp.Default)
	if err := chromedp.Do(steps,
		chromedp.SendKeys(chromedp.CSS("#code"), first),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("table")),
		landed("/.stepup/factors"), // before the next Navigate
	); err != nil {
		t.Fatalf("confirm enrolment: %v", err)
	}
	if body := text("main"); !strings.Contains(body, "Your authenticator app was added") || !strings.Contains(body, "Test phone") {
		t.Fatalf("factors page after adding: %q", body)
	}

	// The Vault now offers the authenticator form only. The step used to
	// confirm is spent; the next one is within the ±1 step window.
	if err := chromedp.Do(steps,
		chromedp.Navigate(d.base+"/vault"),
		chromedp.WaitVisible(chromedp.CSS("#totp-code")),
	); err != nil {
		t.Fatalf("vault challenge: %v", err)
	}
	if body := text("main"); strings.Contains(body, "Send code") {
		t.Fatalf("vault challenge offers email: %q", body)
	}
	next, _ := totp.Code(secret, max(step, totp.Step(time.Now(), totp.Default))+1, totp.Default)
	if err := chromedp.Do(steps,
		chromedp.SendKeys(chromedp.CSS("#totp-code"), next),
		chromedp.Click(chromedp.CSS(`form[action="/.stepup/totp"] button`)),
		chromedp.WaitVisible(chromedp.CSS("section.received table")),
	); err != nil {
		t.Fatalf("step up with TOTP: %v", err)
	}
	if got := location(); got != d.base+"/vault" {
		t.Errorf("after TOTP: %q; want /vault", got)
	}
	if body := text("main"); !strings.Contains(body, "X-Stepup-Method\ttotp") {
		t.Errorf("vault page: %q; want X-Stepup-Method totp among the headers received", body)
	}
}
