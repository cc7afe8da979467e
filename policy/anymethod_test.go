package policy

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestMethodSensitive(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		want  bool
		named []string
	}{
		{"no rules", nil, false, nil},
		{"no methods", []Rule{{Name: "a", Paths: []string{"/a/**"}, Action: Deny}}, false, nil},
		{"one rule with methods", []Rule{
			{Name: "a", Paths: []string{"/a/**"}, Action: Allow},
			{Name: "b", Paths: []string{"/b/**"}, Methods: []string{"DELETE", "POST"}, Action: Deny},
			{Name: "c", Paths: []string{"/c/**"}, Methods: []string{"POST", "GET", "DELETE"}, Action: Deny},
		}, true, []string{"DELETE", "GET", "POST"}},
	}
	for _, tt := range tests {
		p := mustCompile(t, Config{Default: Allow, Rules: tt.rules})
		if got := p.MethodSensitive(); got != tt.want {
			t.Errorf("%s: MethodSensitive got %v; want %v", tt.name, got, tt.want)
		}
		if !slices.Equal(p.named, tt.named) {
			t.Errorf("%s: named methods got %q; want %q (sorted, deduplicated)", tt.name, p.named, tt.named)
		}
	}
}

func TestAnyMethodStrictest(t *testing.T) {
	tests := []struct {
		name   string
		def    Action
		rules  []Rule
		method string
		rule   string
	}{
		{"a named method is stricter", Allow, []Rule{
			{Name: "post-ok", Methods: []string{"POST"}, Paths: []string{"/posts/**"}, Action: Allow},
			{Name: "delete", Methods: []string{"DELETE"}, Paths: []string{"/posts/**"}, Action: Deny},
		}, "POST", "delete"},
		{"step_up with the shortest max_age", Allow, []Rule{
			{Name: "put", Methods: []string{"PUT"}, Paths: []string{"/posts/**"}, Action: StepUp, MaxAge: 10 * 60e9},
			{Name: "delete", Methods: []string{"DELETE"}, Paths: []string{"/posts/**"}, Action: StepUp, MaxAge: 60e9},
		}, "POST", "delete"},
		// A method no rule names reaches only the rules without methods,
		// past every named method's allow.
		{"any other method", Allow, []Rule{
			{Name: "post-ok", Methods: []string{"POST"}, Paths: []string{"/posts/**"}, Action: Allow},
			{Name: "delete-ok", Methods: []string{"DELETE"}, Paths: []string{"/posts/**"}, Action: Allow},
			{Name: "rest", Paths: []string{"/posts/**"}, Action: Deny},
		}, "POST", "rest"},
		{"any other method, to the default", Deny, []Rule{
			{Name: "post-ok", Methods: []string{"POST"}, Paths: []string{"/posts/**"}, Action: Allow},
		}, "POST", "default"},
		{"other paths are not affected", Allow, []Rule{
			{Name: "delete", Methods: []string{"DELETE"}, Paths: []string{"/admin/**"}, Action: Deny},
			{Name: "posts", Paths: []string{"/posts/**"}, Action: Authenticate},
		}, "POST", "posts"},
		{"enforce beats audit", Allow, []Rule{
			{Name: "put-audit", Methods: []string{"PUT"}, Paths: []string{"/posts/**"}, Action: Deny, Mode: Audit},
			{Name: "delete", Methods: []string{"DELETE"}, Paths: []string{"/posts/**"}, Action: Deny},
		}, "POST", "delete"},
	}
	for _, tt := range tests {
		p := mustCompile(t, Config{Default: tt.def, DefaultMaxAge: 60e9, Rules: tt.rules})
		r := Request{Method: tt.method, Path: "/posts/1", AnyMethod: true}
		if d := p.Match(r); d.Rule != tt.rule {
			t.Errorf("%s: AnyMethod got %q; want %q", tt.name, d.Rule, tt.rule)
		}
		if d, e := p.Match(r), p.Explain(r).Decision; d != e {
			t.Errorf("%s: Match got %+v; Explain want %+v", tt.name, d, e)
		}
	}
}

// TestAnyMethodMatchesLinear checks the indexed AnyMethod decision against
// Explain's linear scan on generated rules, and that it is never more
// lenient than the same request without AnyMethod.
func TestAnyMethodMatchesLinear(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{10, 300} {
		p := mustCompileLoose(t, Config{Default: Authenticate, Rules: genRules(n)})
		for _, r := range genRequests(n, rnd) {
			plain := p.Match(r)
			r.AnyMethod = true
			got, want := p.Match(r), p.Explain(r).Decision
			if got != want {
				t.Errorf("n=%d %+v: Match got %+v; linear want %+v", n, r, got, want)
			}
			if stricter(plain, got) {
				t.Errorf("n=%d %+v: AnyMethod got %+v, more lenient than %+v without it", n, r, got, plain)
			}
		}
	}
}

func TestAnyMethodNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("under -race sync.Pool drops items, so regexp allocates; run without -race")
	}
	p := mustCompileLoose(t, Config{Rules: genRules(1000)})
	for _, r := range genRequests(1000, rand.New(rand.NewPCG(9, 10)))[:40] {
		r.AnyMethod = true
		if allocs := testing.AllocsPerRun(20, func() { p.Match(r) }); allocs != 0 {
			t.Errorf("Match(%+v): got %v allocations; want 0", r, allocs)
		}
	}
}

func TestExplainAnyMethod(t *testing.T) {
	p := mustCompile(t, Config{Default: Allow, Rules: []Rule{
		{Name: "post-ok", Methods: []string{"POST"}, Paths: []string{"/posts/**"}, Action: Allow},
		{Name: "delete", Methods: []string{"DELETE", "PURGE"}, Paths: []string{"/posts/**"}, Action: StepUp, MaxAge: 60e9},
		{Name: "rest", Paths: []string{"/posts/**"}, Action: Authenticate},
	}})
	ex := p.Explain(Request{Method: "POST", Path: "/posts/1", AnyMethod: true})
	want := "POST,DELETE,PURGE," + OtherMethodLabel // the real method once
	if got := strings.Join(ex.Methods, ","); got != want {
		t.Errorf("methods: got %q; want %q", got, want)
	}
	if ex.Decision.Rule != "delete" {
		t.Errorf("decision: got %q; want %q", ex.Decision.Rule, "delete")
	}
	wantWhy := []string{"matches POST: allow; not decisive", "matches DELETE, PURGE: step_up",
		"matches POST, DELETE, PURGE, " + OtherMethodLabel + ": authenticate; not decisive"}
	if len(ex.Steps) != len(wantWhy) {
		t.Fatalf("steps: got %d %+v; want %d", len(ex.Steps), ex.Steps, len(wantWhy))
	}
	for i, w := range wantWhy {
		if !strings.Contains(ex.Steps[i].Why, w) {
			t.Errorf("step %d: got %q; want it to contain %q", i, ex.Steps[i].Why, w)
		}
	}
}
