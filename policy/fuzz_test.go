package policy

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

// fuzzPolicy is the fixed policy decisions are checked against.
func fuzzPolicy(t testing.TB, fold bool) *Policy {
	return mustCompile(t, Config{Default: Authenticate, DefaultMaxAge: time.Hour, CaseInsensitivePaths: fold, Rules: []Rule{
		{Name: "health", Paths: []string{"/admin/health"}, Action: Allow},
		{Name: "admin", Paths: []string{"/admin/**"}, Action: StepUp},
		{Name: "tenant", Paths: []string{"/*/settings/**"}, Action: StepUp},
		{Name: "git", Paths: []string{"/**/.git/**"}, Action: Deny},
		{Name: "api", Regex: `^/api/v[0-9]+/pay`, Action: StepUp},
		{Name: "cafe", Paths: []string{"/caf%C3%A9/**"}, Action: Deny},
		{Name: "public", Paths: []string{"/public/**"}, Action: Allow},
	}})
}

// mergeSlashes is the reference for '/' run merging.
func mergeSlashes(s string) string {
	for strings.Contains(s, "//") {
		s = strings.ReplaceAll(s, "//", "/")
	}
	return s
}

func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/admin", "//admin", "/%61dmin", "/..;/admin", "/a%2fb", "/caf%c3%a9", "/a?b"} {
		f.Add(s)
	}
	pols := []*Policy{fuzzPolicy(f, false), fuzzPolicy(f, true)}
	f.Fuzz(func(t *testing.T, in string) {
		tg, err := ParseTarget(in)
		if err != nil {
			if !errors.Is(err, ErrRejected) {
				t.Fatalf("ParseTarget(%q): got error %v; want one wrapping ErrRejected", in, err)
			}
			return
		}
		p := tg.Path
		if p == "" || p[0] != '/' {
			t.Fatalf("ParseTarget(%q): got %q; want a path starting with '/'", in, p)
		}
		for i := 0; i < len(p); i++ {
			if c := p[i]; c < 0x21 || c >= 0x7f || c == '\\' || c == '#' || c == '?' {
				t.Fatalf("ParseTarget(%q): got %q with byte %q; want printable ASCII without \\ # ?", in, p, c)
			}
		}
		for _, bad := range []string{"//", "%25", "%2F", "%2f", "%5C", "%5c", "%23", "%00"} {
			if strings.Contains(p, bad) {
				t.Fatalf("ParseTarget(%q): got %q containing %q", in, p, bad)
			}
		}
		for _, seg := range strings.Split(p, "/") {
			name, _, _ := strings.Cut(seg, ";")
			if name == "." || name == ".." || strings.HasSuffix(name, ".") {
				t.Fatalf("ParseTarget(%q): got %q with dot segment %q", in, p, seg)
			}
		}
		// Nothing changes meaning: fully decoded, the canonical path is the
		// input path with '/' runs merged.
		rawPath, _, _ := strings.Cut(in, "?")
		dIn, err1 := url.PathUnescape(rawPath)
		dOut, err2 := url.PathUnescape(p)
		if err1 != nil || err2 != nil || mergeSlashes(dIn) != dOut {
			t.Fatalf("ParseTarget(%q): got %q, decoding to %q (%v); want %q (%v)", in, p, dOut, err2, mergeSlashes(dIn), err1)
		}
		// Idempotent, for both the forwarded and the matched form.
		again, err := ParseTarget(p)
		if err != nil || again.Path != p || again.MatchPath != tg.MatchPath {
			t.Fatalf("ParseTarget(%q) = %q, %q; canonical again: %q, %q, %v", in, p, tg.MatchPath, again.Path, again.MatchPath, err)
		}
		if m, err := ParseTarget(tg.MatchPath); err != nil || m.Path != tg.MatchPath || m.MatchPath != tg.MatchPath {
			t.Fatalf("ParseTarget(%q): MatchPath %q is not canonical: %q, %v", in, tg.MatchPath, m.Path, err)
		}
		if strings.Contains(tg.MatchPath, ";") || strings.Contains(tg.MatchPath, "//") {
			t.Fatalf("ParseTarget(%q): MatchPath %q has params or //", in, tg.MatchPath)
		}
		// Decided like its canonical form, and the index agrees with the
		// linear reading of the rules.
		for _, pol := range pols {
			for _, m := range []string{"GET", "POST"} {
				r := Request{Method: m, Path: tg.MatchPath}
				d := pol.Match(r)
				if c := pol.Match(Request{Method: m, Path: again.MatchPath}); c != d {
					t.Fatalf("%q: decision %+v differs from its canonical form's %+v", in, d, c)
				}
				if want := pol.Explain(r).Decision; d != want {
					t.Fatalf("%q: Match %+v differs from linear %+v", in, d, want)
				}
			}
		}
	})
}

// refSegs splits a canonical path into its non-empty segments.
func refSegs(p string) []string {
	var s []string
	for _, x := range strings.Split(p, "/") {
		if x != "" {
			s = append(s, x)
		}
	}
	return s
}

// refMatch is the obvious recursive reading of SPEC §4's glob rules.
func refMatch(g, p []string) bool {
	if len(g) == 0 {
		return len(p) == 0
	}
	switch g[0] {
	case "**":
		return refMatch(g[1:], p) || len(p) > 0 && refMatch(g, p[1:])
	case "*":
		return len(p) > 0 && refMatch(g[1:], p[1:])
	}
	return len(p) > 0 && p[0] == g[0] && refMatch(g[1:], p[1:])
}

func FuzzGlob(f *testing.F) {
	f.Add("/admin/**", "/admin/x")
	f.Add("/**/x/**", "/a/x/b")
	f.Add("/**x", "/x")
	f.Fuzz(func(t *testing.T, globStr, path string) {
		for _, fold := range []bool{false, true} {
			g, err := compileGlob(globStr, fold)
			// Matching arbitrary, even non-canonical, paths never panics.
			_ = g.match(path, fold)
			if err != nil {
				continue
			}
			if strings.Count(globStr, "**") > 8 || len(path) > 512 {
				continue // keep the exponential reference cheap
			}
			pol, err := Compile(Config{Default: Allow, CaseInsensitivePaths: fold, Rules: []Rule{{Name: "g", Paths: []string{globStr}, Action: Deny}}})
			if err != nil {
				t.Fatalf("compileGlob(%q) succeeded but Compile failed: %v", globStr, err)
			}
			tg, err := ParseTarget(path)
			if err != nil {
				_ = pol.Match(Request{Method: "GET", Path: path})
				continue
			}
			cg, why := canonicalPath(globStr)
			if why != "" {
				t.Fatalf("compileGlob(%q) succeeded but its literal is refused: %s", globStr, why)
			}
			mp := tg.MatchPath
			if fold {
				cg, mp = strings.ToLower(cg), strings.ToLower(mp)
			}
			want := refMatch(refSegs(cg), refSegs(mp))
			if got := g.match(tg.MatchPath, fold); got != want {
				t.Fatalf("glob %q (fold %v) on %q: got %v; want %v", globStr, fold, tg.MatchPath, got, want)
			}
			if got := pol.Match(Request{Method: "GET", Path: tg.MatchPath}).Action == Deny; got != want {
				t.Fatalf("policy with glob %q (fold %v) on %q: got %v; want %v", globStr, fold, tg.MatchPath, got, want)
			}
		}
	})
}
