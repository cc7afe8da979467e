package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// mustCompileLoose is mustCompile for random policies, which may have
// shadowed rules.
func mustCompileLoose(t testing.TB, c Config) *Policy {
	t.Helper()
	if c.Default == 0 {
		c.Default = Authenticate
	}
	if c.DefaultMaxAge == 0 {
		c.DefaultMaxAge = time.Hour
	}
	p, err := compile(c, true)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return p
}

func mustCompile(t testing.TB, c Config) *Policy {
	t.Helper()
	if c.Default == 0 {
		c.Default = Authenticate
	}
	if c.DefaultMaxAge == 0 {
		c.DefaultMaxAge = time.Hour
	}
	p, err := Compile(c)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func TestGlob(t *testing.T) {
	tests := []struct {
		glob, path string
		want       bool
	}{
		{"/admin/**", "/admin", true},
		{"/admin/**", "/admin/", true},
		{"/admin/**", "/admin/users/1", true},
		{"/admin/**", "/administrator", false},
		{"/admin/**", "/", false},
		{"/admin", "/admin", true},
		{"/admin", "/admin/", true},
		{"/admin", "/admin/x", false},
		{"/admin/", "/admin", true}, // a trailing '/' in the glob is ignored
		{"/admin/*", "/admin/x", true},
		{"/admin/*", "/admin/x/", true},
		{"/admin/*", "/admin", false},
		{"/admin/*", "/admin/", false},
		{"/admin/*", "/admin/x/y", false},
		{"/*/settings", "/t1/settings", true},
		{"/*/settings", "/settings", false},
		{"/**/settings", "/settings", true},
		{"/**/settings", "/a/b/c/settings", true},
		{"/**/settings", "/a/settings/x", false},
		{"/a/**/b/**/c", "/a/b/c", true},
		{"/a/**/b/**/c", "/a/x/b/y/z/c", true},
		{"/a/**/b/**/c", "/a/x/b/y/z/c/d", false},
		{"/a/**/b/*", "/a/b/b/b", true},
		{"/**", "/", true},
		{"/**", "/anything/at/all", true},
		{"/", "/", true},
		{"/", "/x", false},
		{"/**/**", "/x", true},
		{"/*/*", "/x", false},
		{"/%61dmin", "/admin", true}, // glob literals are canonical too
		{"/caf%c3%a9", "/caf%C3%A9", true},
		{"/café", "/caf%C3%A9", true},
		{"/Admin", "/admin", false},
	}
	for _, tt := range tests {
		g, err := compileGlob(tt.glob, false)
		if err != nil {
			t.Errorf("compileGlob(%q): %v", tt.glob, err)
			continue
		}
		if got := g.match(tt.path, false); got != tt.want {
			t.Errorf("glob %q on %q: got %v; want %v", tt.glob, tt.path, got, tt.want)
		}
		// The indexed Match must agree with the glob on its own.
		p := mustCompile(t, Config{Default: Allow, Rules: []Rule{{Name: "r", Paths: []string{tt.glob}, Action: Deny}}})
		want := Allow
		if tt.want {
			want = Deny
		}
		if got := p.Match(Request{Method: "GET", Path: tt.path}).Action; got != want {
			t.Errorf("Match with glob %q on %q: got %q; want %q", tt.glob, tt.path, got, want)
		}
	}
}

func TestHosts(t *testing.T) {
	tests := []struct {
		rule, host string
		want       bool
	}{
		{"app.example.com", "app.example.com", true},
		{"app.example.com", "APP.Example.COM", true},
		{"app.example.com", "app.example.com:8443", true},
		{"app.example.com", "app.example.com.", true},
		{"app.example.com", "app.example.com.:80", true},
		{"App.Example.com.", "app.example.com", true},
		{"app.example.com", "evil.com", false},
		{"app.example.com", "app.example.com.evil.com", false},
		{"app.example.com", "", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com:443", true},
		{"*.example.com", "A.EXAMPLE.COM.", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", ".example.com", false},
		{"*.example.com", "badexample.com", false},
		{"*.example.com.", "x.example.com", true},
		{"[::1]", "[::1]:8080", true},
		{"::1", "[::1]", true},
		{"::1", "[0:0:0:0:0:0:0:1]:80", true},
		{"127.0.0.1", "127.0.0.1:8080", true},
		{"127.0.0.1", "127.0.0.2", false},
	}
	for _, tt := range tests {
		p := mustCompile(t, Config{Default: Allow, Rules: []Rule{{Name: "r", Hosts: []string{tt.rule}, Paths: []string{"/**"}, Action: Deny}}})
		got := p.Match(Request{Method: "GET", Host: tt.host, Path: "/x"}).Action == Deny
		if got != tt.want {
			t.Errorf("host rule %q, Host %q: got %v; want %v", tt.rule, tt.host, got, tt.want)
		}
	}
}

func TestMethods(t *testing.T) {
	p := mustCompile(t, Config{Default: Allow, Rules: []Rule{
		{Name: "read", Methods: []string{"GET"}, Paths: []string{"/r"}, Action: Deny},
		{Name: "write", Methods: []string{"POST", "PUT"}, Paths: []string{"/w"}, Action: Deny},
		{Name: "any", Paths: []string{"/a"}, Action: Deny},
	}})
	tests := []struct {
		method, path string
		want         Action
	}{
		{"GET", "/r", Deny},
		{"HEAD", "/r", Deny}, // GET covers HEAD
		{"POST", "/r", Allow},
		{"get", "/r", Allow}, // exact compare as sent
		{"POST", "/w", Deny},
		{"PUT", "/w", Deny},
		{"HEAD", "/w", Allow},
		{"post", "/w", Allow},
		{"get", "/a", Deny}, // rules without methods match any spelling
		{"BREW", "/a", Deny},
	}
	for _, tt := range tests {
		if got := p.Match(Request{Method: tt.method, Path: tt.path}).Action; got != tt.want {
			t.Errorf("%s %s: got %q; want %q", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestFirstMatchWins(t *testing.T) {
	p := mustCompile(t, Config{Default: Authenticate, Rules: []Rule{
		{Name: "health", Paths: []string{"/admin/health"}, Action: Allow},
		{Name: "admin-host", Hosts: []string{"admin.example.com"}, Paths: []string{"/**"}, Action: Deny},
		{Name: "admin", Paths: []string{"/admin/**"}, Action: StepUp, MaxAge: 5 * time.Minute, ACR: "urn:x:mfa"},
		{Name: "api", Regex: `^/api/v[0-9]+/pay`, Action: StepUp},
	}})
	tests := []struct {
		host, path string
		rule       string
		index      int
		action     Action
	}{
		{"app.example.com", "/admin/health", "health", 0, Allow},
		{"admin.example.com", "/admin/health", "health", 0, Allow},
		{"admin.example.com", "/admin/users", "admin-host", 1, Deny},
		{"app.example.com", "/admin/users", "admin", 2, StepUp},
		{"app.example.com", "/api/v2/payments", "api", 3, StepUp},
		{"app.example.com", "/api/vx/payments", "default", -1, Authenticate},
		{"app.example.com", "/other", "default", -1, Authenticate},
	}
	for _, tt := range tests {
		d := p.Match(Request{Method: "GET", Host: tt.host, Path: tt.path})
		if d.Rule != tt.rule || d.Index != tt.index || d.Action != tt.action {
			t.Errorf("%s%s: got %q (%d) %q; want %q (%d) %q", tt.host, tt.path, d.Rule, d.Index, d.Action, tt.rule, tt.index, tt.action)
		}
	}
	d := p.Match(Request{Method: "GET", Path: "/admin/x"})
	if d.MaxAge != 5*time.Minute || d.ACR != "urn:x:mfa" {
		t.Errorf("admin decision: got max_age %v acr %q; want 5m0s %q", d.MaxAge, d.ACR, "urn:x:mfa")
	}
	if d := p.Match(Request{Method: "GET", Path: "/api/v1/pay"}); d.MaxAge != time.Hour {
		t.Errorf("api decision: got max_age %v; want the default 1h0m0s", d.MaxAge)
	}
	if d := p.Match(Request{Method: "GET", Path: "/admin/health"}); d.MaxAge != 0 {
		t.Errorf("allow decision: got max_age %v; want 0", d.MaxAge)
	}
}

func TestOverridesStrictest(t *testing.T) {
	p := mustCompile(t, Config{Default: Authenticate, Rules: []Rule{
		{Name: "post-ok", Methods: []string{"POST"}, Paths: []string{"/items/**"}, Action: Allow},
		{Name: "delete", Methods: []string{"DELETE"}, Paths: []string{"/items/**"}, Action: StepUp},
		{Name: "put-audit", Methods: []string{"PUT"}, Paths: []string{"/items/**"}, Action: StepUp, Mode: Audit},
		{Name: "patch", Methods: []string{"PATCH"}, Paths: []string{"/items/**"}, Action: StepUp, MaxAge: time.Minute},
		{Name: "purge", Methods: []string{"PURGE"}, Paths: []string{"/items/**"}, Action: Deny},
	}})
	tests := []struct {
		method    string
		overrides []string
		rule      string
	}{
		{"POST", nil, "post-ok"},
		{"POST", []string{"DELETE"}, "delete"},
		{"POST", []string{"delete"}, "delete"}, // override values are upper-cased
		{"POST", []string{"DeLeTe"}, "delete"},
		{"POST", []string{"GET"}, "default"},             // authenticate beats allow
		{"POST", []string{"PUT"}, "put-audit"},           // step_up (audit) beats allow
		{"POST", []string{"PUT", "DELETE"}, "delete"},    // enforce beats audit
		{"POST", []string{"DELETE", "PUT"}, "delete"},    // ... in either order
		{"POST", []string{"DELETE", "PATCH"}, "patch"},   // shorter max_age is stricter
		{"POST", []string{"PATCH", "DELETE"}, "patch"},   //
		{"POST", []string{"DELETE", "PURGE"}, "purge"},   // deny beats all
		{"POST", []string{"DELETE", "DELETE"}, "delete"}, // ties keep the earliest
		{"POST", []string{""}, "default"},
	}
	for _, tt := range tests {
		d := p.Match(Request{Method: tt.method, Overrides: tt.overrides, Path: "/items/1"})
		if d.Rule != tt.rule {
			t.Errorf("%s overridden by %q: got %q; want %q", tt.method, tt.overrides, d.Rule, tt.rule)
		}
	}
}

func TestCaseInsensitivePaths(t *testing.T) {
	p := mustCompile(t, Config{CaseInsensitivePaths: true, Rules: []Rule{
		{Name: "admin", Paths: []string{"/Admin/**"}, Action: StepUp},
		{Name: "cafe", Paths: []string{"/caf%c3%a9"}, Action: Deny},
		{Name: "api", Regex: `^/API/Pay`, Action: Deny},
	}})
	tests := []struct {
		path, rule string
	}{
		{"/admin", "admin"},
		{"/ADMIN/users", "admin"},
		{"/aDmIn/" + strings.Repeat("x", 200), "admin"},
		{"/CAF%C3%A9", "cafe"},
		{"/api/pay", "api"},
		{"/Api/PAY/x", "api"},
		{"/administrator", "default"},
	}
	for _, tt := range tests {
		if got := p.Match(Request{Method: "GET", Path: tt.path}).Rule; got != tt.rule {
			t.Errorf("case-insensitive %q: got %q; want %q", tt.path, got, tt.rule)
		}
	}
	// A long first segment takes the slow lowering path in the index.
	long := mustCompile(t, Config{CaseInsensitivePaths: true, Rules: []Rule{
		{Name: "long", Paths: []string{"/" + strings.Repeat("a", 300) + "/**"}, Action: Deny},
	}})
	if got := long.Match(Request{Method: "GET", Path: "/" + strings.Repeat("A", 300) + "/x"}).Rule; got != "long" {
		t.Errorf("case-insensitive long segment: got %q; want %q", got, "long")
	}
}

func TestAuditMode(t *testing.T) {
	p := mustCompile(t, Config{Rules: []Rule{
		{Name: "trial", Paths: []string{"/new/**"}, Action: Deny, Mode: Audit},
	}})
	d := p.Match(Request{Method: "GET", Path: "/new/x"})
	if d.Action != Deny || d.Mode != Audit || d.Rule != "trial" {
		t.Errorf("audit rule: got %q %q %q; want %q %q %q", d.Action, d.Mode, d.Rule, Deny, Audit, "trial")
	}
	if d := p.Match(Request{Method: "GET", Path: "/x"}); d.Mode != Enforce || d.Rule != "default" || d.Index != -1 {
		t.Errorf("default: got %q %q %d; want enforce default -1", d.Mode, d.Rule, d.Index)
	}
}

func TestParseActionMode(t *testing.T) {
	for _, a := range []Action{Allow, Authenticate, StepUp, Deny} {
		if got, err := ParseAction(a.String()); got != a || err != nil {
			t.Errorf("ParseAction(%q): got %q, %v; want %q", a.String(), got, err, a)
		}
	}
	for _, s := range []string{"", "Allow", "step-up", "stepup", "none"} {
		if _, err := ParseAction(s); err == nil {
			t.Errorf("ParseAction(%q): got nil error; want one", s)
		}
	}
	for s, want := range map[string]Mode{"": Enforce, "enforce": Enforce, "audit": Audit} {
		if got, err := ParseMode(s); got != want || err != nil {
			t.Errorf("ParseMode(%q): got %q, %v; want %q", s, got, err, want)
		}
	}
	if _, err := ParseMode("dry-run"); err == nil {
		t.Errorf("ParseMode(%q): got nil error; want one", "dry-run")
	}
}

func TestCompileErrors(t *testing.T) {
	ok := Rule{Name: "ok", Paths: []string{"/ok"}, Action: Allow}
	tests := []struct {
		name  string
		c     Config
		rule  int
		field string
		index int
		want  string // substring of the message
	}{
		{"default zero", Config{}, -1, "default", -1, "not an action"},
		{"default invalid", Config{Default: 9}, -1, "default", -1, "not an action"},
		{"default step_up without max age", Config{Default: StepUp}, -1, "default_max_age", -1, "no default max_age"},
		{"empty name", Config{Rules: []Rule{{Paths: []string{"/x"}, Action: Allow}}}, 0, "name", -1, "is missing"},
		{"reserved name", Config{Rules: []Rule{{Name: "default", Paths: []string{"/x"}, Action: Allow}}}, 0, "name", -1, "reserved"},
		{"name with newline", Config{Rules: []Rule{{Name: "a\nb", Paths: []string{"/x"}, Action: Allow}}}, 0, "name", -1, "printable"},
		{"duplicate name", Config{Rules: []Rule{ok, ok}}, 1, "name", -1, `"ok" is already the name of rule 0`},
		{"zero action", Config{Rules: []Rule{{Name: "a", Paths: []string{"/x"}}}}, 0, "action", -1, "is missing"},
		{"unknown action", Config{Rules: []Rule{{Name: "a", Paths: []string{"/x"}, Action: 7}}}, 0, "action", -1, "not an action"},
		{"unknown mode", Config{Rules: []Rule{{Name: "a", Paths: []string{"/x"}, Action: Allow, Mode: 5}}}, 0, "mode", -1, "not a mode"},
		{"mixed glob", Config{Rules: []Rule{{Name: "a", Paths: []string{"/ok", "/**x"}, Action: Allow}}}, 0, "paths", 1, `"**x" mixes * with other characters`},
		{"mixed glob a*", Config{Rules: []Rule{{Name: "a", Paths: []string{"/a*/b"}, Action: Allow}}}, 0, "paths", 0, `"a*" mixes`},
		{"relative glob", Config{Rules: []Rule{{Name: "a", Paths: []string{"admin/**"}, Action: Allow}}}, 0, "paths", 0, "does not start with '/'"},
		{"empty glob", Config{Rules: []Rule{{Name: "a", Paths: []string{""}, Action: Allow}}}, 0, "paths", 0, "is empty"},
		{"dot glob", Config{Rules: []Rule{{Name: "a", Paths: []string{"/a/../b"}, Action: Allow}}}, 0, "paths", 0, "'.' or '..'"},
		{"encoded slash glob", Config{Rules: []Rule{{Name: "a", Paths: []string{"/a%2Fb"}, Action: Allow}}}, 0, "paths", 0, "encoded slash"},
		{"query glob", Config{Rules: []Rule{{Name: "a", Paths: []string{"/a?x=1"}, Action: Allow}}}, 0, "paths", 0, "query"},
		{"params glob", Config{Rules: []Rule{{Name: "a", Paths: []string{"/a;x"}, Action: Allow}}}, 0, "paths", 0, "path parameters"},
		{"paths and regex", Config{Rules: []Rule{{Name: "a", Paths: []string{"/x"}, Regex: "^/x", Action: Allow}}}, 0, "", -1, "both paths and regex"},
		{"neither", Config{Rules: []Rule{{Name: "a", Action: Allow}}}, 0, "", -1, "neither paths nor regex"},
		{"empty paths list", Config{Rules: []Rule{{Name: "a", Paths: []string{}, Action: Allow}}}, 0, "", -1, "neither paths nor regex"},
		{"bad regex", Config{Rules: []Rule{{Name: "a", Regex: "^/(x", Action: Allow}}}, 0, "regex", -1, "not a valid RE2"},
		{"perl-only regex", Config{Rules: []Rule{{Name: "a", Regex: `^/(?=x)`, Action: Allow}}}, 0, "regex", -1, "not a valid RE2"},
		{"empty host", Config{Rules: []Rule{{Name: "a", Hosts: []string{""}, Paths: []string{"/x"}, Action: Allow}}}, 0, "hosts", 0, "is empty"},
		{"host with scheme", Config{Rules: []Rule{{Name: "a", Hosts: []string{"ok.com", "https://a.com"}, Paths: []string{"/x"}, Action: Allow}}}, 0, "hosts", 1, "without scheme"},
		{"host with port", Config{Rules: []Rule{{Name: "a", Hosts: []string{"a.com:443"}, Paths: []string{"/x"}, Action: Allow}}}, 0, "hosts", 0, "port"},
		{"host with path", Config{Rules: []Rule{{Name: "a", Hosts: []string{"a.com/x"}, Paths: []string{"/x"}, Action: Allow}}}, 0, "hosts", 0, "without path"},
		{"host bad wildcard", Config{Rules: []Rule{{Name: "a", Hosts: []string{"a.*.com"}, Paths: []string{"/x"}, Action: Allow}}}, 0, "hosts", 0, "whole first label"},
		{"host bad chars", Config{Rules: []Rule{{Name: "a", Hosts: []string{"a b.com"}, Paths: []string{"/x"}, Action: Allow}}}, 0, "hosts", 0, "not a valid host name"},
		{"ipv6 with port", Config{Rules: []Rule{{Name: "a", Hosts: []string{"[::1]:80"}, Paths: []string{"/x"}, Action: Allow}}}, 0, "hosts", 0, "IPv6"},
		{"empty method", Config{Rules: []Rule{{Name: "a", Methods: []string{"GET", ""}, Paths: []string{"/x"}, Action: Allow}}}, 0, "methods", 1, "is empty"},
		{"lower-case method", Config{Rules: []Rule{{Name: "a", Methods: []string{"post"}, Paths: []string{"/x"}, Action: Deny}}}, 0, "methods", 0, "not upper-case"},
		{"method with space", Config{Rules: []Rule{{Name: "a", Methods: []string{"GET POST"}, Paths: []string{"/x"}, Action: Deny}}}, 0, "methods", 0, "not a method name"},
		{"max_age on allow", Config{Rules: []Rule{{Name: "a", Paths: []string{"/x"}, Action: Allow, MaxAge: time.Minute}}}, 0, "max_age", -1, "only meaningful for step_up"},
		{"negative max_age", Config{Rules: []Rule{{Name: "a", Paths: []string{"/x"}, Action: StepUp, MaxAge: -time.Second}}}, 0, "max_age", -1, "negative"},
		{"step_up without any max age", Config{Default: Allow, Rules: []Rule{{Name: "a", Paths: []string{"/x"}, Action: StepUp}}}, 0, "max_age", -1, "no default max_age"},
		{"acr with quote", Config{Rules: []Rule{{Name: "a", Paths: []string{"/x"}, Action: StepUp, MaxAge: time.Minute, ACR: `a"b`}}}, 0, "acr", -1, "printable"},
	}
	for _, tt := range tests {
		c := tt.c
		if c.Default == 0 && tt.field != "default" {
			c.Default = Authenticate
		}
		if c.DefaultMaxAge == 0 && !strings.Contains(tt.want, "max_age") {
			c.DefaultMaxAge = time.Hour
		}
		p, err := Compile(c)
		if err == nil {
			t.Errorf("%s: Compile got nil error; want %q", tt.name, tt.want)
			continue
		}
		if p != nil {
			t.Errorf("%s: Compile returned a policy with an error", tt.name)
		}
		var re *RuleError
		if !errors.As(err, &re) {
			t.Errorf("%s: got %T %v; want a *RuleError", tt.name, err, err)
			continue
		}
		if re.Rule != tt.rule || re.Field != tt.field || re.Index != tt.index || !strings.Contains(re.Error(), tt.want) {
			t.Errorf("%s: got %d %q %d %q; want %d %q %d containing %q", tt.name, re.Rule, re.Field, re.Index, re.Error(), tt.rule, tt.field, tt.index, tt.want)
		}
	}
}

func TestCompileReportsEveryError(t *testing.T) {
	_, err := Compile(Config{Default: Allow, Rules: []Rule{
		{Name: "a", Paths: []string{"/x"}, Action: Allow},
		{Name: "b", Paths: []string{"/a*", "/b"}, Hosts: []string{"h:1"}, Action: Allow},
		{Name: "a", Regex: "(", Action: 0},
	}})
	var n int
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var re *RuleError
		if !errors.As(e, &re) {
			t.Errorf("got %T; want *RuleError", e)
		}
		n++
	}
	if n != 5 {
		t.Errorf("got %d errors (%v); want 5: bad glob, bad host, duplicate name, missing action, bad regex", n, err)
	}
}

func TestRuleErrorMessage(t *testing.T) {
	tests := []struct {
		err  RuleError
		want string
	}{
		{RuleError{Rule: 3, Name: "admin", Field: "paths", Index: 1, Err: errors.New(`"**x" mixes * with other characters in one segment`)},
			`rule "admin": paths[1]: "**x" mixes * with other characters in one segment`},
		{RuleError{Rule: 0, Field: "name", Index: -1, Err: errors.New("is missing")}, `rule 0: name: is missing`},
		{RuleError{Rule: 2, Name: "x", Index: -1, Err: errors.New("has neither paths nor regex")}, `rule "x": has neither paths nor regex`},
		{RuleError{Rule: -1, Field: "default", Index: -1, Err: errors.New("bad")}, `policy: default: bad`},
		{RuleError{Rule: 0, Name: "glob-rule", Field: "paths", Index: 0, Value: "/files/**x", Err: errors.New("bad")}, `rule "glob-rule": paths[0] "/files/**x": bad`},
		{RuleError{Rule: 4, Name: "a\nb", Field: "hosts", Index: 1, Value: "x y", Err: errors.New("bad")}, `rule 4: hosts[1] "x y": bad`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got %q; want %q", got, tt.want)
		}
	}
	// The real message for the spec's example.
	_, err := Compile(Config{Default: Allow, Rules: []Rule{{Name: "admin", Paths: []string{"/admin/**", "/**x"}, Action: Allow}}})
	want := `rule "admin": paths[1] "/**x": segment "**x" mixes * with other characters; use * or ** as a whole segment`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v; want prefix %q", err, want)
	}
}

func TestRunTests(t *testing.T) {
	p := mustCompile(t, Config{Default: Authenticate, Rules: []Rule{
		{Name: "admin", Hosts: []string{"app.example.com"}, Paths: []string{"/admin/**"}, Action: StepUp},
		{Name: "public", Paths: []string{"/public/**"}, Action: Allow},
		{Name: "delete", Methods: []string{"DELETE"}, Paths: []string{"/items/*"}, Action: Deny},
	}})
	tests := []Test{
		{Request: "GET http://app.example.com/admin/users?x=1", Expect: StepUp, Rule: "admin"},       // 0 pass
		{Request: "GET http://APP.example.com:8080/%61dmin", Expect: StepUp},                         // 1 pass
		{Request: "GET http://other.example.com/admin/users", Expect: Authenticate, Rule: "default"}, // 2 pass
		{Request: "GET /public/x", Expect: Allow, Rule: "public"},                                    // 3 pass
		{Request: "POST /items/1?_method=delete", Expect: Deny, Rule: "delete"},                      // 4 pass: _method override
		{Request: "GET http://app.example.com/admin/users", Expect: Allow},                           // 5 fail
		{Request: "GET http://app.example.com/admin/users", Expect: StepUp, Rule: "public"},          // 6 fail: wrong rule
		{Request: "GET http://app.example.com/public/..%2fadmin", Expect: Allow},                     // 7 fail: refused
		{Request: "GET", Expect: Allow},                                                              // 8 fail: no URL
		{Request: "GET ftp://x/y", Expect: Allow},                                                    // 9 fail: scheme
		{Request: "GET /x", Expect: 0},                                                               // 10 fail: no expect
		{Request: "GET http://app.example.com", Expect: Authenticate},                                // 11 pass: "/"
		{Request: "GET http://app.example.com/admin#frag", Expect: StepUp},                           // 12 pass
	}
	errs := p.RunTests(tests)
	want := map[int]string{
		5:  `test 5 "GET http://app.example.com/admin/users": got step_up by rule "admin"; want allow`,
		6:  `test 6 "GET http://app.example.com/admin/users": got step_up by rule "admin"; want step_up by rule "public"`,
		7:  "refuse",
		8:  "METHOD URL",
		9:  "must be absolute",
		10: "expect is missing",
	}
	got := map[int]string{}
	for _, err := range errs {
		var te *TestError
		if !errors.As(err, &te) {
			t.Fatalf("got %T; want *TestError", err)
		}
		got[te.Test] = te.Error()
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("test %d: got %q; want it to contain %q", i, got[i], w)
		}
	}
	for i, g := range got {
		if _, ok := want[i]; !ok {
			t.Errorf("test %d: got unexpected failure %q", i, g)
		}
	}
}

func TestExplain(t *testing.T) {
	p := mustCompile(t, Config{Default: Authenticate, Rules: []Rule{
		{Name: "host", Hosts: []string{"other.example.com"}, Paths: []string{"/**"}, Action: Deny},
		{Name: "get-only", Methods: []string{"GET"}, Paths: []string{"/admin/**"}, Action: Allow},
		{Name: "post-ok", Methods: []string{"POST"}, Paths: []string{"/admin/**"}, Action: Allow},
		{Name: "path", Paths: []string{"/x/**"}, Action: Deny},
		{Name: "admin", Paths: []string{"/admin/**"}, Action: StepUp},
		{Name: "after", Paths: []string{"/**"}, Action: Deny},
	}})
	ex := p.Explain(Request{Method: "POST", Overrides: []string{"delete"}, Host: "app.example.com", Path: "/admin/users"})
	if got := strings.Join(ex.Methods, ","); got != "POST,DELETE" {
		t.Errorf("methods: got %q; want %q", got, "POST,DELETE")
	}
	if ex.Decision.Rule != "admin" || ex.Decision.Action != StepUp {
		t.Errorf("decision: got %q %q; want %q %q", ex.Decision.Rule, ex.Decision.Action, "admin", StepUp)
	}
	wantWhy := []string{"host app.example.com not in [other.example.com]", "method POST, DELETE not in [GET]", "matches POST: allow; not decisive", "path /admin/users does not match /x/**", "matches POST, DELETE: step_up"}
	if len(ex.Steps) != len(wantWhy) {
		t.Fatalf("steps: got %d %+v; want %d", len(ex.Steps), ex.Steps, len(wantWhy))
	}
	for i, w := range wantWhy {
		if !strings.Contains(ex.Steps[i].Why, w) || ex.Steps[i].Index != i {
			t.Errorf("step %d: got %d %q; want %d containing %q", i, ex.Steps[i].Index, ex.Steps[i].Why, i, w)
		}
	}
	if m := p.Match(Request{Method: "POST", Overrides: []string{"delete"}, Host: "app.example.com", Path: "/admin/users"}); m != ex.Decision {
		t.Errorf("Explain decision %+v differs from Match %+v", ex.Decision, m)
	}
	// No rule matches: every rule is shown, then the default.
	p2 := mustCompile(t, Config{Default: Deny, Rules: []Rule{{Name: "a", Paths: []string{"/a"}, Action: Allow}}})
	ex = p2.Explain(Request{Method: "GET", Path: "/b"})
	if len(ex.Steps) != 2 || ex.Steps[1].Rule != "default" || ex.Decision.Rule != "default" || ex.Decision.Action != Deny {
		t.Errorf("default explanation: got %+v; want rule a then default deny", ex)
	}
}

func TestRegexPrefix(t *testing.T) {
	tests := []struct {
		re   string
		want string
	}{
		{`^/api/v1/pay`, "api/v1"},
		{`^/api/v[0-9]+/pay`, "api"},
		{`^/api`, ""},
		{`/api/v1/`, ""}, // unanchored: a match can start anywhere
		{`^(/api/x/)`, ""},
		{`^/a\.b/c/`, "a.b/c"},
		{`(?i)^/api/x/`, ""},
		{`^/api/x/|^/b/`, ""},
		{`^(?:/admin/)`, "admin"},
	}
	for _, tt := range tests {
		if got := strings.Join(regexPrefix(tt.re, false), "/"); got != tt.want {
			t.Errorf("regexPrefix(%q): got %q; want %q", tt.re, got, tt.want)
		}
	}
}
