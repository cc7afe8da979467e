package policy

import (
	"fmt"
	"regexp/syntax"
	"strings"
)

// A rule is shadowed when every request it matches, for every host and
// every method, is matched first by earlier rules: first match wins, so
// it can never decide. That is always a mistake (a `/**` first rule that
// makes the later deny and step_up rules unreachable), so Compile refuses
// it. The check is exact for globs, hosts and methods, and for a regex
// rule it covers what the regex's anchored literal prefix bounds
// ("^/admin/.*" can only match below /admin/), so an earlier glob that
// covers that prefix shadows it. An earlier regex never counts as
// covering: whether one regex includes another is not decided here.
//
// Coverage may be spread over earlier rules: each of the later rule's
// paths and hosts must be covered by some earlier rule that also covers
// all of its methods.

// shadowed returns, for each rule, the earlier rules that shadow it, or
// nil when it can decide some request.
func shadowed(rules []rule, src []Rule, fold bool) [][]int {
	out := make([][]int, len(rules))
	for j := range rules {
		b := &rules[j]
		pats := pathPatterns(b, src[j], fold)
		if pats == nil {
			continue // a regex without an anchored prefix: unknown
		}
		hosts := b.hosts
		if len(hosts) == 0 {
			hosts = []hostPat{{}} // every host, marked by the zero pattern
		}
		var by []int
		ok := true
		for _, g := range pats {
			for _, h := range hosts {
				i := coveringRule(rules[:j], g, h, len(b.hosts) == 0, b.methods, fold)
				if i < 0 {
					ok = false
					break
				}
				by = appendOnceInt(by, i)
			}
			if !ok {
				break
			}
		}
		if ok {
			out[j] = by
		}
	}
	return out
}

// coveringRule returns the first of rules that matches every request with
// a path of g, host h (every host when any) and a method of methods
// (every method when empty), or -1.
func coveringRule(rules []rule, g glob, h hostPat, any bool, methods []string, fold bool) int {
	for i := range rules {
		a := &rules[i]
		if a.re != nil || !methodsCover(a.methods, methods) || !hostsCover(a.hosts, h, any) {
			continue
		}
		for k := range a.globs {
			if globCovers(a.globs[k].segs, g.segs) {
				return i
			}
		}
	}
	return -1
}

// pathPatterns is the rule's globs, or for a regex one glob that bounds
// every path it can match (its anchored literal prefix, then "**"); nil
// when the regex has no such prefix.
func pathPatterns(r *rule, src Rule, fold bool) []glob {
	if r.re == nil {
		return r.globs
	}
	if !anchoredAtStart(src.Regex) {
		return nil
	}
	var g glob
	for _, s := range regexPrefix(src.Regex, fold) {
		g.segs = append(g.segs, globSeg{kind: segLit, lit: s})
	}
	g.segs = append(g.segs, globSeg{kind: segAny})
	return []glob{g}
}

// globCovers reports whether every path matching b also matches a. The
// literals come from an unbounded alphabet, so inclusion is a match of a
// against b's segments as symbols: a literal matches only the same
// literal, "*" a literal or "*", and "**" any run of b's segments.
func globCovers(a, b []globSeg) bool {
	memo := make(map[[2]int]bool)
	var cover func(i, j int) bool
	cover = func(i, j int) bool {
		key := [2]int{i, j}
		if v, ok := memo[key]; ok {
			return v
		}
		var v bool
		switch {
		case i == len(a):
			v = j == len(b)
		case a[i].kind == segAny:
			// Absorb nothing, or one more of b's segments.
			v = cover(i+1, j) || (j < len(b) && cover(i, j+1))
		case j == len(b):
			v = false
		case b[j].kind == segAny:
			v = false // only "**" covers "**"
		case a[i].kind == segStar:
			v = cover(i+1, j+1)
		default: // a literal
			v = b[j].kind == segLit && b[j].lit == a[i].lit && cover(i+1, j+1)
		}
		memo[key] = v
		return v
	}
	return cover(0, 0)
}

// hostsCover reports whether a rule with hosts as matches every request
// host h matches (every host when any).
func hostsCover(as []hostPat, h hostPat, any bool) bool {
	if len(as) == 0 {
		return true
	}
	if any {
		return false
	}
	for _, a := range as {
		switch {
		case a.ip.IsValid() || h.ip.IsValid():
			if a.ip.IsValid() && h.ip.IsValid() && a.ip.Unmap() == h.ip.Unmap() {
				return true
			}
		case a.wildcard && h.wildcard:
			// *.example.com covers *.a.example.com and itself.
			if h.name == a.name || strings.HasSuffix(h.name, a.name) {
				return true
			}
		case a.wildcard:
			if len(h.name) > len(a.name) && strings.HasSuffix(h.name, a.name) {
				return true
			}
		case !h.wildcard:
			if a.name == h.name {
				return true
			}
		}
	}
	return false
}

// methodsCover reports whether a rule with methods as matches every
// method of bs (every method when bs is empty).
func methodsCover(as, bs []string) bool {
	if len(as) == 0 {
		return true
	}
	if len(bs) == 0 {
		return false
	}
	for _, b := range bs {
		found := false
		for _, a := range as {
			if a == b || (a == "GET" && b == "HEAD") {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func appendOnceInt(s []int, v int) []int {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// anchoredAtStart reports whether expr can only match at the start of the
// path: it begins with ^ or \A (inside any capture groups).
func anchoredAtStart(expr string) bool {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return false
	}
	return startsAnchored(re)
}

func startsAnchored(re *syntax.Regexp) bool {
	for {
		for re.Op == syntax.OpCapture && len(re.Sub) == 1 {
			re = re.Sub[0]
		}
		switch {
		case re.Op == syntax.OpAlternate:
			for _, s := range re.Sub {
				if !startsAnchored(s) {
					return false
				}
			}
			return true
		case re.Op != syntax.OpConcat || len(re.Sub) == 0:
			return re.Op == syntax.OpBeginText
		}
		re = re.Sub[0]
	}
}

// Warnings lists what in c is valid but probably not what its author
// meant, for `stepgate check` to print without failing: today, regexes
// not anchored at the start with ^, which match anywhere in the path
// ("/admin" also matches "/public/admin-guide").
func Warnings(c Config) []*RuleError {
	var ws []*RuleError
	for i, r := range c.Rules {
		if r.Regex == "" {
			continue
		}
		if anchoredAtStart(r.Regex) {
			continue
		}
		ws = append(ws, &RuleError{Rule: i, Name: r.Name, Field: "regex", Index: -1, Value: r.Regex,
			Err: fmt.Errorf("is not anchored: it matches anywhere in the path, so %q also matches %q; start it with ^", exampleHit(r.Regex), "/other"+exampleHit(r.Regex))})
	}
	return ws
}

// exampleHit is a path the unanchored expr plainly matches, for the
// warning: its literal text, or "/x" when it has none.
func exampleHit(expr string) string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err == nil {
		re = re.Simplify()
		for re.Op == syntax.OpCapture && len(re.Sub) == 1 {
			re = re.Sub[0]
		}
		var lit strings.Builder
		subs := []*syntax.Regexp{re}
		if re.Op == syntax.OpConcat {
			subs = re.Sub
		}
		for _, s := range subs {
			if s.Op != syntax.OpLiteral {
				break
			}
			lit.WriteString(string(s.Rune))
		}
		if p := lit.String(); strings.HasPrefix(p, "/") {
			return p
		}
	}
	return "/x"
}
