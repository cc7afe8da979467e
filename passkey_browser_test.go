package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/stepgate/stepgate/secondfactor"
)

// virtualAuthenticator adds a CDP virtual authenticator to the tab: CTAP2,
// internal transport (a platform authenticator), resident keys and user
// verification that succeeds, presence simulated.
func virtualAuthenticator(ctx context.Context, t *testing.T) webauthn.AuthenticatorID {
	t.Helper()
	id, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (webauthn.AuthenticatorID, error) {
		if _, err := cdp.Call(ctx, tg, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return "", fmt.Errorf("WebAuthn.enable: %w", err)
		}
		res, err := cdp.Call(ctx, tg, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
			Options: &webauthn.VirtualAuthenticatorOptions{
				Protocol:                    webauthn.AuthenticatorProtocolCtap2,
				Ctap2version:                webauthn.Ctap2versionCtap21,
				Transport:                   webauthn.AuthenticatorTransportInternal,
				HasResidentKey:              true,
				HasUserVerification:         true,
				IsUserVerified:              true,
				AutomaticPresenceSimulation: true,
			},
		})
		if err != nil {
			return "", fmt.Errorf("WebAuthn.addVirtualAuthenticator: %w", err)
		}
		return res.AuthenticatorID, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func removeAuthenticator(ctx context.Context, t *testing.T, id webauthn.AuthenticatorID) {
	t.Helper()
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, webauthn.RemoveVirtualAuthenticator, webauthn.RemoveVirtualAuthenticatorParams{AuthenticatorID: id})
		return err
	}))
	if err != nil {
		t.Fatalf("WebAuthn.removeVirtualAuthenticator: %v", err)
	}
}

// credentials returns the credentials the virtual authenticator id holds.
func credentials(ctx context.Context, t *testing.T, id webauthn.AuthenticatorID) []*webauthn.Credential {
	t.Helper()
	var out []*webauthn.Credential
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		res, err := cdp.Call(ctx, tg, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: id})
		if err != nil {
			return err
		}
		out = res.Credentials
		return nil
	}))
	if err != nil || len(out) == 0 {
		t.Fatalf("WebAuthn.getCredentials: %d credentials, %v", len(out), err)
	}
	return out
}

// addCredentials puts creds into the virtual authenticator id.
func addCredentials(ctx context.Context, t *testing.T, id webauthn.AuthenticatorID, creds []*webauthn.Credential) {
	t.Helper()
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		for _, c := range creds {
			// Chromium's virtual authenticator refuses any CMTG field on
			// add, even false, so the credential goes as a plain map.
			cred := map[string]any{
				"credentialId": c.CredentialID, "isResidentCredential": c.IsResidentCredential,
				"rpId": c.RpID, "privateKey": c.PrivateKey, "userHandle": c.UserHandle,
				"signCount": c.SignCount, "backupEligibility": c.BackupEligibility, "backupState": c.BackupState,
			}
			if err := tg.Call(ctx, webauthn.CommandAddCredential, map[string]any{"authenticatorId": id, "credential": cred}, nil); err != nil {
				return err
			}
		}
		return nil
	}))
	if err != nil {
		t.Fatalf("WebAuthn.addCredential: %v", err)
	}
}

// TestPasskeyBrowser is the passkey flow in a real headless chromium with
// a CDP virtual authenticator: sign in, step up with an email code, add a
// passkey on {prefix}/factors/passkey, step up with it on a passkey-only
// rule (the email token no longer counts there) and reach the upstream;
// then a second authenticator that was never registered is refused; then
// the passkey is removed. With STEPGATE_PAGE_SCREENSHOTS=DIR it saves the
// passkey pages at desktop and phone sizes (checked in under
// docs/screenshots/).
func TestPasskeyBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tab := newChromium(t, ctx, 1280, 800)
	dbDir := t.TempDir()
	d := startDemoWith(t, func(c *Config) {
		// Browsers refuse WebAuthn on IP addresses; localhost is a secure
		// context over http.
		_, port, _ := net.SplitHostPort(c.Server.Listen)
		c.Server.PublicURL = "http://localhost:" + port
		c.Factors.Enabled = []string{secondfactor.MethodPasskey, secondfactor.MethodTOTP, secondfactor.MethodEmail} // the demo's vault rule names totp
		c.OTP.ResendAfter = 0                                                                                       // two codes within seconds
		c.Factors.Driver = "sqlite"
		c.Factors.SQLite.Path = filepath.Join(dbDir, "factors.db")
		c.Factors.EncryptionKey = randomSecret()
		for i := range c.Policies.Rules {
			if c.Policies.Rules[i].Name == "admin" {
				c.Policies.Rules[i].Factors = []string{secondfactor.MethodPasskey}
			}
		}
	})
	base := strings.Replace(d.base, "127.0.0.1", "localhost", 1)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	steps, cancelSteps := context.WithTimeout(tab, 75*time.Second)
	defer cancelSteps()
	defer func() {
		if !t.Failed() {
			return
		}
		if png, err := chromedp.Run(tab, chromedp.FullScreenshot(100)); err == nil {
			path := filepath.Join(os.TempDir(), fmt.Sprintf("stepgate-passkey-browser-%d.png", time.Now().UnixNano()))
			if os.WriteFile(path, png, 0o600) == nil {
				t.Logf("failure screenshot: %s", path)
			}
		}
	}()
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(steps, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
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
	// waitText polls sel until it contains want (the script answers
	// asynchronously), failing at the steps' deadline.
	waitText := func(sel, want string) string {
		t.Helper()
		var got string
		for {
			s, err := chromedp.Run(steps, chromedp.Text(chromedp.CSS(sel)))
			if err == nil {
				got = s
				if strings.Contains(s, want) {
					return s
				}
			}
			select {
			case <-steps.Done():
				t.Fatalf("%s never said %q; last %q", sel, want, got)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}

	auth := virtualAuthenticator(steps, t)

	run("sign in", chromedp.Navigate(base+"/account"), chromedp.WaitVisible(chromedp.CSS("#signin")),
		chromedp.Click(chromedp.CSS("#signin")),
		// The login page has a main h1 too: wait for the redirect to land,
		// fully loaded, or the next Navigate races it (net::ERR_ABORTED).
		chromedp.WaitVisible(chromedp.CSS("main p.ok")), landed("/account"))

	// Without a fresh factor the registration page asks to confirm first.
	run("registration page", chromedp.Navigate(base+"/.stepup/factors/passkey"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	if body := text("main"); !strings.Contains(body, "confirm it's you") {
		t.Fatalf("registration page without a fresh factor: %q", body)
	}

	// An email code, then back to the registration page.
	run("email step-up", chromedp.Click(chromedp.CSS(`main a[href*="/challenge"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/send"] button[type="submit"]`)),
		chromedp.Click(chromedp.CSS(`form[action$="/send"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#code")))
	inbox, closeInbox := chromedp.NewContext(steps)
	err := chromedp.Do(inbox, chromedp.Navigate(d.base+"/.stepup/dev/inbox"), chromedp.WaitVisible(chromedp.CSS("#code-0")))
	var code string
	if err == nil {
		code, err = chromedp.Run(inbox, chromedp.Value(chromedp.CSS("#code-0")))
	}
	closeInbox()
	if err != nil {
		t.Fatalf("read inbox: %v", err)
	}
	run("verify", chromedp.SendKeys(chromedp.CSS("#code"), code),
		chromedp.Click(chromedp.CSS(`form[action$="/verify"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#passkey-name")))
	pageShots(t, steps, "passkey-register")

	// Register.
	run("create passkey", chromedp.SendKeys(chromedp.CSS("#passkey-name"), "Test laptop"),
		chromedp.Click(chromedp.CSS("#passkey-button")))
	waitText("main", "Test laptop")
	run("passkey added", landed("/.stepup/factors/passkey")) // the script's location.assign is over
	if body := text("ul.passkeys"); !strings.Contains(body, "Added") {
		t.Fatalf("passkey list: %q", body)
	}
	creds, err := chromedp.Run(steps, func(ctx context.Context, tg *chromedp.Target) (webauthn.GetCredentialsResult, error) {
		return cdp.Call(ctx, tg, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: auth})
	})
	if err != nil || len(creds.Credentials) != 1 {
		t.Fatalf("virtual authenticator credentials: %+v, %v; want 1", creds, err)
	}
	if c := creds.Credentials[0]; c.RpID != "localhost" {
		t.Fatalf("credential scoped to %q; want localhost (the public_url's host)", c.RpID)
	}

	// A browser without WebAuthn is told so, in a tab where the script
	// finds no PublicKeyCredential.
	bare, closeBare := chromedp.NewContext(steps)
	err = chromedp.Do(bare, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: "delete window.PublicKeyCredential;"})
		return err
	}), chromedp.Navigate(base+"/.stepup/passkey?rd=%2Fadmin%2Fusers"), chromedp.WaitVisible(chromedp.CSS("#passkey-status")))
	var noWebAuthn string
	if err == nil {
		noWebAuthn, err = chromedp.Run(bare, chromedp.Text(chromedp.CSS("#passkey-status")))
	}
	closeBare()
	if err != nil || !strings.Contains(noWebAuthn, "cannot use passkeys") {
		t.Fatalf("page without WebAuthn: %q, %v; want a clear message", noWebAuthn, err)
	}

	// The admin rule is passkey-only: the email token does not satisfy it.
	run("admin", chromedp.Navigate(base+"/admin/users"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	if loc, want := location(), base+"/.stepup/challenge?rd=%2Fadmin%2Fusers"; loc != want {
		t.Fatalf("admin with an email token: at %s; want the challenge %s", loc, want)
	}
	// The chooser offers the passkey, and only the passkey.
	if body := text("main"); !strings.Contains(body, "Use a passkey") || strings.Contains(body, "Send code") || strings.Contains(body, "d***@") {
		t.Fatalf("chooser on a passkey-only rule: %q; want only the passkey", body)
	}
	pageShots(t, steps, "passkey-chooser")
	run("chooser", chromedp.Click(chromedp.CSS("#use-passkey")), chromedp.WaitVisible(chromedp.CSS("#passkey-button")))
	if body := text("main"); !strings.Contains(body, "accepts only a passkey") {
		t.Errorf("passkey-only page: %q; want it to say only a passkey works", body)
	}
	pageShots(t, steps, "passkey-challenge")
	run("use passkey", chromedp.Click(chromedp.CSS("#passkey-button")))
	waitText("main h1", "Admin area")
	if loc := location(); loc != base+"/admin/users" {
		t.Fatalf("after the passkey: at %s; want %s/admin/users", loc, base)
	}
	run("admin loaded", landed("/admin/users"))

	// A second authenticator, never registered: refused, upstream not reached.
	// Keep the registered credential (with its private key and sign count)
	// to put back later: removing a passkey needs a passkey.
	saved := credentials(steps, t, auth)
	removeAuthenticator(steps, t, auth)
	stranger := virtualAuthenticator(steps, t)
	run("status page", chromedp.Navigate(base+"/.stepup/"), chromedp.WaitVisible(chromedp.CSS(`form[action$="/logout"] button`)))
	// RunResponse waits for the page the logout form leads to.
	if _, err := chromedp.RunResponse(steps, chromedp.Click(chromedp.CSS(`form[action$="/logout"] button`))); err != nil {
		t.Fatalf("drop second factor: %v", err)
	}
	run("passkey page again", chromedp.Navigate(base+"/.stepup/passkey?rd=%2Fadmin%2Fusers"), chromedp.WaitVisible(chromedp.CSS("#passkey-button")),
		chromedp.Click(chromedp.CSS("#passkey-button")))
	status := waitText("#passkey-status.error", "")
	if !slices.ContainsFunc([]string{"closed or timed out", "not accepted"}, func(s string) bool { return strings.Contains(status, s) }) {
		t.Fatalf("unregistered authenticator: status %q; want a refusal", status)
	}
	if loc := location(); !strings.Contains(loc, "/.stepup/passkey") {
		t.Fatalf("unregistered authenticator got to %s", loc)
	}

	// Remove the passkey on the factors page, after a fresh email code.
	run("factors page", chromedp.Navigate(base+"/.stepup/challenge?rd=%2F.stepup%2Ffactors"),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/send"] button[type="submit"]`)))
	if body := text("main"); !strings.Contains(body, "Use a passkey") {
		t.Errorf("chooser without a rule: %q; want the passkey offered first", body)
	}
	run("send", chromedp.Click(chromedp.CSS(`form[action$="/send"] button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("#code")))
	inbox, closeInbox = chromedp.NewContext(steps)
	err = chromedp.Do(inbox, chromedp.Navigate(d.base+"/.stepup/dev/inbox"), chromedp.WaitVisible(chromedp.CSS("#code-0")))
	if err == nil {
		code, err = chromedp.Run(inbox, chromedp.Value(chromedp.CSS("#code-0")))
	}
	closeInbox()
	if err != nil {
		t.Fatalf("read inbox: %v", err)
	}
	// An email code does not remove a passkey (or a stolen session and
	// mailbox could swap in their own): the page offers no Remove button
	// then, but a link to the passkey step-up that removal needs.
	run("verify", chromedp.SendKeys(chromedp.CSS("#code"), code),
		chromedp.Click(chromedp.CSS(`form[action$="/verify"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#remove-confirm a`)))
	if body := text("main"); !strings.Contains(body, "Test laptop") || !strings.Contains(body, "only a passkey can remove factors") {
		t.Fatalf("factors page after an email code: %q; want the passkey listed and why it cannot be removed yet", body)
	}
	removeButtons, err := chromedp.Run(steps, chromedp.Evaluate[int](`document.querySelectorAll('form[action*="/factors/remove/"]').length`))
	if err != nil {
		t.Fatalf("count Remove buttons: %v", err)
	}
	if removeButtons != 0 {
		t.Fatalf("factors page after an email code shows %d Remove buttons; want none (removal needs a passkey)", removeButtons)
	}
	// The registered authenticator back; the link leads to the passkey
	// step-up, which comes back to the page with the Remove button.
	removeAuthenticator(steps, t, stranger)
	addCredentials(steps, t, virtualAuthenticator(steps, t), saved)
	run("passkey for removal", chromedp.Click(chromedp.CSS(`#remove-confirm a`)), chromedp.WaitVisible(chromedp.CSS("#passkey-button")),
		chromedp.Click(chromedp.CSS("#passkey-button")))
	run("factors page after passkey", landed("/.stepup/factors"), chromedp.WaitVisible(chromedp.CSS(`form[action*="/factors/remove/"] button`)))
	if _, err := chromedp.RunResponse(steps, chromedp.Click(chromedp.CSS(`form[action*="/factors/remove/"] button`))); err != nil {
		t.Fatalf("remove: %v", err)
	}
	waitText("main", "removed")
	if body := text("main"); strings.Contains(body, "Test laptop") {
		t.Fatalf("after removal: %q", body)
	}
	// Without a passkey (and with the second factor dropped) the
	// passkey-only rule says how to get one.
	run("status page before admin", chromedp.Navigate(base+"/.stepup/"), chromedp.WaitVisible(chromedp.CSS(`form[action$="/logout"] button`)))
	if _, err := chromedp.RunResponse(steps, chromedp.Click(chromedp.CSS(`form[action$="/logout"] button`))); err != nil {
		t.Fatalf("drop second factor: %v", err)
	}
	run("admin again", chromedp.Navigate(base+"/admin/users"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	if h1 := text("main h1"); h1 != "Add a passkey first" {
		t.Fatalf("passkey-only rule without a passkey: h1 %q", h1)
	}
}
