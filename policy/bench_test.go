package policy

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
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

// genHostWideRules is genRules with every fifth rule replaced by a
// host-wide rule, hosts: [hN.example.com], paths: ["/**"], the shape that
// sits in the trie's root list for every request (bench/gen-policy makes
// a sixth of its rules like this).
func genHostWideRules(n int) []Rule {
	rules := genRules(n)
	for i := 6; i < n; i++ {
		if i%5 == 3 {
			s := strconv.Itoa(i)
			rules[i] = Rule{Name: "r" + s, Hosts: []string{"h" + s + ".example.com"}, Paths: []string{"/**"}, Action: Deny}
		}
	}
	return rules
}

// genHostWideRequests is genRequests with every other request sent to an
// hN.example.com host, a fifth of which have a host-wide rule.
func genHostWideRequests(n int, rnd *rand.Rand) []Request {
	reqs := genRequests(n, rnd)
	for k := range reqs {
		if k%2 == 0 {
			reqs[k].Host = "h" + strconv.Itoa(6+rnd.IntN(max(n-6, 1))) + ".example.com"
		}
	}
	return reqs
}

func BenchmarkMatch(b *testing.B) {
	bench := func(b *testing.B, rules []Rule, reqs []Request) {
		p := mustCompile(b, Config{Rules: rules})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			_ = p.Match(reqs[i&255])
			i++
		}
	}
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			bench(b, genRules(n), genRequests(n, rand.New(rand.NewPCG(1, 2))))
		})
	}
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("rules=%d/hostwide=20%%", n), func(b *testing.B) {
			bench(b, genHostWideRules(n), genHostWideRequests(n, rand.New(rand.NewPCG(1, 2))))
		})
	}
}

func BenchmarkParseTarget(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ParseTarget("/api/v1/res42/7/export?format=csv")
	}
}

// hostPool is the names genHostRules and genHostRequests draw from: few,
// so that many rules share a host and their byHost lists interleave with
// the plain lists.
var hostPool = []string{"h0.example.com", "h1.example.com", "h2.example.com", "h3.example.com", "h4.example.com", "app.example.com", "0.example.com", "x"}

// genHostRules builds n rules mixing, in random order and at random trie
// depths, the host shapes the index treats differently: exact names
// (several per rule, spelled in upper case or with a trailing dot, some
// twice), exact names mixed with a wildcard or an IP literal, wildcards,
// IPv4 and IPv6 literals, and rules without hosts; with globs, regexes and
// methods.
func genHostRules(n int, rnd *rand.Rand) []Rule {
	host := func() string { return hostPool[rnd.IntN(len(hostPool))] }
	paths := [][]string{{"/**"}, {"/**"}, {"/app/**"}, {"/app/*/admin"}, {"/pub/**", "/app/x"}, {"/*/x/**"}, {"/"}, {"/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/**"}}
	methods := [][]string{nil, nil, {"GET"}, {"POST", "DELETE"}}
	actions := []Action{Allow, Authenticate, StepUp, Deny}
	rules := make([]Rule, n)
	for i := range rules {
		var hs []string
		switch rnd.IntN(10) {
		case 0, 1, 2:
			hs = []string{host()}
		case 3:
			hs = []string{strings.ToUpper(host()) + "."}
		case 4:
			h := host()
			hs = []string{h, host(), strings.ToUpper(h[:1]) + h[1:] + "."} // two spellings of one name
		case 5:
			hs = []string{host(), "*." + host()}
		case 6:
			hs = []string{host(), []string{"127.0.0.1", "::1", "[::ffff:10.0.0.1]"}[rnd.IntN(3)]}
		case 7:
			hs = []string{"*." + host()}
		case 8:
			hs = []string{[]string{"127.0.0.1", "[::1]", "10.0.0.1"}[rnd.IntN(3)]}
		}
		r := Rule{Name: "r" + strconv.Itoa(i), Hosts: hs, Methods: methods[rnd.IntN(len(methods))], Action: actions[rnd.IntN(len(actions))]}
		if rnd.IntN(8) == 0 {
			r.Regex = []string{`^/app/[0-9]+$`, `x$`, `^/pub/`}[rnd.IntN(3)]
		} else {
			r.Paths = paths[rnd.IntN(len(paths))]
		}
		rules[i] = r
	}
	return rules
}

// genHostRequests builds 256 requests whose hosts come in every form a
// client may send: any case, with a port, a trailing dot or both, IPv6 in
// brackets, IPv4-mapped, a subdomain of a pooled name, two trailing dots,
// non-ASCII, empty, and longer than any host name.
func genHostRequests(rnd *rand.Rand) []Request {
	forms := []func(string) string{
		func(h string) string { return h },
		func(h string) string { return h },
		strings.ToUpper,
		func(h string) string { return strings.ToUpper(h[:1]) + h[1:] + ":8443" },
		func(h string) string { return h + "." },
		func(h string) string { return h + ".:80" },
		func(h string) string { return h + ".." },
		func(h string) string { return "sub." + h },
		func(h string) string { return "\u212a" + h }, // Kelvin sign: not ASCII, never folded to k
		func(string) string { return "" },
		func(string) string { return "127.0.0.1:8080" },
		func(string) string { return "[::1]:443" },
		func(string) string { return "[0:0:0:0:0:0:0:1]" },
		func(string) string { return "::ffff:127.0.0.1" },
		func(string) string { return "10.0.0.1." },
		func(string) string { return strings.Repeat("a", 300) },
		func(string) string { return strings.Repeat("h", 253) + ":1" },
	}
	paths := []string{"/", "/app", "/app/7", "/app/7/admin", "/APP/7/Admin", "/pub/doc", "/x", "/q/x/y", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r"}
	methods := []string{"GET", "HEAD", "POST", "DELETE", "get"}
	reqs := make([]Request, 256)
	for k := range reqs {
		r := Request{
			Method: methods[rnd.IntN(len(methods))],
			Host:   forms[rnd.IntN(len(forms))](hostPool[rnd.IntN(len(hostPool))]),
			Path:   paths[rnd.IntN(len(paths))],
		}
		if rnd.IntN(4) == 0 {
			r.Overrides = []string{"delete"}
		}
		r.AnyMethod = rnd.IntN(4) == 0
		reqs[k] = r
	}
	return reqs
}

// TestMatchEqualsLinear checks the index against the plain reading of
// "first match wins" (the linear scan Explain uses) on generated rules and
// requests, including misses, overrides, case folding and every host form.
func TestMatchEqualsLinear(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	check := func(name string, p *Policy, reqs []Request) {
		t.Helper()
		for _, r := range reqs {
			got := p.Match(r)
			want := p.Explain(r).Decision
			if got != want {
				t.Errorf("%s %+v: Match got %+v; linear want %+v", name, r, got, want)
			}
		}
	}
	for _, fold := range []bool{false, true} {
		for _, n := range []int{10, 300} {
			p := mustCompileLoose(t, Config{Rules: genRules(n), CaseInsensitivePaths: fold})
			reqs := genRequests(n, rnd)
			reqs = append(reqs,
				Request{Method: "GET", Path: "/x/.git/config"},
				Request{Method: "GET", Path: "/a/b/c/actuator"},
				Request{Method: "GET", Path: "/APP7/ADMIN"},
				Request{Method: "GET", Path: "/app7/db.bak"},
				Request{Method: "GET", Path: "/api/v2/items108/5/purge"},
			)
			check(fmt.Sprintf("genRules fold=%v n=%d", fold, n), p, reqs)

			p = mustCompileLoose(t, Config{Rules: genHostWideRules(n), CaseInsensitivePaths: fold})
			reqs = genHostWideRequests(n, rnd)
			for k := range reqs {
				switch k % 4 {
				case 1:
					reqs[k].Host = strings.ToUpper(reqs[k].Host) + ".:443"
				case 3:
					reqs[k].Host = "h13.example.com" // a host-wide rule for n=300
				}
			}
			check(fmt.Sprintf("genHostWideRules fold=%v n=%d", fold, n), p, reqs)
		}
		for _, n := range []int{5, 40, 400} {
			for range 5 {
				p := mustCompileLoose(t, Config{Rules: genHostRules(n, rnd), CaseInsensitivePaths: fold})
				check(fmt.Sprintf("genHostRules fold=%v n=%d", fold, n), p, genHostRequests(rnd))
			}
		}
	}
}

// TestHostIndex checks that host-wide rules leave the root's plain list,
// which every request scans (SPEC §4: matching cost does not grow with
// the number of rules), and that rules with a wildcard or IP host stay in
// it.
func TestHostIndex(t *testing.T) {
	p := mustCompileLoose(t, Config{Rules: genHostWideRules(1000)})
	for _, i := range p.root.rules {
		if p.rules[i].exactHosts() {
			t.Errorf("rule %d (%s) with exact hosts is in the root's plain list", i, p.rules[i].name)
		}
	}
	if got, want := len(p.root.byHost["h13.example.com"]), 1; got != want {
		t.Errorf("root.byHost[h13.example.com]: got %d rules; want %d", got, want)
	}
	if _, longest := p.root.stats(); longest > 10 {
		t.Errorf("longest candidate list: got %d; want at most 10", longest)
	}

	p = mustCompile(t, Config{Rules: []Rule{
		{Name: "exact", Hosts: []string{"A.example.com", "a.example.com.", "b.example.com"}, Paths: []string{"/**"}, Action: Deny},
		{Name: "wild", Hosts: []string{"a.example.com", "*.c.example.com"}, Paths: []string{"/**"}, Action: Deny},
		{Name: "ip", Hosts: []string{"a.example.com", "::1"}, Paths: []string{"/**"}, Action: Deny},
		{Name: "none", Paths: []string{"/**"}, Action: Deny},
	}})
	if got, want := fmt.Sprint(p.root.rules), "[1 2 3]"; got != want {
		t.Errorf("root.rules: got %s; want %s", got, want)
	}
	if got, want := fmt.Sprint(p.root.byHost), "map[a.example.com:[0] b.example.com:[0]]"; got != want {
		t.Errorf("root.byHost: got %s; want %s", got, want)
	}
}

func TestMatchNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("under -race sync.Pool drops items, so regexp allocates; run without -race")
	}
	for _, fold := range []bool{false, true} {
		p := mustCompileLoose(t, Config{Rules: genRules(1000), CaseInsensitivePaths: fold})
		for _, r := range genRequests(1000, rand.New(rand.NewPCG(5, 6)))[:40] {
			if allocs := testing.AllocsPerRun(20, func() { p.Match(r) }); allocs != 0 {
				t.Errorf("fold=%v Match(%+v): got %v allocations; want 0", fold, r, allocs)
			}
		}
		// Host-wide rules: the host is lowered into a stack buffer and
		// looked up in byHost, also for every AnyMethod decision.
		p = mustCompileLoose(t, Config{Rules: genHostWideRules(1000), CaseInsensitivePaths: fold})
		for k, r := range genHostWideRequests(1000, rand.New(rand.NewPCG(5, 6)))[:40] {
			switch k % 4 {
			case 1:
				r.Host = strings.ToUpper(r.Host) + ".:443"
			case 2:
				r.Host = "H13.Example.COM"
				r.AnyMethod = true
			case 3:
				r.Host = strings.Repeat("H", 300)
			}
			if allocs := testing.AllocsPerRun(20, func() { p.Match(r) }); allocs != 0 {
				t.Errorf("fold=%v host-wide Match(%+v): got %v allocations; want 0", fold, r, allocs)
			}
		}
	}
}
