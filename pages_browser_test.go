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
		c.OTP.ResendAfter = 0 // the hourly limit throttles instead
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
		landed("/.stepup/challenge"), // before the next click's navigation
	)
	if h1 := text("main h1"); h1 != "Confirm it's you" {
		t.Errorf("challenge page: got h1 %q", h1)
	}
	// Item 8: first and last letter, so the two addresses differ.
	if got := text("main"); !strings.Contains(got, "d***o@example.com") || !strings.Contains(got, "d***p@example.org") {
		t.Errorf("challenge page: got %q; want d***o@example.com and d***p@example.org", got)
	}
	everyPage := func(name string) {
		t.Helper()
		// Item 6 and 7: who is signed in, the site's name, a way back;
		// stepgate only in the footer.
		if got := text("header.site"); !strings.Contains(got, "Signed in as demo (d***o@example.com)") || !strings.Contains(got, "Acme Legacy Portal") {
			t.Errorf("%s: header %q; want the site's name and who is signed in", name, got)
		}
		if got := text("p.back a"); got == "" {
			t.Errorf("%s: no way back", name)
		}
		title, err := chromedp.Run(steps, chromedp.Title())
		if err != nil || !strings.HasSuffix(title, " · Acme Legacy Portal") {
			t.Errorf("%s: title %q; want it to end with the site's name", name, title)
		}
		if strings.Contains(text("main"), "stepgate") {
			t.Errorf("%s: main names stepgate", name)
		}
	}
	everyPage("challenge")
	// Item 8: radios sit level with their labels (centres within 2px).
	offset, err := chromedp.Run(steps, chromedp.Evaluate[float64](`(() => { const i = document.querySelector('#email-0').getBoundingClientRect(), l = document.querySelector('label[for="email-0"]').getBoundingClientRect(); return Math.abs((i.top + i.bottom) / 2 - (l.top + l.bottom) / 2); })()`))
	if err != nil || offset > 2 {
		t.Errorf("radio and label centres differ by %vpx (%v); want at most 2", offset, err)
	}
	pageShots(t, steps, "challenge")

	submit("send code", `form[action$="/send"] button[type="submit"]`)
	if h1 := text("main h1"); h1 != "Enter your code" {
		t.Errorf("verify page: got h1 %q", h1)
	}
	// Item 2: digits, where, until when in the named zone, and relative.
	if got := text("main"); !strings.Contains(got, "We sent a 6-digit code to d***o@example.com. It works until ") || !strings.Contains(got, " UTC (in 5 minutes)") {
		t.Errorf("verify page: got %q; want digit count, masked address, expiry in UTC and relative", got)
	}
	everyPage("verify")
	pageShots(t, steps, "verify")

	// Item 1: the mail's indented line pasted whole, with a space inside.
	code := readCode()
	pasted := "    " + code[:3] + " " + code[3:] + " "
	run("type code", chromedp.SendKeys(chromedp.CSS("#code"), pasted))
	if typed, err := chromedp.Run(steps, chromedp.Value(chromedp.CSS("#code"))); err != nil || typed != pasted {
		t.Errorf("code field holds %q (%v); want all of %q (no maxlength cut)", typed, err, pasted)
	}
	submit("verify", `form[action$="/verify"] button[type="submit"]`)
	run("admin page", chromedp.WaitVisible(chromedp.CSS("section.received table")))
	run("status", chromedp.Navigate(d.base+"/.stepup/"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	// Item 4: per rule, how long the confirmation still counts.
	if got := text("ul.areas"); !strings.Contains(got, "admin (asks every 10 minutes): confirmed until ") || !strings.Contains(got, "payments (asks every 2 minutes): confirmed until ") {
		t.Errorf("status page areas: got %q", got)
	}
	everyPage("status")
	pageShots(t, steps, "status")
	// Item 6: the removal is confirmed.
	submit("remove", `form[action$="/logout"] button[type="submit"]`)
	if got := text("main"); !strings.Contains(got, "Second step removed.") || !strings.Contains(got, "Not confirmed") {
		t.Errorf("after removal: got %q; want the confirmation", got)
	}

	// A second code (the hourly limit is 2), then a third: the user stays
	// on the code page with a message (item 3), not on a dead end.
	run("second send", chromedp.Navigate(d.base+"/.stepup/challenge?rd=%2Fpayments"),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/send"] button[type="submit"]`)))
	submit("second send", `form[action$="/send"] button[type="submit"]`)
	code = readCode()
	run("third send", chromedp.Navigate(d.base+"/.stepup/challenge?rd=%2Fpayments"),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/send"] button[type="submit"]`)))
	submit("third send", `form[action$="/send"] button[type="submit"]`)
	if got := text("main"); !strings.Contains(got, "A code was sent a moment ago; enter it below.") {
		t.Errorf("throttled send: got %q; want the code page with a message", got)
	}
	run("code field", chromedp.WaitVisible(chromedp.CSS("#code")))
	if links, err := chromedp.Run(steps, chromedp.Evaluate[int](`document.querySelectorAll('a[href*="/challenge"]').length`)); err != nil || links != 0 {
		t.Errorf("throttled code page: %d links to send a new code (%v); want none until the limit passes", links, err)
	}
	pageShots(t, steps, "throttle")

	// Wrong codes until the hourly failure budget (3) is spent: locked,
	// with a warning on the way (item 5).
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
	// The 3 failures are seconds old: locked until the first leaves the
	// hour, longer than the 15m lockout (README: N means N).
	if got := text("main"); !strings.Contains(got, "You can try again at ") || !strings.Contains(got, " UTC (in 60 minutes)") || strings.Contains(got, "Send code") {
		t.Errorf("lockout page: got %q; want the unlock time and no send button", got)
	}
	everyPage("lockout")
	pageShots(t, steps, "lockout")

	// Item 8: the dev inbox with a whole message open fits a phone.
	run("inbox", chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(d.base+"/.stepup/dev/inbox"),
		chromedp.WaitVisible(chromedp.CSS("details summary")),
		chromedp.Click(chromedp.CSS("details summary")))
	if width, err := chromedp.Run(steps, chromedp.Evaluate[float64](`document.documentElement.scrollWidth`)); err != nil || width > 390 {
		t.Errorf("inbox on a phone: %vpx wide (%v); want at most 390", width, err)
	}
	pageShots(t, steps, "inbox")
}

// TestPagesBrowserResendWait: with otp.resend_after, the code page says
// when a new code may be asked for instead of offering a button that
// would fail, and asking anyway keeps the user on the code page.
func TestPagesBrowserResendWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tab := newChromium(t, ctx, 1280, 800)
	d := startDemoWith(t, nil)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	steps, cancelSteps := context.WithTimeout(tab, 45*time.Second)
	defer cancelSteps()
	if err := chromedp.Do(steps,
		chromedp.Navigate(d.base+"/admin/users"),
		chromedp.WaitVisible(chromedp.CSS("#signin")),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/send"] button`)),
		landed("/.stepup/challenge"), // before the next click's navigation
	); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.RunResponse(steps, chromedp.Click(chromedp.CSS(`form[action$="/send"] button`))); err != nil {
		t.Fatal(err)
	}
	main, err := chromedp.Run(steps, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(main, "Didn't get it? You can ask for a new code at ") || !strings.Contains(main, "(in 30 seconds)") {
		t.Errorf("verify page: got %q; want when a new code may be asked for", main)
	}
	if links, err := chromedp.Run(steps, chromedp.Evaluate[int](`document.querySelectorAll('a[href*="/challenge"]').length`)); err != nil || links != 0 {
		t.Errorf("verify page: %d links to send a new code (%v); want none during the wait", links, err)
	}
	// Asking anyway (the back button, a bookmark): still the code page.
	if err := chromedp.Do(steps, chromedp.Navigate(d.base+"/.stepup/challenge?rd=%2Fadmin%2Fusers"),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/send"] button`))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.RunResponse(steps, chromedp.Click(chromedp.CSS(`form[action$="/send"] button`))); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(steps, chromedp.WaitVisible(chromedp.CSS("#code"))); err != nil {
		t.Fatalf("after a throttled send: %v", err)
	}
	if main, err = chromedp.Run(steps, chromedp.Text(chromedp.CSS("main"))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(main, "A code was sent a moment ago; enter it below. You can ask for another in ") {
		t.Errorf("throttled send: got %q; want the code page with a message", main)
	}
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
