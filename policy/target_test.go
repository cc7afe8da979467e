package policy

import (
	"errors"
	"strings"
	"testing"
)

// adminPolicy protects /admin/** with step-up; everything else needs a
// login. The bypass table checks decisions against it.
func adminPolicy(t testing.TB, fold bool) *Policy {
	t.Helper()
	p, err := Compile(Config{
		Default:              Authenticate,
		DefaultMaxAge:        600e9,
		CaseInsensitivePaths: fold,
		Rules: []Rule{
			{Name: "admin", Paths: []string{"/admin/**"}, Action: StepUp},
			{Name: "public", Paths: []string{"/public/**"}, Action: Allow},
		},
	})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

// TestParseTargetBypass tries the request targets attackers use to reach a
// protected path in a form the policy does not recognise (SPEC §4). Each is
// either refused, or canonicalised to exactly the path that is forwarded
// and decided like it.
func TestParseTargetBypass(t *testing.T) {
	const rej = "REJECT"
	tests := []struct {
		in        string
		path      string // canonical Path, or rej
		matchPath string // "" means same as path
		query     string
		action    Action // decision against adminPolicy
	}{
		// Plain and merged slashes.
		{in: "/admin", path: "/admin", action: StepUp},
		{in: "/admin/", path: "/admin/", action: StepUp},
		{in: "/admin/users", path: "/admin/users", action: StepUp},
		{in: "//admin", path: "/admin", action: StepUp},
		{in: "///admin//users//", path: "/admin/users/", action: StepUp},
		{in: "/", path: "/", action: Authenticate},
		// Path parameters: kept for the upstream, ignored by matching.
		{in: "/admin;x", path: "/admin;x", matchPath: "/admin", action: StepUp},
		{in: "/admin;jsessionid=1/users", path: "/admin;jsessionid=1/users", matchPath: "/admin/users", action: StepUp},
		{in: "/;x/admin", path: "/;x/admin", matchPath: "/admin", action: StepUp},
		{in: "/public;x/../admin", path: rej},
		{in: "/..;/admin", path: rej},
		{in: "/public/..;/admin", path: rej},
		{in: "/public/..;x=1/admin", path: rej},
		{in: "/.;x/admin", path: rej},
		{in: "/admin%3bx", path: rej},
		// Dot segments in every encoding.
		{in: "/public/../admin", path: rej},
		{in: "/./admin", path: rej},
		{in: "/public/%2e%2e/admin", path: rej},
		{in: "/public/%2E%2e/admin", path: rej},
		{in: "/public/.%2e/admin", path: rej},
		{in: "/public/%2e./admin", path: rej},
		{in: "/%2e/admin", path: rej},
		{in: "/public/..", path: rej},
		{in: "/public/...", path: rej},
		{in: "/public/.%20./admin", path: rej},
		{in: "/%C0%AE%C0%AE/admin", path: rej},       // overlong '.'
		{in: "/%EF%BC%8E%EF%BC%8E/admin", path: rej}, // fullwidth '.'
		{in: "/public%EF%BC%8Fadmin", path: rej},     // fullwidth '/'
		{in: "/admin.", path: rej},                   // Windows trims trailing dots
		{in: "/admin%20", path: rej},                 // ... and spaces
		{in: "/admin%2e", path: rej},                 // ... in any encoding
		{in: "/.well-known/x", path: "/.well-known/x", action: Authenticate},
		{in: "/a.b/c..d", path: "/a.b/c..d", action: Authenticate},
		// Encoded separators, double encoding, fragments, controls.
		{in: "/public%2fadmin", path: rej},
		{in: "/public%2F..%2Fadmin", path: rej},
		{in: "/%2fadmin", path: rej},
		{in: "/public%5cadmin", path: rej},
		{in: "/public%5C..%5Cadmin", path: rej},
		{in: `/public\..\admin`, path: rej},
		{in: `/admin\`, path: rej},
		{in: "/admin/%252e%252e/x", path: rej},
		{in: "/%2561dmin", path: rej},
		{in: "/admin#x", path: rej},
		{in: "/public#/../admin", path: rej},
		{in: "/admin%23x", path: rej},
		{in: "/admin%00", path: rej},
		{in: "/admin%00.html", path: rej},
		{in: "/admin%0a", path: rej},
		{in: "/admin%0A", path: rej},
		{in: "/admin%0d%0aX:1", path: rej},
		{in: "/admin%7f", path: rej},
		{in: "/admin\x00", path: rej},
		{in: "/admin\t", path: rej},
		{in: "/admin\x7f", path: rej},
		{in: "/admin%3f/x", path: rej},
		// Malformed percent-encoding.
		{in: "/admin%", path: rej},
		{in: "/admin%2", path: rej},
		{in: "/admin%zz", path: rej},
		{in: "/admin%u002e", path: rej},
		{in: "/%g1dmin", path: rej},
		// Not origin-form.
		{in: "", path: rej},
		{in: "*", path: rej},
		{in: "admin", path: rej},
		{in: "http://evil.example/admin", path: rej},
		{in: "https://app.example.com/public", path: rej},
		{in: "evil.example:443", path: rej},
		{in: "http:evil.example/admin", path: rej},
		{in: "?/admin", path: rej},
		// Encoded unreserved characters are decoded; the rest upper-cased.
		{in: "/%61dmin", path: "/admin", action: StepUp},
		{in: "/%61%64%6D%69%6E/users", path: "/admin/users", action: StepUp},
		{in: "/%41dmin", path: "/Admin", action: Authenticate},
		{in: "/ADMIN", path: "/ADMIN", action: Authenticate},
		{in: "/admin%7e", path: "/admin~", action: Authenticate},
		{in: "/a%2db%5fc", path: "/a-b_c", action: Authenticate},
		{in: "/a%2bb", path: "/a%2Bb", action: Authenticate},
		{in: "/a%2Bb", path: "/a%2Bb", action: Authenticate},
		{in: "/ad min", path: "/ad%20min", action: Authenticate},
		{in: `/a"<>|`, path: "/a%22%3C%3E%7C", action: Authenticate},
		// Unicode: valid UTF-8 is forwarded percent-encoded, invalid refused.
		{in: "/caf%C3%A9", path: "/caf%C3%A9", action: Authenticate},
		{in: "/caf%c3%a9", path: "/caf%C3%A9", action: Authenticate},
		{in: "/café", path: "/caf%C3%A9", action: Authenticate},
		{in: "/caf\xc3%a9", path: "/caf%C3%A9", action: Authenticate},
		{in: "/admin/ünïcode", path: "/admin/%C3%BCn%C3%AFcode", action: StepUp},
		{in: "/%ff", path: rej},
		{in: "/\xff", path: rej},
		{in: "/%C3", path: rej},
		{in: "/%C3/", path: rej},
		{in: "/%ED%A0%80", path: rej}, // UTF-16 surrogate
		// The query is split off unchanged and never matched.
		{in: "/admin?x=/public", path: "/admin", query: "x=/public", action: StepUp},
		{in: "/public?/admin", path: "/public", query: "/admin", action: Allow},
		{in: "/public/x?a=%2e%2e/admin#", path: "/public/x", query: "a=%2e%2e/admin#", action: Allow},
		{in: "/pub%6Cic/%2e%2e", path: rej},
	}
	p := adminPolicy(t, false)
	for _, tt := range tests {
		got, err := ParseTarget(tt.in)
		if tt.path == rej {
			if err == nil {
				t.Errorf("ParseTarget(%q): got %q, %q; want rejection", tt.in, got.Path, got.MatchPath)
			} else if !errors.Is(err, ErrRejected) {
				t.Errorf("ParseTarget(%q): got error %v; want one wrapping ErrRejected", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTarget(%q): got error %q; want %q", tt.in, err, tt.path)
			continue
		}
		wantMatch := tt.matchPath
		if wantMatch == "" {
			wantMatch = tt.path
		}
		if got.Path != tt.path || got.MatchPath != wantMatch || got.RawQuery != tt.query {
			t.Errorf("ParseTarget(%q): got %q, %q, %q; want %q, %q, %q", tt.in, got.Path, got.MatchPath, got.RawQuery, tt.path, wantMatch, tt.query)
		}
		if d := p.Match(Request{Method: "GET", Path: got.MatchPath}); d.Action != tt.action {
			t.Errorf("Match(%q): got %q; want %q", tt.in, d.Action, tt.action)
		}
		// Idempotent: the canonical path is its own canonical form.
		again, err := ParseTarget(got.Path)
		if err != nil || again.Path != got.Path || again.MatchPath != got.MatchPath {
			t.Errorf("ParseTarget(%q) (canonical of %q): got %q, %q, %v; want unchanged", got.Path, tt.in, again.Path, again.MatchPath, err)
		}
	}
}

func TestParseTargetReasons(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty"},
		{"*", "asterisk-form"},
		{"http://h/x", "absolute-form"},
		{"h:443", "authority-form"},
		{"http:h/x", "rootless"},
		{"/a%2Fb", "encoded slash"},
		{"/a%25", "double encoding"},
		{"/a/../b", "'.' or '..' path segment"},
		{"/a%zz", "malformed percent-encoding"},
		{"/a\\b", "backslash"},
		{"/%ff", "invalid UTF-8"},
		{"/a%0d", "control character"},
	}
	for _, tt := range tests {
		_, err := ParseTarget(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseTarget(%q): got error %v; want one mentioning %q", tt.in, err, tt.want)
		}
	}
}

// TestParseTargetNoAlloc checks that canonical targets, the common case,
// are returned as substrings of the input.
func TestParseTargetNoAlloc(t *testing.T) {
	for _, in := range []string{"/", "/admin/users", "/api/v1/items/42?x=1&y=%2F", "/caf%C3%A9/x%2B", "/a/b/"} {
		var got Target
		allocs := testing.AllocsPerRun(100, func() { got, _ = ParseTarget(in) })
		if allocs != 0 {
			t.Errorf("ParseTarget(%q): got %v allocations; want 0", in, allocs)
		}
		if want, _, _ := strings.Cut(in, "?"); got.Path != want {
			t.Errorf("ParseTarget(%q): got %q; want %q", in, got.Path, want)
		}
	}
}
