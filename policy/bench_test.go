package policy

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// genRules builds n realistic rules: mostly per-application literal
// prefixes with * and **, some exact paths, host- and method-specific
// rules, a few anchored regexes, and a fixed handful of rules that start
// with a wildcard or an unanchored regex (tried for every request).
func genRules(n int) []Rule {
	rules := []Rule{
		{Name: "health", Paths: []string{"/healthz", "/readyz"}, Action: Allow},
		{Name: "static", Paths: []string{"/static/**", "/assets/**"}, Methods: []string{"GET"}, Action: Allow},
		{Name: "git", Paths: []string{"/**/.git/**"}, Action: Deny},
		{Name: "actuator", Paths: []string{"/**/actuator/**"}, Action: Deny},
		{Name: "tenant-settings", Paths: []string{"/*/settings/security"}, Action: StepUp},
		{Name: "backup", Regex: `\.(bak|old|swp)$`, Action: Deny},
	}
	for i := len(rules); i < n; i++ {
		s := strconv.Itoa(i)
		var r Rule
		switch i % 10 {
		case 0, 1, 2:
			r = Rule{Paths: []string{"/app" + s + "/admin/**"}, Action: StepUp}
		case 3:
			r = Rule{Paths: []string{"/api/v1/res" + s + "/*/export"}, Methods: []string{"GET", "POST"}, Action: StepUp, MaxAge: 5 * time.Minute}
		case 4:
			r = Rule{Paths: []string{"/app" + s + "/settings", "/app" + s + "/settings/**"}, Action: Authenticate}
		case 5:
			r = Rule{Hosts: []string{"t" + s + ".example.com", "*.t" + s + ".example.org"}, Paths: []string{"/t" + s + "/dashboard/**"}, Action: StepUp}
		case 6:
			r = Rule{Paths: []string{"/forms/f" + s + "/submit"}, Methods: []string{"POST", "PUT"}, Action: StepUp}
		case 7:
			r = Rule{Paths: []string{"/pub" + s + "/**"}, Action: Allow}
		case 8:
			if i%100 == 8 {
				r = Rule{Regex: `^/api/v2/items` + s + `/[0-9]+/(delete|purge)$`, Action: Deny}
			} else {
				r = Rule{Paths: []string{"/api/v2/items" + s + "/**/delete"}, Methods: []string{"DELETE"}, Action: Deny}
			}
		case 9:
			r = Rule{Paths: []string{"/app" + s + "/reports/*/download"}, Action: StepUp, Mode: Audit}
		}
		r.Name = "r" + s
		rules = append(rules, r)
	}
	return rules[:n]
}

// genRequests builds a rotating set of hits and misses for n rules.
func genRequests(n int, rnd *rand.Rand) []Request {
	var reqs []Request
	pick := func() string { return strconv.Itoa(6 + rnd.IntN(max(n-6, 1))) }
	for len(reqs) < 256 {
		var r Request
		switch rnd.IntN(12) {
		case 0:
			r = Request{Method: "GET", Path: "/app" + pick() + "/admin/users/42"}
		case 1:
			r = Request{Method: "POST", Path: "/api/v1/res" + pick() + "/7/export"}
		case 2:
			r = Request{Method: "GET", Host: "t" + pick() + ".example.com", Path: "/t" + pick() + "/dashboard/home"}
		case 3:
			r = Request{Method: "POST", Overrides: []string{"delete"}, Path: "/api/v2/items" + pick() + "/3/delete"}
		case 4:
			r = Request{Method: "GET", Path: "/static/js/app.3f9a.js"}
		case 5:
			r = Request{Method: "GET", Path: "/"}
		case 6:
			r = Request{Method: "GET", Path: "/unknown/path/that/is/rather/deep/and/misses/every/rule"}
		case 7:
			r = Request{Method: "PUT", Path: "/forms/f" + pick() + "/submit"}
		case 8:
			r = Request{Method: "GET", Path: "/app" + pick() + "/reports/2024/download"}
		case 9:
			r = Request{Method: "GET", Host: "app.example.com:443", Path: "/pub" + pick() + "/docs/index.html"}
		case 10:
			r = Request{Method: "GET", Path: "/acme/settings/security"}
		case 11:
			r = Request{Method: "HEAD", Path: "/app" + pick() + "/settings"}
		}
		reqs = append(reqs, r)
	}
	return reqs
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			p := mustCompile(b, Config{Rules: genRules(n)})
			reqs := genRequests(n, rand.New(rand.NewPCG(1, 2)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_ = p.Match(reqs[i&255])
				i++
			}
		})
	}
}

func BenchmarkParseTarget(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ParseTarget("/api/v1/res42/7/export?format=csv")
	}
}

// TestMatchEqualsLinear checks the index against the plain reading of
// "first match wins" (the linear scan Explain uses) on generated rules and
// requests, including misses, overrides and case folding.
func TestMatchEqualsLinear(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, fold := range []bool{false, true} {
		for _, n := range []int{10, 300} {
			p := mustCompile(t, Config{Rules: genRules(n), CaseInsensitivePaths: fold})
			reqs := genRequests(n, rnd)
			reqs = append(reqs,
				Request{Method: "GET", Path: "/x/.git/config"},
				Request{Method: "GET", Path: "/a/b/c/actuator"},
				Request{Method: "GET", Path: "/APP7/ADMIN"},
				Request{Method: "GET", Path: "/app7/db.bak"},
				Request{Method: "GET", Path: "/api/v2/items108/5/purge"},
			)
			for _, r := range reqs {
				got := p.Match(r)
				want := p.Explain(r).Decision
				if got != want {
					t.Errorf("fold=%v n=%d %+v: Match got %+v; linear want %+v", fold, n, r, got, want)
				}
			}
		}
	}
}

func TestMatchNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("under -race sync.Pool drops items, so regexp allocates; run without -race")
	}
	for _, fold := range []bool{false, true} {
		p := mustCompile(t, Config{Rules: genRules(1000), CaseInsensitivePaths: fold})
		for _, r := range genRequests(1000, rand.New(rand.NewPCG(5, 6)))[:40] {
			if allocs := testing.AllocsPerRun(20, func() { p.Match(r) }); allocs != 0 {
				t.Errorf("fold=%v Match(%+v): got %v allocations; want 0", fold, r, allocs)
			}
		}
	}
}
