package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestPagesBrowser walks every page a person meets at the challenge in a
// real headless chromium (challenge, verify, status, the throttle page and
// the lockout page), with limits short enough to reach each in seconds,
// and checks what each page says. With STEPGATE_PAGE_SCREENSHOTS=DIR it
// saves each page at desktop (1280x800) and phone (390x844) sizes; the
// checked-in ones are under docs/screenshots/.
func TestPagesBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tab := newChromium(t, ctx, 1280, 800)
	d := startDemoWith(t, func(c *Config) {
		c.OTP.ResendAfter = 0
		c.OTP.MaxSendsPerHour = 2
		c.OTP.MaxFailuresPerHour = 3
	})
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
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(steps, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	readCode := func() string {
		t.Helper()
		inbox, closeInbox := chromedp.NewContext(steps)
		defer closeInbox()
		err := chromedp.Do(inbox,
			chromedp.Navigate(d.base+"/.stepup/dev/inbox"),
			chromedp.WaitVisible(chromedp.CSS("#code-0")),
		)
		var code string
		if err == nil {
			code, err = chromedp.Run(inbox, chromedp.Value(chromedp.CSS("#code-0")))
		}
		if err != nil {
			t.Fatalf("read inbox: %v", err)
		}
		return code
	}
	// submit clicks a form's button and waits for the page it leads to.
	submit := func(what, sel string) {
		t.Helper()
		if _, err := chromedp.RunResponse(steps, chromedp.Click(chromedp.CSS(sel))); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	wrong := func(code string) string {
		if strings.HasPrefix(code, "0") {
			return "1" + code[1:]
		}
		return "0" + code[1:]
	}

	run("sign in",
		chromedp.Navigate(d.base+"/admin/users"),
		chromedp.WaitVisible(chromedp.CSS("#signin")),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS(`input[name="email"][value="1"]`)),
	)
	if h1 := text("main h1"); h1 != "Confirm it's you" {
		t.Errorf("challenge page: got h1 %q", h1)
	}
	pageShots(t, steps, "challenge")

	run("send code", chromedp.Click(chromedp.CSS(`form[action$="/send"] button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("#code")))
	if h1 := text("main h1"); h1 != "Enter your code" {
		t.Errorf("verify page: got h1 %q", h1)
	}
	pageShots(t, steps, "verify")

	code := readCode()
	run("verify", chromedp.SendKeys(chromedp.CSS("#code"), code),
		chromedp.Click(chromedp.CSS(`form[action$="/verify"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("section.received table")))
	run("status", chromedp.Navigate(d.base+"/.stepup/"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	if body := text("main"); !strings.Contains(body, "demo") {
		t.Errorf("status page: got %q; want the signed-in user", body)
	}
	pageShots(t, steps, "status")

	// A second code (the hourly limit is 2), then a third: throttled.
	run("second send", chromedp.Navigate(d.base+"/.stepup/challenge?rd=%2Fpayments"),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/send"] button[type="submit"]`)),
		chromedp.Click(chromedp.CSS(`form[action$="/send"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#code")))
	code = readCode()
	run("third send", chromedp.Navigate(d.base+"/.stepup/challenge?rd=%2Fpayments"),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/send"] button[type="submit"]`)))
	submit("third send", `form[action$="/send"] button[type="submit"]`)
	if h1 := text("main h1"); h1 != "Too many codes requested" {
		t.Errorf("throttle page: got h1 %q", h1)
	}
	pageShots(t, steps, "throttle")

	// Wrong codes until the hourly failure budget (3) is spent: locked.
	// (Today's main checks one more than the budget; issue 8 fixes that.)
	h1 := ""
	for i := 0; i < 4 && h1 != "Too many wrong codes"; i++ {
		run("wrong code", chromedp.Navigate(d.base+"/.stepup/verify?rd=%2Fpayments"),
			chromedp.WaitVisible(chromedp.CSS("#code")),
			chromedp.SendKeys(chromedp.CSS("#code"), wrong(code)))
		submit("wrong code", `form[action$="/verify"] button[type="submit"]`)
		h1 = text("main h1")
		if h1 != "Too many wrong codes" && !strings.Contains(text("main"), "not right") {
			t.Errorf("wrong code %d: got %q", i+1, text("main"))
		}
	}
	if h1 != "Too many wrong codes" {
		t.Errorf("lockout page: got h1 %q", h1)
	}
	pageShots(t, steps, "lockout")
}

// pageShots saves the current page at desktop and phone sizes when
// STEPGATE_PAGE_SCREENSHOTS names a directory, then restores the desktop
// size.
func pageShots(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("STEPGATE_PAGE_SCREENSHOTS")
	if dir == "" {
		return
	}
	for _, s := range []struct {
		label string
		w, h  int64
	}{{"phone", 390, 844}, {"desktop", 1280, 800}} {
		err := chromedp.Do(ctx, chromedp.EmulateViewport(s.w, s.h))
		var png []byte
		if err == nil {
			png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
		}
		if err != nil {
			t.Errorf("screenshot %s %s: %v", name, s.label, err)
			continue
		}
		path := filepath.Join(dir, name+"-"+s.label+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Errorf("screenshot: %v", err)
		}
	}
}
