package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestShadowedRules checks that Compile refuses a rule that earlier rules
// decide first for every host and method, names the rules that shadow it,
// and accepts rules that still decide something.
func TestShadowedRules(t *testing.T) {
	tests := []struct {
		name   string
		rules  []Rule
		rule   int    // the shadowed rule; -1 when the policy compiles
		by     string // substring naming the shadowing rules
		folded bool
	}{
		{"catch-all first", []Rule{
			{Name: "everything", Paths: []string{"/**"}, Action: Allow},
			{Name: "admin", Paths: []string{"/admin/**"}, Action: StepUp},
		}, 1, `rule "everything"`, false},
		{"catch-all first, deny by method", []Rule{
			{Name: "everything", Paths: []string{"/**"}, Action: Allow},
			{Name: "no-delete", Paths: []string{"/items/*"}, Methods: []string{"DELETE"}, Action: Deny},
		}, 1, `rule "everything"`, false},
		{"star covers literal", []Rule{
			{Name: "users", Paths: []string{"/users/*/profile"}, Action: Allow},
			{Name: "me", Paths: []string{"/users/me/profile"}, Action: Deny},
		}, 1, `rule "users"`, false},
		{"literal does not cover star", []Rule{
			{Name: "me", Paths: []string{"/users/me/profile"}, Action: Deny},
			{Name: "users", Paths: []string{"/users/*/profile"}, Action: Allow},
		}, -1, "", false},
		{"star does not cover any", []Rule{
			{Name: "one", Paths: []string{"/a/*"}, Action: Allow},
			{Name: "all", Paths: []string{"/a/**"}, Action: Deny},
		}, -1, "", false},
		{"any covers star", []Rule{
			{Name: "all", Paths: []string{"/a/**"}, Action: Deny},
			{Name: "one", Paths: []string{"/a/*/b"}, Action: Allow},
		}, 1, `rule "all"`, false},
		{"any covers the bare prefix", []Rule{
			{Name: "all", Paths: []string{"/a/**"}, Action: Deny},
			{Name: "a", Paths: []string{"/a"}, Action: Allow},
		}, 1, `rule "all"`, false},
		{"paths spread over two rules", []Rule{
			{Name: "a", Paths: []string{"/a/**"}, Action: Allow},
			{Name: "b", Paths: []string{"/b/**"}, Action: Allow},
			{Name: "ab", Paths: []string{"/a/x", "/b/y"}, Action: Deny},
		}, 2, `rule "a" and rule "b"`, false},
		{"one path still decides", []Rule{
			{Name: "a", Paths: []string{"/a/**"}, Action: Allow},
			{Name: "ac", Paths: []string{"/a/x", "/c"}, Action: Deny},
		}, -1, "", false},
		{"earlier host-only rule does not cover every host", []Rule{
			{Name: "admin-host", Hosts: []string{"admin.example.com"}, Paths: []string{"/**"}, Action: Deny},
			{Name: "admin", Paths: []string{"/admin/**"}, Action: StepUp},
		}, -1, "", false},
		{"same host covered", []Rule{
			{Name: "admin-host", Hosts: []string{"ADMIN.example.com."}, Paths: []string{"/**"}, Action: Deny},
			{Name: "admin", Hosts: []string{"admin.example.com"}, Paths: []string{"/admin/**"}, Action: StepUp},
		}, 1, `rule "admin-host"`, false},
		{"wildcard covers a subdomain and a deeper wildcard", []Rule{
			{Name: "tenants", Hosts: []string{"*.example.com"}, Paths: []string{"/**"}, Action: Allow},
			{Name: "t", Hosts: []string{"a.example.com", "*.b.example.com"}, Paths: []string{"/x"}, Action: Deny},
		}, 1, `rule "tenants"`, false},
		{"wildcard does not cover the apex", []Rule{
			{Name: "tenants", Hosts: []string{"*.example.com"}, Paths: []string{"/**"}, Action: Allow},
			{Name: "apex", Hosts: []string{"example.com"}, Paths: []string{"/x"}, Action: Deny},
		}, -1, "", false},
		{"methods: a GET rule does not cover every method", []Rule{
			{Name: "read", Paths: []string{"/**"}, Methods: []string{"GET"}, Action: Allow},
			{Name: "admin", Paths: []string{"/admin/**"}, Action: StepUp},
		}, -1, "", false},
		{"methods: GET covers HEAD", []Rule{
			{Name: "read", Paths: []string{"/**"}, Methods: []string{"GET", "POST"}, Action: Allow},
			{Name: "head", Paths: []string{"/x"}, Methods: []string{"HEAD", "POST"}, Action: Deny},
		}, 1, `rule "read"`, false},
		{"regex after a covering glob", []Rule{
			{Name: "api", Paths: []string{"/api/**"}, Action: Allow},
			{Name: "pay", Regex: `^/api/v[0-9]+/pay`, Action: StepUp},
		}, 1, `rule "api"`, false},
		{"regex prefix not covered", []Rule{
			{Name: "api", Paths: []string{"/api/v1/**"}, Action: Allow},
			{Name: "pay", Regex: `^/api/v[0-9]+/pay`, Action: StepUp},
		}, -1, "", false},
		{"unanchored regex is never judged", []Rule{
			{Name: "api", Paths: []string{"/api/**"}, Action: Allow},
			{Name: "pay", Regex: `/api/pay`, Action: StepUp},
		}, -1, "", false},
		{"an earlier regex never counts as covering", []Rule{
			{Name: "all", Regex: `^/`, Action: Allow},
			{Name: "admin", Paths: []string{"/admin/**"}, Action: StepUp},
		}, -1, "", false},
		{"case-insensitive paths", []Rule{
			{Name: "admin", Paths: []string{"/Admin/**"}, Action: StepUp},
			{Name: "users", Paths: []string{"/ADMIN/users"}, Action: Allow},
		}, 1, `rule "admin"`, true},
		{"case-sensitive paths", []Rule{
			{Name: "admin", Paths: []string{"/Admin/**"}, Action: StepUp},
			{Name: "users", Paths: []string{"/admin/users"}, Action: Allow},
		}, -1, "", false},
	}
	for _, tt := range tests {
		_, err := Compile(Config{Default: Authenticate, DefaultMaxAge: time.Hour, CaseInsensitivePaths: tt.folded, Rules: tt.rules})
		if tt.rule < 0 {
			if err != nil {
				t.Errorf("%s: got %v; want the policy to compile", tt.name, err)
			}
			continue
		}
		var re *RuleError
		if !errors.As(err, &re) {
			t.Errorf("%s: got %v; want a *RuleError for rule %d", tt.name, err, tt.rule)
			continue
		}
		if re.Rule != tt.rule || !strings.Contains(re.Error(), "can never decide") || !strings.Contains(re.Error(), tt.by) {
			t.Errorf("%s: got rule %d %q; want rule %d, can never decide, by %s", tt.name, re.Rule, re.Error(), tt.rule, tt.by)
		}
	}
}

// TestShadowMessage is the whole message for the example.
func TestShadowMessage(t *testing.T) {
	_, err := Compile(Config{Default: Authenticate, DefaultMaxAge: time.Hour, Rules: []Rule{
		{Name: "everything", Paths: []string{"/**"}, Action: Allow},
		{Name: "admin", Paths: []string{"/admin/**"}, Action: StepUp},
	}})
	want := `rule "admin": can never decide: every request it matches is matched first by rule "everything" (the first matching rule wins); move it above, or narrow the earlier rule`
	if err == nil || err.Error() != want {
		t.Errorf("got %v; want %q", err, want)
	}
}

// TestGlobCoversAgreesWithMatch checks globCovers against matching: when
// it says a covers b, every path built from b (wildcards filled with
// fresh and with a's literals) that b matches, a matches too.
func TestGlobCoversAgreesWithMatch(t *testing.T) {
	globs := []string{"/", "/a", "/a/b", "/*", "/**", "/a/*", "/a/**", "/*/b", "/**/b", "/a/**/b", "/*/*", "/**/**", "/a/*/**", "/**/a/**"}
	paths := []string{"/", "/a", "/b", "/x", "/a/b", "/a/x", "/x/b", "/a/a", "/a/b/b", "/a/x/b", "/x/a/b", "/a/x/y/b", "/x/y", "/x/y/z"}
	compiled := make([]glob, len(globs))
	for i, s := range globs {
		g, err := compileGlob(s, false)
		if err != nil {
			t.Fatal(err)
		}
		compiled[i] = g
	}
	for i := range compiled {
		for j := range compiled {
			a, b := &compiled[i], &compiled[j]
			if !globCovers(a.segs, b.segs) {
				continue
			}
			for _, p := range paths {
				if b.match(p, false) && !a.match(p, false) {
					t.Errorf("globCovers(%s, %s) but %s matches %s and %s does not", a.src, b.src, b.src, p, a.src)
				}
			}
		}
	}
	// And a few that must be covered.
	for _, c := range [][2]string{{"/**", "/a/*/b"}, {"/a/**", "/a"}, {"/**/b", "/a/*/b"}, {"/*/*", "/a/b"}, {"/**/**", "/**"}} {
		a, _ := compileGlob(c[0], false)
		b, _ := compileGlob(c[1], false)
		if !globCovers(a.segs, b.segs) {
			t.Errorf("globCovers(%s, %s) = false; want true", c[0], c[1])
		}
	}
}

// TestWarnings checks the unanchored-regex warning.
func TestWarnings(t *testing.T) {
	c := Config{Default: Authenticate, DefaultMaxAge: time.Hour, Rules: []Rule{
		{Name: "anchored", Regex: `^/api/v[0-9]+/`, Action: Allow},
		{Name: "alternation", Regex: `^/a|^/b`, Action: Allow},
		{Name: "loose", Regex: `/admin`, Action: StepUp},
		{Name: "half", Regex: `(/x|^/y)`, Action: StepUp},
	}}
	ws := Warnings(c)
	if len(ws) != 2 {
		t.Fatalf("got %d warnings %v; want 2 (loose, half)", len(ws), ws)
	}
	want := `rule "loose": regex "/admin": is not anchored: it matches anywhere in the path, so "/admin" also matches "/other/admin"; start it with ^`
	if got := ws[0].Error(); got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if ws[1].Rule != 3 {
		t.Errorf("second warning for rule %d; want 3", ws[1].Rule)
	}
}
