package main

import (
	"crypto/rand"
	"crypto/rsa"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stepgate/stepgate/internal/proctest"
)

// buildWithLog loads text and builds the gate as serve does, with the
// logger writing to the returned buffer.
func buildWithLog(t *testing.T, text string) (http.Handler, *proctest.Buffer) {
	t.Helper()
	cfg, err := loadConfig(writeConfig(t, text), noEnv)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	logs := &proctest.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	shared, err := newSharedParts(cfg, logger, nil)
	if err != nil {
		t.Fatalf("newSharedParts: %v", err)
	}
	t.Cleanup(func() { shared.store.Close() })
	gate, err := buildGate(cfg, shared)
	if err != nil {
		t.Fatalf("buildGate: %v", err)
	}
	return gate, logs
}

// TestJWKSFetchFailureLogged checks that build.go hands the configured
// logger to identity: a JWKS endpoint that fails is logged (it used to be
// dropped), and the request is refused.
func TestJWKSFetchFailureLogged(t *testing.T) {
	var hits int
	var mu sync.Mutex
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer jwks.Close()
	gate, logs := buildWithLog(t, `
identity:
  login_url: ""
  jwt:
    algorithms: [RS256]
    jwks_url: `+jwks.URL+`/jwks.json
second_factor:
  secret: "`+testSecret+`"
mail:
  driver: log
`)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "k1"
	signed, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/account", nil)
	req.Header.Set("Authorization", "Bearer "+signed)
	req.Header.Set("Accept", "application/json")
	rec := httptest.NewRecorder()
	gate.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("status: got %d; want 401 (no key could verify the token)", rec.Code)
	}
	mu.Lock()
	n := hits
	mu.Unlock()
	if n == 0 {
		t.Fatal("the JWKS endpoint was never asked")
	}
	var line string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "JWKS fetch failed") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no JWKS failure in the configured log:\n%s", logs)
	}
	if !strings.Contains(line, `"level":"WARN"`) || !strings.Contains(line, "500") {
		t.Errorf("JWKS log line: got %s; want a WARN naming the 500", line)
	}
}

// TestSMTPFailureLogged checks that the SMTP sender's warning and a failed
// SMTP delivery reach the configured logger, and the client gets a 503
// without the cause.
func TestSMTPFailureLogged(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now: every dial is refused
	gate, logs := buildWithLog(t, `
identity:
  login_url: ""
  jwt:
    hmac_secret: "`+testHMACSecret+`"
second_factor:
  secret: "`+testSecret+`"
mail:
  driver: smtp
  smtp:
    host: 127.0.0.1
    port: `+strconv.Itoa(port)+`
    tls: none
    username: stepgate
    password: relay-password
`+baseRules)
	// The sender's own warning (AUTH without TLS, allowed to a loopback
	// relay only) goes to the configured logger, not slog.Default.
	if !strings.Contains(logs.String(), "authenticating without TLS to a loopback relay") {
		t.Errorf("no SMTP sender warning in the configured log:\n%s", logs)
	}
	req := httptest.NewRequest("POST", "/.stepup/api/email-otp", strings.NewReader(`{"index":0}`))
	req.Header.Set("Authorization", "Bearer "+accessToken(t, "alice", "alice@example.com", "s1"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	rec := httptest.NewRecorder()
	gate.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status: got %d %s; want 503", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), "127.0.0.1") || strings.Contains(rec.Body.String(), "refused") {
		t.Errorf("body %s shows the cause; want only the safe message", rec.Body)
	}
	var line string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, `"level":"ERROR"`) && strings.Contains(l, "smtp") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no SMTP error in the configured log:\n%s", logs)
	}
	if !strings.Contains(line, "refused") {
		t.Errorf("SMTP log line: got %s; want the cause (connection refused)", line)
	}
}

// TestVerifyBudgetConfig: identity.jwt.verify_concurrency and verify_wait
// default to 0 (half of GOMAXPROCS, at least 1) and 500ms, reach the
// identity package as set, and stepgate_token_verifications_shed_total is
// registered (at 0) and handed to the authenticator.
func TestVerifyBudgetConfig(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, baseSections+baseRules), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if j := cfg.Identity.JWT; j.VerifyConcurrency != 0 || j.VerifyWait != 500*time.Millisecond {
		t.Errorf("defaults: verify_concurrency %d, verify_wait %v; want 0 and 500ms", j.VerifyConcurrency, j.VerifyWait)
	}
	cfg, err = loadConfig(writeConfig(t, strings.Replace(baseSections, "  jwt:\n",
		"  jwt:\n    verify_concurrency: 3\n    verify_wait: 250ms\n", 1)+baseRules), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := cfg.identityConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if ic.JWT.VerifyConcurrency != 3 || ic.JWT.VerifyWait != 250*time.Millisecond {
		t.Errorf("identity config: %d, %v; want 3 and 250ms", ic.JWT.VerifyConcurrency, ic.JWT.VerifyWait)
	}
	shared, err := newSharedParts(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(shared.Close)
	if _, err := buildGate(cfg, shared); err != nil {
		t.Fatal(err)
	}
	mfs, err := shared.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "stepgate_token_verifications_shed_total" {
			found = len(mf.GetMetric()) == 1 && mf.GetMetric()[0].GetCounter().GetValue() == 0
		}
	}
	if !found {
		t.Error("stepgate_token_verifications_shed_total is not registered at 0")
	}
}
