package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkOut runs `stepgate check` on text with env and returns stdout,
// stderr and whether it passed.
func checkOut(t *testing.T, text string, env map[string]string) (path, out, errOut string, ok bool) {
	t.Helper()
	path = writeConfig(t, text)
	out, errOut, err := runCmd(t, env, "check", "-config", path)
	return path, out, errOut, err == nil
}

const oneTest = `  tests:
    - request: "GET http://app.example.com/admin/x"
      expect: step_up
`

// TestCheckShadowedRule: a first rule with /** makes the later step_up
// and deny rules unreachable; check names them, the rule that shadows
// them, and their lines.
func TestCheckShadowedRule(t *testing.T) {
	text := baseSections + `
policies:
  rules:
    - name: everything
      paths: ["/**"]
      action: authenticate
    - name: admin #<
      paths: ["/admin/**"]
      action: step_up
    - name: no-delete
      paths: ["/items/*"]
      methods: [DELETE]
      action: deny
` + oneTest
	path, out, errOut, ok := checkOut(t, text, nil)
	if ok {
		t.Fatalf("check passed (%q); want the shadowed rules refused", out)
	}
	for _, want := range []string{
		fmt.Sprintf(`%s:%d: rule "admin": can never decide: every request it matches is matched first by rule "everything"`, path, markedLine(text)),
		`rule "no-delete": can never decide: every request it matches is matched first by rule "everything"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	// And at load, for serve.
	if _, err := loadConfig(path, noEnv); err == nil || !strings.Contains(err.Error(), "can never decide") {
		t.Errorf("loadConfig: got %v; want the shadowed rule refused", err)
	}
}

// TestCheckWarnings: no policy tests and an unanchored regex are
// warnings: printed, counted in the OK line, and check passes.
func TestCheckWarnings(t *testing.T) {
	text := baseSections + `
policies:
  rules:
    - name: admin
      regex: "/admin/" #<
      action: step_up
`
	path, out, errOut, ok := checkOut(t, text, nil)
	if !ok {
		t.Fatalf("check failed; want warnings only:\n%s", errOut)
	}
	for _, want := range []string{
		fmt.Sprintf(`warning: %s:%d: rule "admin": regex "/admin/": is not anchored: it matches anywhere in the path, so "/admin/" also matches "/other/admin/"; start it with ^`, path, markedLine(text)),
		"warning: " + path + ":" + fmt.Sprint(lineOf(text, "policies:")) + ": policies.tests: there are no policy tests",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if want := "config OK: 1 rule, 0 policy tests passed, 2 warnings\n"; out != want {
		t.Errorf("stdout: got %q; want %q", out, want)
	}
}

// TestCheckLoginLoop: a login_url on this origin that the policy does not
// allow is refused with the rule to add; another origin, or an allowed
// path, passes.
func TestCheckLoginLoop(t *testing.T) {
	noLogin := strings.Replace(baseSections, "  login_url: \"https://login.example.com/?rd={rd}\"\n", "", 1)
	tests := []struct {
		name, text string
		want       string // "" means check passes
	}{
		{"default login_url, default authenticate", noLogin + baseRules + oneTest,
			`identity.login_url (default "/login?rd={rd}"): the policy decides GET /login authenticate (by policies.default), so a signed-out browser sent to the login page is sent there again, forever; allow it with a rule before the others: {name: login, paths: ["/login"], action: allow}`},
		{"same-origin absolute login_url caught by a rule", strings.Replace(noLogin, "identity:\n", "identity:\n  login_url: \"http://127.0.0.1:8080/sso/start?next={rd}\"\n", 1) +
			"policies:\n  default: allow\n  rules:\n    - {name: sso, paths: [/sso/**], action: authenticate}\n" + baseRules[len("\npolicies:\n  rules:\n"):] + oneTest,
			`identity.login_url: the policy decides GET /sso/start authenticate (by rule "sso")`},
		{"login allowed", noLogin + baseRules + "    - {name: login, paths: [/login], action: allow}\n" + oneTest, ""},
		{"login on another origin", baseSections + baseRules + oneTest, ""},
		{"no login_url", strings.Replace(noLogin, "identity:\n", "identity:\n  login_url: \"\"\n", 1) + baseRules + oneTest, ""},
	}
	for _, tt := range tests {
		_, out, errOut, ok := checkOut(t, tt.text, nil)
		switch {
		case tt.want == "" && !ok:
			t.Errorf("%s: check failed; want it to pass:\n%s", tt.name, errOut)
		case tt.want != "" && ok:
			t.Errorf("%s: check passed (%q); want %q", tt.name, out, tt.want)
		case tt.want != "" && !strings.Contains(errOut, tt.want):
			t.Errorf("%s: stderr lacks %q:\n%s", tt.name, tt.want, errOut)
		}
	}
}

// TestCheckSilentSurprises: max_age beyond second_factor.ttl, an unknown
// STEPGATE_ variable, the overrides in effect (names, never values), no
// internal action numbers, one message for a missing secret file.
func TestCheckSilentSurprises(t *testing.T) {
	t.Run("max_age over ttl", func(t *testing.T) {
		text := baseSections + "second_factor:\n  ttl: 1h\n" + `
policies:
  rules:
    - name: admin
      paths: ["/admin/**"]
      action: step_up
      max_age: 24h #<
` + oneTest
		text = strings.Replace(text, "second_factor:\n  secret:", "second_factor:\n  ttl: 1h\n  secret:", 1)
		text = strings.Replace(text, "second_factor:\n  ttl: 1h\n\n", "\n", 1)
		path, _, errOut, ok := checkOut(t, text, nil)
		if !ok {
			t.Fatalf("check failed:\n%s", errOut)
		}
		want := fmt.Sprintf(`warning: %s:%d: rule "admin": max_age 24h: is longer than second_factor.ttl (1h): a second factor is never that old`, path, markedLine(text))
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	})
	t.Run("environment", func(t *testing.T) {
		const secret = "env-second-factor-secret-0123456789abcdef"
		env := map[string]string{
			"STEPGATE_OTP_TLL":              "1m",
			"STEPGATE_SECOND_FACTOR_SECRET": secret,
			"STEPGATE_LOG_LEVEL":            "debug",
			"STEPGATE_REQUIRE_REDIS":        "1", // the test suite's own switch
			"HOME":                          "/root",
		}
		_, out, errOut, ok := checkOut(t, baseSections+baseRules+oneTest, env)
		if !ok {
			t.Fatalf("check failed:\n%s", errOut)
		}
		if want := "warning: STEPGATE_OTP_TLL: environment variable names no config key, so it is ignored (did you mean STEPGATE_OTP_TTL?)"; !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
		if strings.Contains(errOut, "STEPGATE_REQUIRE_REDIS") {
			t.Errorf("stderr warns about the test switch STEPGATE_REQUIRE_REDIS:\n%s", errOut)
		}
		if want := "environment overrides: STEPGATE_LOG_LEVEL, STEPGATE_SECOND_FACTOR_SECRET\n"; !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
		if strings.Contains(out+errOut, secret) {
			t.Errorf("check printed the secret's value:\n%s%s", out, errOut)
		}
	})
	t.Run("no internal values", func(t *testing.T) {
		text := baseSections + `
policies:
  rules:
    - name: admin
      paths: ["/admin/**"]
      action: stepup
      max_age: 10m
  default: stepup
`
		_, _, errOut, ok := checkOut(t, text, nil)
		if ok {
			t.Fatal("check passed; want the unknown actions refused")
		}
		for _, bad := range []string{"action(", "mode(", "an unknown action"} {
			if strings.Contains(errOut, bad) {
				t.Errorf("stderr has the internal %q:\n%s", bad, errOut)
			}
		}
		if want := `rule "admin": action "stepup": is not an action: want allow, authenticate, step_up or deny (did you mean step_up?)`; !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	})
	t.Run("missing secret_file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope")
		text := strings.Replace(baseSections, `  secret: "`+testSecret+`"`, "  secret_file: "+missing, 1) + baseRules + oneTest
		_, _, errOut, ok := checkOut(t, text, nil)
		if ok {
			t.Fatal("check passed; want the missing file refused")
		}
		if n := strings.Count(errOut, "second_factor."); n != 1 || !strings.Contains(errOut, "second_factor.secret_file: ") {
			t.Errorf("got %d second_factor messages; want one at second_factor.secret_file:\n%s", n, errOut)
		}
	})
}

// TestCheckMessagesQuote: rule problems name the rule and quote the whole
// pattern; a failing policy test quotes its request line.
func TestCheckMessagesQuote(t *testing.T) {
	text := baseSections + `
policies:
  rules:
    - name: glob-rule
      paths: ["/files/**x"] #<
      action: deny
    - name: public-pages
      paths: ["/public/**"]
      action: allow
`
	path, _, errOut, _ := checkOut(t, text, nil)
	if want := fmt.Sprintf(`%s:%d: rule "glob-rule": paths[0] "/files/**x": segment "**x" mixes * with other characters; use * or ** as a whole segment`, path, markedLine(text)); !strings.Contains(errOut, want) {
		t.Errorf("stderr lacks %q:\n%s", want, errOut)
	}
	text = strings.Replace(text, `"/files/**x"] #<`, `"/files/**"]`, 1) + `  tests:
    - request: "GET http://app.example/public/page-x" #<
      expect: deny
`
	path, _, errOut, _ = checkOut(t, text, nil)
	if want := fmt.Sprintf(`%s:%d: policies.tests[0] "GET http://app.example/public/page-x": got allow by rule "public-pages"; want deny`, path, markedLine(text)); !strings.Contains(errOut, want) {
		t.Errorf("stderr lacks %q:\n%s", want, errOut)
	}
}

// TestExplainPath: explain takes a path as policy tests do ("GET
// /static/app.css"), decides it as a policy test with that line would,
// and says that rules with hosts cannot match it.
func TestExplainPath(t *testing.T) {
	text := baseSections + `
policies:
  rules:
    - name: static
      paths: ["/static/**"]
      action: allow
    - name: admin-host
      hosts: [admin.example.com]
      paths: ["/**"]
      action: deny
` + "  tests:\n    - request: \"GET /static/app.css\"\n      expect: allow\n      rule: static\n"
	path := writeConfig(t, text)
	out, errOut, err := runCmd(t, nil, "explain", "-config", path, "GET", "/static/app.css#top")
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, errOut)
	}
	for _, want := range []string{
		"request: GET /static/app.css (no Host: rules with hosts do not match",
		`decision: allow by rule "static"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// A Host header picks a host, as for a full URL.
	out, _, err = runCmd(t, nil, "explain", "-config", path, "-H", "Host: admin.example.com", "GET", "/x")
	if err != nil || !strings.Contains(out, `decision: deny by rule "admin-host"`) {
		t.Errorf("explain with -H Host: got %v\n%s; want deny by admin-host", err, out)
	}
	if _, _, err := runCmd(t, nil, "check", "-config", path); err != nil {
		t.Errorf("check: the same line as a policy test fails: %v", err)
	}
}

// TestCheckYAMLSyntax: the common YAML mistakes are reported at the line
// to fix, with the hint, in the file:line: message form; yaml.v3 names
// another line for most of them.
func TestCheckYAMLSyntax(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"key mis-indented in a list item", baseSections + `
policies:
  rules:
    - name: admin
      paths: ["/admin/**"]
     action: step_up #<
`, "this line's indentation (5 spaces) matches no section above it: indent it like the keys it belongs with (4 or 6 spaces) (YAML: did not find expected '-' indicator)"},
		{"key indented under a value", baseSections + `
policies:
  rules:
    - name: admin
      paths: ["/admin/**"]
        action: step_up #<
`, "this line is indented more (8 spaces) than the line above, which does not open a section"},
		{"key at the level of the items", baseSections + `
policies:
  rules:
    - name: admin
    action: step_up #<
`, "this key is at the indentation of the list items above (4 spaces) but is not an item: indent it under the item (6 spaces)"},
		{"tab", baseSections + "otp:\n\tttl: 5m #<\n", "a tab in the indentation: YAML indents with spaces only"},
		{"regex escape in double quotes", baseSections + `
policies:
  rules:
    - name: api
      regex: "^/api\.v1/" #<
      action: step_up
`, `"\." is not an escape YAML knows inside double quotes; write the value in single quotes`},
		{"quote left open", baseSections + "mail:\n  from: \"stepgate <a@example.com> #<\n", "the value's opening \" has no closing"},
	}
	for _, tt := range tests {
		path, out, errOut, ok := checkOut(t, tt.text, nil)
		if ok {
			t.Errorf("%s: check passed (%q)", tt.name, out)
			continue
		}
		if want := fmt.Sprintf("%s:%d: %s", path, markedLine(tt.text), tt.want); !strings.Contains(errOut, want) {
			t.Errorf("%s: stderr lacks %q:\n%s", tt.name, want, errOut)
		}
	}
}

// TestCheckMisplacedTopLevelKey: a section's key at the top level names
// the section to indent it under, the one just above it first.
func TestCheckMisplacedTopLevelKey(t *testing.T) {
	text := baseSections + baseRules + oneTest + "otp:\n  length: 6\nttl: 5m #<\n"
	path, _, errOut, ok := checkOut(t, text, nil)
	if ok {
		t.Fatal("check passed; want the top-level ttl refused")
	}
	want := fmt.Sprintf("%s:%d: ttl: unknown key (did you mean otp.ttl or second_factor.ttl? indent it under otp:)", path, markedLine(text))
	if !strings.Contains(errOut, want) {
		t.Errorf("stderr lacks %q:\n%s", want, errOut)
	}
}

// FuzzYAMLSyntaxProblem: the YAML mistake finder never panics and names a
// line of the text, on any text yaml refuses.
func FuzzYAMLSyntaxProblem(f *testing.F) {
	for _, s := range []string{
		"a:\n  b: 1\n   c: 2\n", "a:\n\tb: 1\n", "a: \"\\.\"\n", "a: 'x\n", "- a\n b: [1,\n  2]\n",
		"k: |\n  text\n x: 1\n", "- - a\n  -\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := yamlSyntaxProblem("f.yaml", []byte(s), errors.New("yaml: line 1: x"))
		if n := strings.Count(s, "\n") + 1; p.Line < 0 || p.Line > n {
			t.Errorf("line %d outside the text's %d lines", p.Line, n)
		}
		if p.Msg == "" {
			t.Error("empty message")
		}
	})
}

// TestNoSpecReferences: what a user reads (the README, the reference
// config, usage and explain's output) points to the product's own docs,
// never to "SPEC §" sections a user cannot open.
func TestNoSpecReferences(t *testing.T) {
	for _, f := range []string{"README.md", "config.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.Index(string(b), "SPEC §"); i >= 0 {
			t.Errorf("%s mentions %q", f, string(b)[i:min(len(b), i+20)])
		}
	}
	path := writeConfig(t, baseSections+baseRules+oneTest)
	var all strings.Builder
	for _, args := range [][]string{
		{"help"}, {"check", "-h"}, {"explain", "-h"}, {"serve", "-h"}, {"demo", "-h"},
		{"explain", "-config", path, "GET", "http://app.example.com/a/%2e%2e/admin"},
	} {
		out, errOut, _ := runCmd(t, nil, args...)
		all.WriteString(out + errOut)
	}
	if strings.Contains(all.String(), "SPEC") {
		t.Errorf("usage or explain output mentions the SPEC:\n%s", all.String())
	}
}

// TestGatePagesNameTheSite: the gate's own pages (here the 403 of a deny
// rule) carry ui.app_name in the title, as the /.stepup pages do.
func TestGatePagesNameTheSite(t *testing.T) {
	text := baseSections + "ui:\n  app_name: Acme Portal\n" + `
policies:
  rules:
    - name: blocked
      paths: ["/blocked/**"]
      action: deny
  tests:
    - request: "GET http://app.example.com/blocked/x"
      expect: deny
`
	cfg, err := loadConfig(writeConfig(t, text), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := newSharedParts(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.store.Close()
	gate, err := buildGate(cfg, shared)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/blocked/x", nil)
	r.Host = "app.example.com"
	r.Header.Set("Accept", "text/html")
	w := httptest.NewRecorder()
	gate.ServeHTTP(w, r)
	if body := w.Body.String(); w.Code != 403 || !strings.Contains(body, " · Acme Portal</title>") {
		t.Errorf("deny page: got %d\n%s\nwant 403 with the site's name in the title", w.Code, body)
	}
}
