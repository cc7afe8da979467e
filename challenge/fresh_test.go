package challenge

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/factors/passkey/passkeytest"
)

// TestOneFreshRule checks that adding or removing any factor, passkeys
// included, follows the one FreshFactor rule: a second factor just inside
// FreshFactor counts as fresh for both checks (fresh, freshFor), one just
// outside for neither, and both pages state the same minutes. Passkey code
// once kept its own copy of the 5 minutes.
func TestOneFreshRule(t *testing.T) {
	c := &fclock{t: time.Unix(1_800_000_000, 0)}
	e := newPasskeyEnvAt(t, c.now)
	g, err := e.s.cfg.Tokens.Mint(t.Context(), hAlice)
	if err != nil {
		t.Fatal(err)
	}
	req := func() *http.Request {
		r := browserReq(http.MethodGet, hPrefix+"/factors", hAlice, nil)
		r.Header.Set("X-Second-Factor-Token", g.Token)
		return r
	}
	c.add(FreshFactor - time.Second)
	if !e.s.fresh(req(), hAlice) || !e.s.freshFor(req(), hAlice) {
		t.Fatalf("a second factor %v old: fresh %v, freshFor %v; want both true", FreshFactor-time.Second, e.s.fresh(req(), hAlice), e.s.freshFor(req(), hAlice))
	}
	c.add(2 * time.Second)
	if e.s.fresh(req(), hAlice) || e.s.freshFor(req(), hAlice) {
		t.Fatalf("a second factor %v old: fresh %v, freshFor %v; want both false", FreshFactor+time.Second, e.s.fresh(req(), hAlice), e.s.freshFor(req(), hAlice))
	}
	// With a passkey registered, the passkey page's confirm sentence and the
	// factors page's say the same minutes.
	fresh, err := e.s.cfg.Tokens.Mint(t.Context(), hAlice)
	if err != nil {
		t.Fatal(err)
	}
	e.register(t, hAlice, fresh.Token, passkeytest.New(pkOrigin, "app.example.com"), "Phone")
	c.add(FreshFactor + time.Second)
	want := "last " + strconv.Itoa(int(FreshFactor/time.Minute)) + " minutes"
	for _, path := range []string{"/factors", "/factors/passkey"} {
		w := hServe(e.h, browserReq(http.MethodGet, hPrefix+path, hAlice, nil))
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), want) {
			t.Errorf("GET %s without a fresh factor: %d, body lacks %q:\n%s", path, w.Code, want, w.Body)
		}
	}
}
