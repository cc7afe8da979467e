package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's chromium. Missing, the browser test skips
// loudly, or fails when STEPGATE_REQUIRE_CHROMIUM=1.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := "!!! SKIPPING THE REAL-BROWSER DEMO TEST: chromium not found (/usr/bin/chromium or on PATH). Install it (apt-get install chromium) or set STEPGATE_REQUIRE_CHROMIUM=1 to make this a failure. !!!"
	if os.Getenv("STEPGATE_REQUIRE_CHROMIUM") == "1" {
		t.Fatal(strings.Replace(msg, "SKIPPING", "FAILING", 1))
	}
	t.Skip(msg)
	return ""
}

// newChromium starts a headless chromium with a fresh profile and a window
// of w x h pixels, and returns a tab's context.
func newChromium(t *testing.T, ctx context.Context, w, h int) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(w, h),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	return tab
}

// TestDemoBrowser walks the demo tour in a real headless chromium: demo
// login, a protected page, the challenge page (an address picked, a code
// sent), the code read from the dev inbox in a second tab, typed into the
// verify page, and the protected page reached. On failure it saves a
// screenshot and logs its path.
//
// With STEPGATE_DEMO_SCREENSHOTS=DIR it also saves the challenge, verify,
// inbox and protected pages at phone (390x844) and desktop widths, for
// people to look at.
func TestDemoBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tab := newChromium(t, ctx, 1280, 900)
	d := startDemo(t)

	// The first Run starts the browser and binds it to tab's life (the
	// 60-second ctx); later steps get 45 seconds, so a failure screenshot
	// still has time.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	steps, cancelSteps := context.WithTimeout(tab, 45*time.Second)
	defer cancelSteps()
	defer func() {
		if !t.Failed() {
			return
		}
		png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("no failure screenshot: %v", err)
			return
		}
		path := filepath.Join(os.TempDir(), fmt.Sprintf("stepgate-demo-browser-%d.png", time.Now().UnixNano()))
		if err := os.WriteFile(path, png, 0o600); err != nil {
			t.Logf("no failure screenshot: %v", err)
			return
		}
		t.Logf("failure screenshot: %s", path)
	}()
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(steps, chromedp.Location())
		if err != nil {
			t.Fatalf("location: %v", err)
		}
		return loc
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(steps, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}

	// Not signed in: stepgate sends the browser to the demo login.
	if err := chromedp.Do(steps,
		chromedp.Navigate(d.base+"/admin/users"),
		chromedp.WaitVisible(chromedp.CSS("#signin")),
	); err != nil {
		t.Fatalf("open /admin/users: %v", err)
	}
	if got, want := location(), d.base+"/login?rd=%2Fadmin%2Fusers"; got != want {
		t.Errorf("before login: got %q; want %q", got, want)
	}

	// Signed in, no second factor: the challenge page.
	if err := chromedp.Do(steps,
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS(`input[name="email"][value="1"]`)),
	); err != nil {
		t.Fatalf("login: %v", err)
	}
	if got, want := location(), d.base+"/.stepup/challenge?rd=%2Fadmin%2Fusers"; got != want {
		t.Errorf("after login: got %q; want %q", got, want)
	}
	if got := text("main"); !strings.Contains(got, "d***p@example.org") || strings.Contains(got, "demo.backup") {
		t.Errorf("challenge page: got %q; want masked addresses", got)
	}
	screenshots(t, steps, "challenge")

	// Pick the second address and send a code.
	if err := chromedp.Do(steps,
		chromedp.Click(chromedp.CSS(`input[name="email"][value="1"]`)),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#code")),
	); err != nil {
		t.Fatalf("send code: %v", err)
	}
	if got := location(); !strings.HasPrefix(got, d.base+"/.stepup/verify?") {
		t.Errorf("after send: got %q; want the verify page", got)
	}
	screenshots(t, steps, "verify")

	// The dev inbox in a second tab, as a person would open their mail.
	inboxTab, closeInbox := chromedp.NewContext(steps)
	var code, to string
	err := chromedp.Do(inboxTab,
		chromedp.Navigate(d.base+"/.stepup/dev/inbox"),
		chromedp.WaitVisible(chromedp.CSS("#code-0")),
	)
	if err == nil {
		code, err = chromedp.Run(inboxTab, chromedp.Value(chromedp.CSS("#code-0")))
	}
	if err == nil {
		to, err = chromedp.Run(inboxTab, chromedp.Text(chromedp.CSS("dd.to")))
	}
	if err == nil {
		screenshots(t, inboxTab, "inbox")
	}
	closeInbox()
	if err != nil {
		t.Fatalf("read inbox: %v", err)
	}
	if len(code) != 6 || to != "demo.backup@example.org" {
		t.Fatalf("inbox: got code %q to %q; want 6 digits to demo.backup@example.org", code, to)
	}

	// Type the code: the protected page opens.
	if err := chromedp.Do(steps,
		chromedp.SendKeys(chromedp.CSS("#code"), code),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("section.received table")),
	); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got, want := location(), d.base+"/admin/users"; got != want {
		t.Errorf("after verify: got %q; want %q", got, want)
	}
	if h1, body := text("main h1"), text("main"); h1 != "Admin area" || !strings.Contains(body, "Welcome, demo.") || !strings.Contains(body, "X-Stepup-Rule\tadmin") {
		t.Errorf("protected page: got h1 %q, text %q; want the admin area for demo", h1, body)
	}
	screenshots(t, steps, "protected")
}

// landed waits until the tab's document is path (location.pathname) and
// fully loaded (readyState "complete"), polling until ctx ends. Put it
// after a click that navigates, behind a wait for an element only the
// destination has: it proves the click's navigation is over, so a
// following chromedp.Navigate cannot race it (net::ERR_ABORTED under load).
// Evaluation errors while the old document goes away are retried.
func landed(path string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		want, last := path+" complete", ""
		for {
			got, err := chromedp.Evaluate[string](`location.pathname + " " + document.readyState`)(ctx, tg)
			if err == nil {
				if got == want {
					return nil
				}
				last = got
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("never landed on %s (last %q): %w", path, last, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
}

// screenshots saves the current page at phone and desktop widths when
// STEPGATE_DEMO_SCREENSHOTS names a directory.
func screenshots(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("STEPGATE_DEMO_SCREENSHOTS")
	if dir == "" {
		return
	}
	for _, s := range []struct {
		label string
		w, h  int64
	}{{"phone", 390, 844}, {"desktop", 1280, 900}} {
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
			continue
		}
		t.Logf("screenshot: %s", path)
	}
}
