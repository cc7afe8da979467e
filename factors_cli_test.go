package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/sqlitestore"
	"github.com/stepgate/stepgate/policy"
)

const (
	testFactorKey  = "test-factor-encryption-key-0123456789abcdef"
	testFactorKey2 = "test-factor-encryption-key-2-0123456789abcd"
)

// totpConfig is a runnable config with totp enabled on a SQLite file;
// extra is appended under factors.
func totpConfig(t *testing.T, db, extra string) string {
	return writeConfig(t, baseSections+baseRules+`
factors:
  enabled: [totp, email]
  sqlite:
    path: "`+db+`"
`+extra)
}

// seed stores a confirmed TOTP factor sealed under key.
func seed(t *testing.T, db, key, user string) factors.Factor {
	t.Helper()
	s, err := sqlitestore.Open(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k, err := factors.NewKeyring([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := factors.NewID()
	sealed, _ := k.Seal(user, id, []byte("12345678901234567890"))
	f := factors.Factor{ID: id, User: user, Type: factors.TypeTOTP, Name: "Phone", CreatedAt: time.Now(), Confirmed: true, Public: []byte(`{"period":30,"digits":6,"algorithm":"SHA1"}`), Secret: sealed}
	if err := s.Create(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestFactorKeysAtStart: totp without an encryption key is a config
// error naming the key; a key that does not open the stored secrets
// refuses the start naming factors.encryption_key; the right one starts.
func TestFactorKeysAtStart(t *testing.T) {
	db := filepath.Join(t.TempDir(), "factors.db")
	_, err := loadConfig(totpConfig(t, db, ""), noEnv)
	if err == nil || !strings.Contains(err.Error(), "factors.encryption_key") {
		t.Fatalf("totp without a key: %v; want an error naming factors.encryption_key", err)
	}
	_, err = loadConfig(totpConfig(t, db, `  encryption_key: "short"`+"\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "factors.encryption_key") || !strings.Contains(err.Error(), "32") {
		t.Fatalf("short key: %v; want an error naming the key and 32 bytes", err)
	}

	seed(t, db, testFactorKey, "alice")
	cfg, err := loadConfig(totpConfig(t, db, `  encryption_key: "`+testFactorKey2+`"`+"\n"), noEnv)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	_, err = newSharedParts(cfg, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "factors.encryption_key") || !strings.Contains(err.Error(), "do not decrypt") {
		t.Fatalf("wrong key at start: %v; want a refusal naming factors.encryption_key", err)
	}
	// The old key as a previous key: starts (rotation).
	cfg, err = loadConfig(totpConfig(t, db, `  encryption_key: "`+testFactorKey2+`"
  previous_encryption_keys: ["`+testFactorKey+`"]
`), noEnv)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	shared, err := newSharedParts(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("start during rotation: %v", err)
	}
	if _, err := buildGate(cfg, shared); err != nil {
		t.Fatalf("buildGate: %v", err)
	}
	shared.Close()
}

// TestFactorsCLI: list, remove (audited) and rekey.
func TestFactorsCLI(t *testing.T) {
	db := filepath.Join(t.TempDir(), "factors.db")
	f := seed(t, db, testFactorKey, "alice")
	seed(t, db, testFactorKey, "bob")
	path := totpConfig(t, db, `  encryption_key: "`+testFactorKey2+`"
  previous_encryption_keys: ["`+testFactorKey+`"]
`)
	runOut := func(args ...string) (string, string, error) {
		var out, errb bytes.Buffer
		err := run(context.Background(), append([]string{"factors"}, args...), noEnv, &out, &errb)
		return out.String(), errb.String(), err
	}
	out, _, err := runOut("list", "-config", path)
	if err != nil || !strings.Contains(out, f.ID) || !strings.Contains(out, "bob") || strings.Contains(out, "1234567890") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, _, err = runOut("list", "-config", path, "-user", "bob")
	if err != nil || strings.Contains(out, f.ID) {
		t.Fatalf("list -user bob shows alice's factor: %v\n%s", err, out)
	}
	if _, _, err := runOut("remove", "-config", path); err == nil {
		t.Fatalf("remove without -user: nil error")
	}
	out, stderr, err := runOut("remove", "-config", path, "-user", "alice")
	if err != nil || !strings.Contains(out, "removed 1") {
		t.Fatalf("remove: %v\n%s", err, out)
	}
	if !strings.Contains(stderr, `"event":"factor_removed"`) || !strings.Contains(stderr, `"user":"alice"`) || !strings.Contains(stderr, f.ID) {
		t.Fatalf("remove wrote no audit record: %q", stderr)
	}
	if _, _, err := runOut("remove", "-config", path, "-user", "alice"); err == nil {
		t.Fatalf("second remove: nil error; want 'no factor'")
	}
	out, stderr, err = runOut("rekey", "-config", path)
	if err != nil || !strings.Contains(out, "rekeyed 1") || !strings.Contains(stderr, `"event":"factors_rekeyed"`) {
		t.Fatalf("rekey: %v\n%s\n%s", err, out, stderr)
	}
	// After rekey the new key alone starts.
	cfg, err := loadConfig(totpConfig(t, db, `  encryption_key: "`+testFactorKey2+`"`+"\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := newSharedParts(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("start with the new key alone after rekey: %v", err)
	}
	shared.Close()
}

// TestRuleFactorsConfig: rules[].factors must name enabled methods, only
// on step_up rules, and a rule with factors announces acr values.
func TestRuleFactorsConfig(t *testing.T) {
	db := filepath.Join(t.TempDir(), "factors.db")
	bad := writeConfig(t, baseSections+`
policies:
  rules:
    - name: vault
      paths: ["/vault/**"]
      action: step_up
      factors: [totp]
    - name: open
      paths: ["/open/**"]
      action: allow
      factors: [email]
`)
	_, err := loadConfig(bad, noEnv)
	if err == nil || !strings.Contains(err.Error(), "policies.rules[0].factors[0]") || !strings.Contains(err.Error(), "factors: is only meaningful for step_up rules") {
		t.Fatalf("bad factors: %v; want errors at rules[0].factors[0] (not enabled) and rules[1].factors (not step_up)", err)
	}
	good := writeConfig(t, baseSections+`
factors:
  enabled: [totp, email]
  encryption_key: "`+testFactorKey+`"
  sqlite: { path: "`+db+`" }
policies:
  rules:
    - name: vault
      paths: ["/vault/**"]
      action: step_up
      factors: [totp]
`)
	cfg, err := loadConfig(good, noEnv)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	d := cfg.policy.Match(policyRequest("/vault/x"))
	if d.Factors != "totp" || d.ACR != "urn:stepgate:method:totp" {
		t.Fatalf("decision %+v; want factors totp and acr urn:stepgate:method:totp", d)
	}
}

func policyRequest(path string) policy.Request {
	return policy.Request{Method: "GET", Host: "app.example.com", Path: path}
}
