package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge/redisstore/redistest"
)

// Secrets long enough to pass validation; test values only.
const (
	testSecret     = "test-second-factor-secret-0123456789abcdef"
	testHMACSecret = "test-access-token-hmac-key-0123456789abcdef"
)

// baseSections are the sections a runnable config needs besides policies.
var baseSections = `
identity:
  login_url: "https://login.example.com/?rd={rd}"
  jwt:
    hmac_secret: "` + testHMACSecret + `"
second_factor:
  secret: "` + testSecret + `"
mail:
  driver: log
`

const baseRules = `
policies:
  rules:
    - name: admin
      paths: ["/admin/**"]
      action: step_up
      max_age: 10m
`

// writeConfig writes text to a config file in a fresh directory. A line
// ending in "#<" marks the line a test expects an error on; markedLine
// returns it.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func markedLine(text string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.HasSuffix(strings.TrimSpace(l), "#<") {
			return i + 1
		}
	}
	return 0
}

func envMap(m map[string]string) func(string) string {
	return func(k string) string {
		if k == environKey {
			names := make([]string, 0, len(m))
			for n := range m {
				names = append(names, n)
			}
			return strings.Join(names, "\n")
		}
		return m[k]
	}
}

func noEnv(string) string { return "" }

func problemsOf(t *testing.T, err error) []Problem {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got error %v (%T); want *ConfigError", err, err)
	}
	return ce.Problems
}

func TestLoadGoodConfig(t *testing.T) {
	path := writeConfig(t, baseSections+baseRules)
	cfg, err := loadConfig(path, noEnv)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if cfg.policy == nil || cfg.policy.Len() != 1 {
		t.Fatalf("policy not compiled with 1 rule: %+v", cfg.policy)
	}
	if got := cfg.Policies.Rules[0].MaxAge; got != 10*time.Minute {
		t.Errorf("max_age: got %v; want 10m", got)
	}
}

func TestValidationErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		yaml string
		key  string // the key path the error must name
		msg  string // a part of the message
	}{
		{"bad duration", baseSections + baseRules + "otp:\n  ttl: 5 minutes #<\n", "otp.ttl", "not a duration"},
		{"bad duration in rule", baseSections + `
policies:
  rules:
    - name: admin
      paths: ["/admin/**"]
      action: step_up
      max_age: ten #<
`, "policies.rules[0].max_age", "not a duration"},
		{"bad int", baseSections + baseRules + "otp:\n  length: six #<\n", "otp.length", "not a whole number"},
		// NIST SP 800-63B §5.1.4: six digits at least; the challenge
		// package once allowed four, this is the one rule.
		{"otp length 4", baseSections + baseRules + "otp:\n  length: 4 #<\n", "otp.length", "between 6 and 10"},
		{"otp length 11", baseSections + baseRules + "otp:\n  length: 11 #<\n", "otp.length", "between 6 and 10"},
		{"otp resend negative", baseSections + baseRules + "otp:\n  resend_after: -1s #<\n", "otp.resend_after", "negative"},
		{"verify_concurrency negative", strings.Replace(baseSections, "  jwt:\n", "  jwt:\n    verify_concurrency: -1 #<\n", 1) + baseRules, "identity.jwt.verify_concurrency", "negative"},
		{"verify_concurrency too large", strings.Replace(baseSections, "  jwt:\n", "  jwt:\n    verify_concurrency: 100000 #<\n", 1) + baseRules, "identity.jwt.verify_concurrency", "4096"},
		{"verify_wait zero", strings.Replace(baseSections, "  jwt:\n", "  jwt:\n    verify_wait: 0s #<\n", 1) + baseRules, "identity.jwt.verify_wait", "want 1ms to 10s"},
		{"verify_wait too long", strings.Replace(baseSections, "  jwt:\n", "  jwt:\n    verify_wait: 1m #<\n", 1) + baseRules, "identity.jwt.verify_wait", "want 1ms to 10s"},
		{"unknown action", baseSections + `
policies:
  rules:
    - name: admin
      paths: ["/admin/**"]
      action: stepup #<
`, "policies.rules[0].action", `is not an action: want allow, authenticate, step_up or deny (did you mean step_up?)`},
		{"unknown default action", baseSections + "policies:\n  default: maybe #<\n", "policies.default", `"maybe" is not an action`},
		{"unknown mode", baseSections + `
policies:
  rules:
    - name: admin
      paths: ["/admin/**"]
      action: step_up
      mode: observe #<
`, "policies.rules[0].mode", `is not a mode: want enforce or audit`},
		{"unknown mail driver", strings.Replace(baseSections, "driver: log", "driver: pigeon #<", 1) + baseRules, "mail.driver", `unknown driver "pigeon"`},
		{"unknown store driver", baseSections + baseRules + "store:\n  driver: etcd #<\n", "store.driver", `unknown driver "etcd"`},
		{"unknown identity source", strings.Replace(baseSections, "identity:\n", "identity:\n  source: saml #<\n", 1) + baseRules, "identity.source", `unknown source "saml"`},
		{"unknown smtp tls", strings.Replace(baseSections, "driver: log", "driver: smtp\n  smtp:\n    host: mail.example.com\n    tls: ssl3 #<", 1) + baseRules, "mail.smtp.tls", `unknown mode "ssl3"`},
		{"unknown test expectation", baseSections + baseRules + `  tests:
    - request: "GET http://x/admin"
      expect: stepup #<
`, "policies.tests[0].expect", `is not an action`},
		{"duplicate rule names", baseSections + `
policies:
  rules:
    - name: admin
      paths: ["/admin/**"]
      action: step_up
    - name: admin #<
      paths: ["/other/**"]
      action: deny
`, "policies.rules[1].name", "admin"},
		{"paths and regex", baseSections + `
policies:
  rules:
    - name: admin #<
      paths: ["/admin/**"]
      regex: "^/admin"
      action: step_up
`, "policies.rules[0]", "both paths and regex"},
		{"neither paths nor regex", baseSections + `
policies:
  rules:
    - name: admin #<
      action: step_up
`, "policies.rules[0]", ""},
		{"bad glob", baseSections + `
policies:
  rules:
    - name: admin
      paths:
        - "/ok/**"
        - "/a/**x" #<
      action: step_up
`, "policies.rules[0].paths[1]", "**x"},
		{"bad regex", baseSections + `
policies:
  rules:
    - name: admin
      regex: "^/admin/(" #<
      action: step_up
`, "policies.rules[0].regex", ""},
		{"host with scheme", baseSections + `
policies:
  rules:
    - name: admin
      hosts: ["app.example.com", "https://app.example.com/x"] #<
      paths: ["/admin/**"]
      action: step_up
`, "policies.rules[0].hosts[1]", "without scheme or path"},
		{"secret missing", strings.Replace(baseSections, "second_factor:\n  secret: \""+testSecret+"\"\n", "", 1) + baseRules, "second_factor.secret", "missing"},
		{"secret short", strings.Replace(baseSections, `secret: "`+testSecret+`"`, `secret: "short-secret" #<`, 1) + baseRules, "second_factor.secret", "12 bytes; at least 32"},
		{"secret reused as hmac key", strings.Replace(baseSections, `secret: "`+testSecret+`"`, `secret: "`+testHMACSecret+`" #<`, 1) + baseRules, "second_factor.secret", "must differ from identity.jwt.hmac_secret"},
		{"previous secret short", strings.Replace(baseSections, "second_factor:\n", "second_factor:\n  previous_secrets:\n    - \"short\" #<\n", 1) + baseRules, "second_factor.previous_secrets[0]", "at least 32"},
		{"secret and secret_file", strings.Replace(baseSections, `  secret: "`+testSecret+`"`, `  secret: "`+testSecret+`" #<`+"\n  secret_file: "+filepath.Join(dir, "s"), 1) + baseRules, "second_factor.secret", "not both"},
		{"secret_file missing", strings.Replace(baseSections, `  secret: "`+testSecret+`"`, "  secret_file: "+filepath.Join(dir, "nope")+" #<", 1) + baseRules, "second_factor.secret_file", "no such file"},
		{"public_url not http", baseSections + baseRules + "server:\n  public_url: ftp://example.com #<\n", "server.public_url", "http:// or https://"},
		{"host cookie on http", strings.Replace(baseSections, "second_factor:\n", "second_factor:\n  cookie: __Host-sg #<\n", 1) + baseRules + "server:\n  public_url: http://app.example.com\n", "second_factor.cookie", "needs an https:// server.public_url"},
		{"prefix without slash", baseSections + baseRules + "server:\n  prefix: stepup #<\n", "server.prefix", "must start with /"},
		{"algorithm none", strings.Replace(baseSections, "  jwt:\n", "  jwt:\n    algorithms: [HS256, none] #<\n", 1) + baseRules, "identity.jwt.algorithms[1]", `"none" is never accepted`},
		{"jwt without key source", strings.Replace(baseSections, "  jwt:\n    hmac_secret: \""+testHMACSecret+"\"\n", "  jwt: #<\n    cookie: at\n", 1) + baseRules, "identity.jwt", "no key source"},
		{"short hmac secret", strings.Replace(baseSections, testHMACSecret+`"`, `short" #<`, 1) + baseRules, "identity.jwt.hmac_secret", "5 bytes"},
		{"header without trusted proxies", strings.Replace(baseSections, "identity:\n", "identity:\n  source: header\n  header:\n    trusted_proxies: [] #<\n", 1) + baseRules, "identity.header.trusted_proxies", "required"},
		{"bad trusted proxy", baseSections + baseRules + "server:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - tenet #<\n", "server.trusted_proxies[1]", "not a CIDR"},
		{"smtp host missing", strings.Replace(baseSections, "  driver: log", "  driver: smtp\n  smtp: #<\n    port: 25", 1) + baseRules, "mail.smtp.host", "required"},
		{"file dir missing", strings.Replace(baseSections, "  driver: log", "  driver: file\n  file:\n    dir: "+filepath.Join(dir, "absent")+" #<", 1) + baseRules, "mail.file.dir", "not an existing directory"},
		{"listen equals admin_listen", baseSections + baseRules + "server:\n  listen: 127.0.0.1:8081\n  admin_listen: 127.0.0.1:8081 #<\n", "server.admin_listen", "must differ"},
		{"failing policy test", baseSections + baseRules + `  tests:
    - request: "GET http://app.example.com/admin/users"
      expect: allow
    - request: "GET http://app.example.com/admin/users" #<
      expect: allow
      rule: admin
`, "policies.tests[1]", ""},
		{"unknown top-level key", baseSections + baseRules + "serverr: #<\n  listen: x\n", "serverr", "unknown key (did you mean server?)"},
		{"unknown nested key", baseSections + `
policies:
  rules:
    - name: admin
      pathz: ["/admin/**"] #<
      paths: ["/admin/**"]
      action: step_up
`, "policies.rules[0].pathz", "unknown key (did you mean paths?)"},
		{"duplicate key", baseSections + baseRules + "otp:\n  ttl: 5m\n  ttl: 6m #<\n", "otp.ttl", "duplicate key (first at line"},
		{"not a mapping", "- a\n- b\n", "(top level)", "must be a mapping"},
		{"list where a value belongs", baseSections + baseRules + "upstream:\n  url: [a, b] #<\n", "upstream.url", "single value"},
		{"value where a list belongs", baseSections + `
policies:
  rules:
    - name: admin
      paths: "/admin/**" #<
      action: step_up
`, "policies.rules[0].paths", "must be a list"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.yaml)
			cfg, err := loadConfig(path, noEnv)
			if err == nil {
				t.Fatalf("loadConfig succeeded; want an error at %s", tc.key)
			}
			if cfg != nil {
				t.Errorf("loadConfig returned a config with an error")
			}
			ps := problemsOf(t, err)
			var found *Problem
			for i := range ps {
				if ps[i].Key == tc.key {
					found = &ps[i]
					break
				}
			}
			if found == nil {
				t.Fatalf("no problem at %s; got:\n%v", tc.key, err)
			}
			if want := markedLine(tc.yaml); found.Line != want {
				t.Errorf("line: got %d; want %d (%s)", found.Line, want, found)
			}
			if !strings.Contains(found.Msg, tc.msg) {
				t.Errorf("message: got %q; want it to contain %q", found.Msg, tc.msg)
			}
			where := tc.key
			if found.Label != "" {
				where = found.Label
			}
			want := fmt.Sprintf("%s: %s: ", path, where)
			if found.Line > 0 {
				want = fmt.Sprintf("%s:%d: %s: ", path, found.Line, where)
			}
			if got := found.String(); !strings.HasPrefix(got, want) {
				t.Errorf("got %q; want prefix %q", got, want)
			}
			if !strings.Contains(err.Error(), found.String()) {
				t.Errorf("error text %q lacks %q", err.Error(), found.String())
			}
		})
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	text := strings.Replace(baseSections, "driver: log", "driver: pigeon", 1) + `
otp:
  ttl: soon
  lenght: 6
policies:
  rules:
    - name: admin
      paths: ["/admin/**"]
      action: stepup
`
	_, err := loadConfig(writeConfig(t, text), noEnv)
	ps := problemsOf(t, err)
	var keys []string
	for _, p := range ps {
		keys = append(keys, p.Key)
	}
	want := []string{"mail.driver", "otp.ttl", "otp.lenght", "policies.rules[0].action"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("got %q; want %q (in file order)", keys, want)
	}
}

func TestDefaults(t *testing.T) {
	// The default login_url, with the rule it needs (checkLoginLoop).
	text := strings.Replace(baseSections, "  login_url: \"https://login.example.com/?rd={rd}\"\n", "", 1) +
		"policies:\n  rules:\n    - {name: login, paths: [/login], action: allow}\n"
	cfg, err := loadConfig(writeConfig(t, text), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"server.listen", cfg.Server.Listen, "127.0.0.1:8080"},
		{"server.admin_listen", cfg.Server.AdminListen, "127.0.0.1:9090"},
		{"server.public_url", cfg.Server.PublicURL, "http://127.0.0.1:8080"},
		{"server.prefix", cfg.Server.Prefix, "/.stepup"},
		{"server.case_insensitive_paths", cfg.Server.CaseInsensitivePaths, false},
		{"upstream.url", cfg.Upstream.URL, "http://127.0.0.1:3000"},
		{"upstream.timeout", cfg.Upstream.Timeout, 30 * time.Second},
		{"upstream.forward_token", cfg.Upstream.ForwardToken, false},
		{"identity.source", cfg.Identity.Source, "jwt"},
		{"identity.login_url", cfg.Identity.LoginURL, "/login?rd={rd}"},
		{"identity.jwt.cookie", cfg.Identity.JWT.Cookie, "access_token"},
		{"identity.jwt.algorithms", cfg.Identity.JWT.Algorithms, []string{"HS256"}},
		{"identity.jwt.subject_claim", cfg.Identity.JWT.SubjectClaim, "sub"},
		{"identity.jwt.email_claim", cfg.Identity.JWT.EmailClaim, "email"},
		{"identity.jwt.session_claim", cfg.Identity.JWT.SessionClaim, "sid"},
		{"identity.header.user", cfg.Identity.Header.User, "X-Forwarded-User"},
		{"identity.header.email", cfg.Identity.Header.Email, "X-Forwarded-Email"},
		{"identity.header.trusted_proxies", cfg.Identity.Header.TrustedProxies, []string{"127.0.0.1/32"}},
		// The SPEC default __Host-stepgate cannot be set on http://.
		{"second_factor.cookie", cfg.SecondFactor.Cookie, "stepgate"},
		{"second_factor.header", cfg.SecondFactor.Header, "X-Second-Factor-Token"},
		{"second_factor.ttl", cfg.SecondFactor.TTL, 12 * time.Hour},
		{"otp.length", cfg.OTP.Length, 6},
		{"otp.ttl", cfg.OTP.TTL, 5 * time.Minute},
		{"otp.max_attempts", cfg.OTP.MaxAttempts, 5},
		{"otp.resend_after", cfg.OTP.ResendAfter, 30 * time.Second},
		{"otp.max_sends_per_hour", cfg.OTP.MaxSendsPerHour, 5},
		{"otp.max_failures_per_hour", cfg.OTP.MaxFailuresPerHour, 20},
		{"otp.lockout", cfg.OTP.Lockout, 15 * time.Minute},
		{"mail.from", cfg.Mail.From, "stepgate <no-reply@example.com>"},
		{"mail.subject", cfg.Mail.Subject, "Your verification code"},
		{"mail.smtp.port", cfg.Mail.SMTP.Port, 587},
		{"mail.smtp.tls", cfg.Mail.SMTP.TLS, "starttls"},
		{"store.driver", cfg.Store.Driver, "memory"},
		{"store.redis.addr", cfg.Store.Redis.Addr, "127.0.0.1:6379"},
		{"store.redis.db", cfg.Store.Redis.DB, 0},
		{"store.redis.key_prefix", cfg.Store.Redis.KeyPrefix, "stepgate:"},
		{"store.redis.tls", cfg.Store.Redis.TLS, false},
		{"store.redis.tls_ca_file", cfg.Store.Redis.TLSCAFile, ""},
		{"store.redis.tls_server_name", cfg.Store.Redis.TLSServerName, ""},
		{"store.redis.timeout", cfg.Store.Redis.Timeout, 2 * time.Second},
		{"store.redis.pool_size", cfg.Store.Redis.PoolSize, 0},
		{"policies.default", cfg.Policies.Default, "authenticate"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v; want %#v", c.key, c.got, c.want)
		}
	}
	// Every key has a default, so none is missing from configDefaults.
	for k := range configKeyTypes() {
		if _, ok := configDefaults[k]; !ok {
			t.Errorf("%s has no default", k)
		}
	}
}

func TestDefaultCookieOnHTTPS(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, baseSections+"server:\n  public_url: https://app.example.com\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.SecondFactor.Cookie, "__Host-stepgate"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestEnvOverrides(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "sf")
	if err := os.WriteFile(secretFile, []byte("from-file-but-overridden-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The file names secret_file; the environment's secret wins over it.
	text := strings.Replace(baseSections, `secret: "`+testSecret+`"`, "secret_file: "+secretFile, 1) + baseRules + "otp:\n  ttl: 5m\n"
	env := map[string]string{
		"STEPGATE_OTP_TTL":                 "7m",
		"STEPGATE_MAIL_SMTP_PORT":          "2525",
		"STEPGATE_SERVER_TRUSTED_PROXIES":  "10.0.0.0/8, 192.168.0.0/16",
		"STEPGATE_SECOND_FACTOR_SECRET":    "env-secret-0123456789abcdef0123456789",
		"STEPGATE_IDENTITY_JWT_ISSUER":     "https://idp.example.com",
		"STEPGATE_SERVER_PUBLIC_URL":       "https://app.example.com",
		"STEPGATE_POLICIES_DEFAULT":        "deny",
		"STEPGATE_IDENTITY_JWT_ALGORITHMS": "HS256, HS512",
	}
	cfg, err := loadConfig(writeConfig(t, text), envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"otp.ttl", cfg.OTP.TTL, 7 * time.Minute},
		{"mail.smtp.port", cfg.Mail.SMTP.Port, 2525},
		{"server.trusted_proxies", cfg.Server.TrustedProxies, []string{"10.0.0.0/8", "192.168.0.0/16"}},
		{"second_factor.secret", cfg.SecondFactor.Secret, env["STEPGATE_SECOND_FACTOR_SECRET"]},
		{"identity.jwt.issuer", cfg.Identity.JWT.Issuer, env["STEPGATE_IDENTITY_JWT_ISSUER"]},
		{"identity.jwt.algorithms", cfg.Identity.JWT.Algorithms, []string{"HS256", "HS512"}},
		{"policies.default", cfg.Policies.Default, "deny"},
		{"second_factor.cookie", cfg.SecondFactor.Cookie, "__Host-stepgate"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v; want %#v", c.key, c.got, c.want)
		}
	}
}

func TestEnvErrorsNameTheVariable(t *testing.T) {
	env := map[string]string{"STEPGATE_OTP_LOCKOUT": "forever", "STEPGATE_SECOND_FACTOR_SECRET": "short"}
	_, err := loadConfig(writeConfig(t, baseSections+baseRules), envMap(env))
	ps := problemsOf(t, err)
	want := map[string]string{"otp.lockout": "STEPGATE_OTP_LOCKOUT", "second_factor.secret": "STEPGATE_SECOND_FACTOR_SECRET"}
	for _, p := range ps {
		if w, ok := want[p.Key]; ok {
			if p.Env != w || p.Line != 0 {
				t.Errorf("%s: got env %q line %d; want env %q line 0", p.Key, p.Env, p.Line, w)
			}
			if !strings.Contains(p.String(), "(from "+w+")") {
				t.Errorf("got %q; want it to name %s", p.String(), w)
			}
			delete(want, p.Key)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing problems for %v; got %v", want, err)
	}
	if strings.Contains(err.Error(), "short") && !strings.Contains(err.Error(), "5 bytes") {
		t.Errorf("secret value may be leaking: %v", err)
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sf := write("sf", testSecret+"\n")
	hm := write("hm", testHMACSecret+"\r\n")
	smtp := write("smtp", "smtp-pass\n")
	redis := write("redis", "redis-pass")
	text := fmt.Sprintf(`
identity:
  login_url: ""
  jwt:
    hmac_secret_file: %s
second_factor:
  secret_file: %s
mail:
  driver: smtp
  smtp:
    host: mail.example.com
    password_file: %s
store:
  driver: redis
  redis:
    password_file: %s
`, hm, sf, smtp, redis)
	cfg, err := loadConfig(writeConfig(t, text), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ key, got, want string }{
		{"second_factor.secret", cfg.SecondFactor.Secret, testSecret},
		{"identity.jwt.hmac_secret", cfg.Identity.JWT.HMACSecret, testHMACSecret},
		{"mail.smtp.password", cfg.Mail.SMTP.Password, "smtp-pass"},
		{"store.redis.password", cfg.Store.Redis.Password, "redis-pass"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q; want %q", c.key, c.got, c.want)
		}
	}

	// A secret given by STEPGATE_..._FILE is read the same way.
	env := map[string]string{"STEPGATE_SECOND_FACTOR_SECRET_FILE": write("sf2", "another-secret-from-env-file-0123456789\n")}
	cfg, err = loadConfig(writeConfig(t, baseSections+baseRules), envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.SecondFactor.Secret, "another-secret-from-env-file-0123456789"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}

	// A short secret read from a file is reported at the *_file key.
	short := strings.Replace(baseSections, `secret: "`+testSecret+`"`, "secret_file: "+write("short", "tiny\n")+" #<", 1)
	_, err = loadConfig(writeConfig(t, short), noEnv)
	found := false
	for _, p := range problemsOf(t, err) {
		if p.Key == "second_factor.secret_file" && p.Line == markedLine(short) && strings.Contains(p.Msg, "4 bytes") {
			found = true
		}
	}
	if !found {
		t.Errorf("no short-secret problem at second_factor.secret_file line %d: %v", markedLine(short), err)
	}
}

func TestEnvName(t *testing.T) {
	for key, want := range map[string]string{
		"second_factor.secret":      "STEPGATE_SECOND_FACTOR_SECRET",
		"identity.jwt.jwks_url":     "STEPGATE_IDENTITY_JWT_JWKS_URL",
		"store.redis.password_file": "STEPGATE_STORE_REDIS_PASSWORD_FILE",
	} {
		if got := envName(key); got != want {
			t.Errorf("envName(%q): got %q; want %q", key, got, want)
		}
	}
}

// TestReferenceConfig keeps config.yaml runnable and complete.
func TestReferenceConfig(t *testing.T) {
	cfg, err := loadConfig("config.yaml", noEnv)
	if err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	for k := range configKeyTypes() {
		if _, ok := cfg.meta.lines[k]; !ok {
			t.Errorf("config.yaml does not document %s", k)
		}
	}
}

// TestNullMeansDefault: an empty section or value keeps the default rather
// than zeroing it.
func TestNullMeansDefault(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, baseSections+"server:\notp:\n  ttl:\n  length: ~\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != "127.0.0.1:8080" || cfg.OTP.TTL != 5*time.Minute || cfg.OTP.Length != 6 {
		t.Errorf("got listen %q, otp.ttl %v, otp.length %d; want the defaults", cfg.Server.Listen, cfg.OTP.TTL, cfg.OTP.Length)
	}
}

// testCAPEM returns a self-signed CA certificate in PEM.
func testCAPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "stepgate test redis CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestRedisStoreConfig(t *testing.T) {
	dir := t.TempDir()
	caFile, caPEM := filepath.Join(dir, "ca.pem"), testCAPEM(t)
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("this is not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	redis := baseSections + baseRules + "store:\n  driver: redis\n  redis:\n"

	t.Run("valid", func(t *testing.T) {
		path := writeConfig(t, redis+`    tls: true
    tls_ca_file: "`+caFile+`"
    tls_server_name: redis.internal
    timeout: 500ms
    pool_size: 200
`)
		cfg, err := loadConfig(path, noEnv)
		if err != nil {
			t.Fatalf("loadConfig: %v", err)
		}
		r := cfg.Store.Redis
		if !r.TLS || r.Timeout != 500*time.Millisecond || r.PoolSize != 200 || r.TLSServerName != "redis.internal" {
			t.Errorf("store.redis: got %+v; want tls true, timeout 500ms, pool_size 200, tls_server_name redis.internal", r)
		}
		conf, err := cfg.redisTLS()
		if err != nil {
			t.Fatalf("redisTLS: %v", err)
		}
		if conf.MinVersion != tls.VersionTLS12 {
			t.Errorf("MinVersion: got %#x; want TLS 1.2 (%#x)", conf.MinVersion, tls.VersionTLS12)
		}
		if conf.ServerName != "redis.internal" {
			t.Errorf("ServerName: got %q; want %q", conf.ServerName, "redis.internal")
		}
		want := x509.NewCertPool()
		want.AppendCertsFromPEM(caPEM)
		if conf.RootCAs == nil || !conf.RootCAs.Equal(want) {
			t.Errorf("RootCAs: got %v; want exactly the CA in %s", conf.RootCAs, caFile)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		cfg, err := loadConfig(writeConfig(t, redis+"    db: 1\n"), noEnv)
		if err != nil {
			t.Fatalf("loadConfig: %v", err)
		}
		r := cfg.Store.Redis
		if r.TLS || r.TLSCAFile != "" || r.TLSServerName != "" || r.Timeout != 2*time.Second || r.PoolSize != 0 {
			t.Errorf("store.redis: got %+v; want tls false, no CA file or server name, timeout 2s, pool_size 0", r)
		}
		if conf, err := cfg.redisTLS(); conf != nil || err != nil {
			t.Errorf("redisTLS without tls: got %v, %v; want nil, nil", conf, err)
		}
	})
	t.Run("tls with system roots", func(t *testing.T) {
		cfg, err := loadConfig(writeConfig(t, redis+"    tls: true\n"), noEnv)
		if err != nil {
			t.Fatalf("loadConfig: %v", err)
		}
		conf, err := cfg.redisTLS()
		if err != nil || conf == nil || conf.RootCAs != nil {
			t.Errorf("redisTLS: got %+v, %v; want a config with nil RootCAs (system roots)", conf, err)
		}
	})
	t.Run("environment", func(t *testing.T) {
		cfg, err := loadConfig(writeConfig(t, redis+"    db: 1\n"), envMap(map[string]string{
			"STEPGATE_STORE_REDIS_TLS":         "true",
			"STEPGATE_STORE_REDIS_TLS_CA_FILE": caFile,
			"STEPGATE_STORE_REDIS_TIMEOUT":     "3s",
			"STEPGATE_STORE_REDIS_POOL_SIZE":   "128",
		}))
		if err != nil {
			t.Fatalf("loadConfig: %v", err)
		}
		if r := cfg.Store.Redis; !r.TLS || r.TLSCAFile != caFile || r.Timeout != 3*time.Second || r.PoolSize != 128 {
			t.Errorf("store.redis: got %+v; want the environment's values", r)
		}
	})

	cases := []struct {
		name string
		yaml string
		key  string // the key path the error must name
		msg  string // a part of the message
	}{
		{"ca file missing", redis + "    tls: true\n    tls_ca_file: \"" + missing + "\" #<\n", "store.redis.tls_ca_file", "no such file"},
		{"ca file not PEM", redis + "    tls: true\n    tls_ca_file: \"" + notPEM + "\" #<\n", "store.redis.tls_ca_file", "no PEM certificate"},
		{"ca file is a directory", redis + "    tls: true\n    tls_ca_file: \"" + dir + "\" #<\n", "store.redis.tls_ca_file", "is a directory"},
		{"ca file without tls", redis + "    tls_ca_file: \"" + caFile + "\" #<\n", "store.redis.tls_ca_file", "store.redis.tls: true"},
		{"server name without tls", redis + "    tls_server_name: redis.internal #<\n", "store.redis.tls_server_name", "store.redis.tls: true"},
		{"server name with port", redis + "    tls: true\n    tls_server_name: redis.internal:6380 #<\n", "store.redis.tls_server_name", "host name only"},
		{"tls not a bool", redis + "    tls: sometimes #<\n", "store.redis.tls", "not true or false"},
		{"negative timeout", redis + "    timeout: -1s #<\n", "store.redis.timeout", "negative"},
		{"zero timeout", redis + "    timeout: 0s #<\n", "store.redis.timeout", "more than 0"},
		{"bad timeout", redis + "    timeout: soon #<\n", "store.redis.timeout", "not a duration"},
		{"negative pool size", redis + "    pool_size: -1 #<\n", "store.redis.pool_size", "must not be negative"},
		{"pool size not a number", redis + "    pool_size: many #<\n", "store.redis.pool_size", "not a whole number"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.yaml)
			cfg, err := loadConfig(path, noEnv)
			if err == nil {
				t.Fatalf("loadConfig succeeded; want an error at %s", tc.key)
			}
			if cfg != nil {
				t.Errorf("loadConfig returned a config with an error")
			}
			ps := problemsOf(t, err)
			var found []Problem
			for _, p := range ps {
				if p.Key == tc.key {
					found = append(found, p)
				}
			}
			if len(found) != 1 {
				t.Fatalf("problems at %s: got %d; want 1; all:\n%v", tc.key, len(found), err)
			}
			if want := markedLine(tc.yaml); found[0].Line != want {
				t.Errorf("line: got %d; want %d (%s)", found[0].Line, want, found[0])
			}
			if !strings.Contains(found[0].Msg, tc.msg) {
				t.Errorf("message: got %q; want it to contain %q", found[0].Msg, tc.msg)
			}
		})
	}
}

// TestNewRedisStoreWiring checks that newStore passes the store.redis TLS
// and timeout keys on to the Store: TLS to a plain-TCP Redis must fail
// (so TLS is on), and a Redis that never answers must fail within the
// configured timeout rather than redisstore's 2s default.
func TestNewRedisStoreWiring(t *testing.T) {
	plain := redistest.Start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		// Accept and hold connections without answering, like a wedged
		// Redis; closing the listener at the end closes them too.
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	tests := []struct {
		name    string
		redis   RedisConfig
		ok      bool
		maxTime time.Duration
	}{
		{"plain", RedisConfig{Addr: plain, Timeout: time.Second}, true, time.Second},
		{"tls to a plain server", RedisConfig{Addr: plain, TLS: true, Timeout: time.Second}, false, 3 * time.Second},
		{"timeout", RedisConfig{Addr: l.Addr().String(), Timeout: 100 * time.Millisecond, PoolSize: 1}, false, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{Store: StoreConfig{Driver: "redis", Redis: tt.redis}}
			s, err := newStore(cfg)
			if err != nil {
				t.Fatalf("newStore: %v", err)
			}
			defer s.(interface{ Close() error }).Close()
			start := time.Now()
			err = s.(interface{ Ping(context.Context) error }).Ping(t.Context())
			if (err == nil) != tt.ok {
				t.Errorf("Ping: got %v; want ok=%v", err, tt.ok)
			}
			if d := time.Since(start); d > tt.maxTime {
				t.Errorf("Ping took %v; want under %v", d, tt.maxTime)
			}
		})
	}
}
