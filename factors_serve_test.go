package main

import (
	"encoding/base32"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/factors/pgstore/pgtest"
	"github.com/stepgate/stepgate/factors/totp"
)

// TestServeFactorsPostgres runs the real servers on a real PostgreSQL:
// an authenticator app is enrolled over the API after an email code and
// used to step up a totp-only rule (which the email token does not
// satisfy); then the database is stopped: /readyz fails, TOTP answers 503,
// while allow and authenticate paths, email codes and the tokens already
// issued keep working.
func TestServeFactorsPostgres(t *testing.T) {
	db := pgtest.Start(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "upstream "+r.URL.Path+" "+r.Header.Get("X-Stepup-Method"))
	}))
	defer upstream.Close()
	mailDir := t.TempDir()
	cfg := flowConfig(upstream.URL, mailDir) + `
    - name: vault
      paths: ["/vault/**"]
      action: step_up
      factors: [totp]
    - name: account
      paths: ["/account/**"]
      action: authenticate
factors:
  enabled: [totp, email]
  driver: postgres
  postgres: { dsn: "` + db.NewDatabase(t) + `" }
  encryption_key: "` + testFactorKey + `"
`
	s := startOps(t, writeConfig(t, cfg), noEnv)
	base := "http://" + s.listen
	access := accessToken(t, "alice", "alice@example.com", "sess-1")
	js := func(extra ...string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + access, "Content-Type": "application/json"}
		if len(extra) == 2 {
			h[extra[0]] = extra[1]
		}
		return h
	}

	// An email code.
	if resp, body := do(t, "POST", base+"/.stepup/api/email-otp", strings.NewReader(`{"index":0}`), js()); resp.StatusCode != 200 {
		t.Fatalf("send: %d %s", resp.StatusCode, body)
	}
	resp, body := do(t, "PUT", base+"/.stepup/api/email-otp", strings.NewReader(`{"otp":"`+mailedCode(t, mailDir)+`"}`), js())
	var v struct{ SecondFactorAuthenticationToken string }
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &v) != nil {
		t.Fatalf("verify: %d %s", resp.StatusCode, body)
	}
	emailTok := v.SecondFactorAuthenticationToken
	// The email token does not open the totp-only rule (API: RFC 9470 401
	// naming the method set).
	resp, _ = do(t, "GET", base+"/vault/x", nil, js("X-Second-Factor-Token", emailTok))
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `acr_values="urn:stepgate:method:totp"`) {
		t.Fatalf("vault with an email token: %d %q; want 401 with acr_values", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// Enrol an authenticator app with the fresh email token.
	resp, body = do(t, "POST", base+"/.stepup/api/factors/totp", strings.NewReader(`{"name":"Phone"}`), js("X-Second-Factor-Token", emailTok))
	var en struct{ ID, Secret string }
	if resp.StatusCode != 201 || json.Unmarshal([]byte(body), &en) != nil {
		t.Fatalf("enrol: %d %s", resp.StatusCode, body)
	}
	secret, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(en.Secret)
	step := totp.Step(time.Now(), totp.Default)
	c0, _ := totp.Code(secret, step, totp.Default)
	if resp, body := do(t, "PUT", base+"/.stepup/api/factors/totp/"+en.ID, strings.NewReader(`{"code":"`+c0+`"}`), js()); resp.StatusCode != 200 {
		t.Fatalf("confirm: %d %s", resp.StatusCode, body)
	}
	c1, _ := totp.Code(secret, max(step, totp.Step(time.Now(), totp.Default))+1, totp.Default)
	resp, body = do(t, "PUT", base+"/.stepup/api/totp", strings.NewReader(`{"code":"`+c1+`"}`), js())
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &v) != nil {
		t.Fatalf("PUT /api/totp: %d %s", resp.StatusCode, body)
	}
	totpTok := v.SecondFactorAuthenticationToken
	if resp, body := do(t, "GET", base+"/vault/x", nil, js("X-Second-Factor-Token", totpTok)); resp.StatusCode != 200 || body != "upstream /vault/x totp" {
		t.Fatalf("vault with a TOTP token: %d %q; want the upstream with X-Stepup-Method totp", resp.StatusCode, body)
	}
	if code, _ := httpGet(t, "http://"+s.admin+"/readyz"); code != 200 {
		t.Fatalf("/readyz with the database up: %d", code)
	}

	// The database goes down.
	db.Stop()
	if code, body := httpGet(t, "http://"+s.admin+"/readyz"); code != 503 || !strings.Contains(body, "factor store") {
		t.Errorf("/readyz with the database down: %d %q; want 503 naming the factor store", code, body)
	}
	c2, _ := totp.Code(secret, totp.Step(time.Now(), totp.Default), totp.Default)
	if resp, body := do(t, "PUT", base+"/.stepup/api/totp", strings.NewReader(`{"code":"`+c2+`"}`), js()); resp.StatusCode != 503 {
		t.Errorf("TOTP with the database down: %d %s; want 503", resp.StatusCode, body)
	}
	for _, c := range []struct {
		path  string
		token string
	}{{"/public/a", ""}, {"/account/me", ""}, {"/vault/x", totpTok}, {"/admin/x", emailTok}} {
		h := js()
		if c.token != "" {
			h["X-Second-Factor-Token"] = c.token
		}
		if resp, body := do(t, "GET", base+c.path, nil, h); resp.StatusCode != 200 {
			t.Errorf("GET %s with the database down: %d %q; want 200", c.path, resp.StatusCode, body)
		}
	}
}
