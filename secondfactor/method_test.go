package secondfactor

import (
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestMintMethod(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		method string
		amr    []string
	}{{MethodEmail, []string{"otp", "email"}}, {MethodTOTP, []string{"otp"}}, {MethodPasskey, []string{"hwk", "user"}}} {
		g, err := e.s.MintMethod(t.Context(), alice, c.method)
		if err != nil {
			t.Fatal(err)
		}
		if g.Method != c.method {
			t.Errorf("Grant.Method = %q; want %q", g.Method, c.method)
		}
		payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(g.Token, ".")[1])
		var claims struct {
			AMR    []string `json:"amr"`
			Method string   `json:"method"`
		}
		if err := json.Unmarshal(payload, &claims); err != nil {
			t.Fatal(err)
		}
		if claims.Method != c.method || !slices.Equal(claims.AMR, c.amr) {
			t.Errorf("%s token claims method %q amr %v; want %q %v", c.method, claims.Method, claims.AMR, c.method, c.amr)
		}
		v, err := e.s.Validate(t.Context(), g.Token, alice)
		if err != nil || v.Method != c.method {
			t.Errorf("Validate(%s token) = %+v, %v", c.method, v, err)
		}
	}
}

// TestCheckMethods is SPEC §11: a token whose method the rule does not
// list does not satisfy it.
func TestCheckMethods(t *testing.T) {
	e := newEnv(t)
	email, _ := e.s.MintMethod(t.Context(), alice, MethodEmail)
	totp, _ := e.s.MintMethod(t.Context(), alice, MethodTOTP)
	// A token minted before methods existed (no method claim) is email.
	legacy := signClaims(t, jwt.SigningMethodHS256, testSecret, tokenType, goodClaims(e.clock.Now()))
	for _, c := range []struct {
		name    string
		token   string
		methods string
		want    bool
	}{
		{"email, any", email.Token, "", true},
		{"email, totp only", email.Token, "totp", false},
		{"email, totp or email", email.Token, "totp,email", true},
		{"totp, totp only", totp.Token, "totp", true},
		{"totp, passkey only", totp.Token, "passkey", false},
		{"legacy, totp only", legacy, "totp", false},
		{"legacy, email", legacy, "email", true},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("X-Second-Factor-Token", c.token)
		g, ok := e.s.CheckMethods(r, alice, time.Hour, c.methods)
		if ok != c.want {
			t.Errorf("%s: ok = %v; want %v", c.name, ok, c.want)
		}
		if ok && c.methods != "" && !methodAllowed(c.methods, g.Method) {
			t.Errorf("%s: granted method %q not in %v", c.name, g.Method, c.methods)
		}
	}
	// A wrong-method token never hides a right one sent alongside.
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Add("Cookie", "__Host-stepgate="+email.Token)
	r.Header.Set("X-Second-Factor-Token", totp.Token)
	if g, ok := e.s.CheckMethods(r, alice, time.Hour, "totp"); !ok || g.Method != MethodTOTP {
		t.Errorf("email cookie + totp header, totp only: %+v, %v; want the totp grant", g, ok)
	}
}
