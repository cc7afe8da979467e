package challenge

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/factors/passkey/passkeytest"
)

// TestFactorsPageRemoveNeedsPasskey checks that the factors page offers
// only removals that can succeed: once the user has a passkey, a fresh
// email code shows no Remove button (removal needs a passkey, freshFor)
// but a link to the passkey step-up that comes back to the page; after
// that step-up the buttons are there and work. A stale Remove form posted
// anyway leads to the passkey step-up too, not to the email chooser that
// could never make it succeed.
func TestFactorsPageRemoveNeedsPasskey(t *testing.T) {
	e := newPasskeyEnv(t)
	a := passkeytest.New(pkOrigin, "app.example.com")
	email := e.emailToken(t, hAlice)
	pk := e.register(t, hAlice, email, a, "Laptop")
	fid := pk["id"].(string)
	send := func(r *http.Request, token string) *httptest.ResponseRecorder {
		if token != "" {
			r.AddCookie(&http.Cookie{Name: "stepgate", Value: token})
		}
		return hServe(e.h, r)
	}
	confirm := `href="/.stepup/passkey?rd=%2F.stepup%2Ffactors"`
	removeForm := `action="/.stepup/factors/remove/`

	// No fresh factor: the confirm sentence says removal needs a passkey.
	w := send(browserReq(http.MethodGet, hPrefix+"/factors", hAlice, nil), "")
	if body := w.Body.String(); w.Code != http.StatusOK || strings.Contains(body, removeForm) || !strings.Contains(body, "removing one needs one of your passkeys") {
		t.Fatalf("factors page, not fresh: %d %s", w.Code, body)
	}
	// A fresh email code: the passkey listed, no Remove button, the link
	// to the passkey step-up instead.
	w = send(browserReq(http.MethodGet, hPrefix+"/factors", hAlice, nil), email)
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, "Laptop") || strings.Contains(body, removeForm) || !strings.Contains(body, `id="remove-confirm"`) || !strings.Contains(body, confirm) {
		t.Fatalf("factors page after an email code: %d; want the passkey, no Remove button, a link to the passkey step-up:\n%s", w.Code, body)
	}
	// A Remove form posted anyway: to the passkey step-up, nothing removed.
	form := url.Values{"csrf": {csrfToken(e.s.h.csrfKey, hAlice)}}
	w = send(browserReq(http.MethodPost, hPrefix+"/factors/remove/"+fid, hAlice, form), email)
	if loc := w.Header().Get("Location"); w.Code != http.StatusSeeOther || loc != "/.stepup/passkey?rd=%2F.stepup%2Ffactors" {
		t.Fatalf("remove after an email code: %d to %q; want 303 to the passkey step-up", w.Code, loc)
	}
	if has, err := e.s.HasPasskey(t.Context(), hAlice); err != nil || !has {
		t.Fatalf("after the refused removal HasPasskey = %v, %v; want true", has, err)
	}
	// After a passkey step-up: Remove buttons, and removal works.
	_, m := e.stepUp(t, hAlice, a)
	tok, _ := m["SecondFactorAuthenticationToken"].(string)
	w = send(browserReq(http.MethodGet, hPrefix+"/factors", hAlice, nil), tok)
	body = w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, removeForm+fid+`"`) || strings.Contains(body, `id="remove-confirm"`) {
		t.Fatalf("factors page after a passkey: %d; want the Remove button and no confirm link:\n%s", w.Code, body)
	}
	w = send(browserReq(http.MethodPost, hPrefix+"/factors/remove/"+fid, hAlice, form), tok)
	if loc := w.Header().Get("Location"); w.Code != http.StatusSeeOther || !strings.HasSuffix(loc, "?done=removed") {
		t.Fatalf("remove after a passkey: %d to %q; want 303 done=removed", w.Code, loc)
	}
	if has, err := e.s.HasPasskey(t.Context(), hAlice); err != nil || has {
		t.Fatalf("after removal HasPasskey = %v, %v; want false", has, err)
	}
}
