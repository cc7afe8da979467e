package policy

import (
	"fmt"
	"strings"
)

// Explain is Match with its reasoning, for `stepgate explain`. It scans the rules linearly, without the
// index, so it doubles as the reference that tests compare Match with.
func (p *Policy) Explain(r Request) Explanation {
	host := requestHost(r.Host)
	type eff struct {
		method string
		up     bool
	}
	effs := []eff{{r.Method, false}}
	methods := []string{r.Method}
	for _, m := range r.Overrides {
		effs = append(effs, eff{m, true})
		methods = append(methods, strings.ToUpper(m))
	}
	if r.AnyMethod {
		// As match: every other named method, then any method none names.
		for _, m := range p.named {
			if m == r.Method {
				continue
			}
			effs = append(effs, eff{m, false})
			methods = append(methods, m)
		}
		effs = append(effs, eff{otherMethod, false})
		methods = append(methods, OtherMethodLabel)
	}

	// Decide each effective method; the strictest decision wins.
	last := -1 // the last rule to show: the latest per-method decision
	var final Decision
	for k, e := range effs {
		i := p.linear(e.method, e.up, host, r.Path)
		d := p.decision(i)
		if k == 0 || stricter(d, final) {
			final = d
		}
		if i < 0 {
			last = len(p.rules) - 1
		} else {
			last = max(last, i)
		}
	}

	ex := Explanation{Methods: methods, Decision: final}
	for i := 0; i <= last; i++ {
		cr := &p.rules[i]
		st := Step{Index: i, Rule: cr.name}
		var matched []string
		for k, e := range effs {
			if cr.matches(e.method, e.up, host, r.Path, p.fold) {
				matched = append(matched, methods[k])
			}
		}
		switch {
		case len(matched) > 0:
			st.Matched = true
			st.Why = fmt.Sprintf("matches %s: %s", strings.Join(matched, ", "), cr.dec.Action)
			if cr.dec.Mode == Audit {
				st.Why += " (audit: decided and logged, but forwarded)"
			}
			if i != final.Index {
				st.Why += "; not decisive: a stricter decision applies to another effective method"
			}
		case !cr.hostOK(host):
			if host == "" {
				st.Why = fmt.Sprintf("the request has no host; the rule needs one of %s", hostList(cr.hosts))
			} else {
				st.Why = fmt.Sprintf("host %s not in %s", host, hostList(cr.hosts))
			}
		case !cr.pathOK(r.Path, p.fold):
			st.Why = fmt.Sprintf("path %s does not match %s", r.Path, cr.pathDesc())
		default:
			st.Why = fmt.Sprintf("method %s not in [%s]", strings.Join(methods, ", "), strings.Join(cr.methods, " "))
			if len(cr.methods) > 0 && strings.Contains(strings.Join(cr.methods, " "), "GET") {
				st.Why += " (GET also covers HEAD)"
			}
		}
		ex.Steps = append(ex.Steps, st)
	}
	if final.Index < 0 {
		ex.Steps = append(ex.Steps, Step{Index: -1, Rule: "default", Matched: true,
			Why: fmt.Sprintf("no rule matches: the default is %s", final.Action)})
	}
	return ex
}

// OtherMethodLabel is how Explanation.Methods shows, with Request.AnyMethod,
// any method that no rule names.
const OtherMethodLabel = "(any other method)"

// linear is Match's first without the index: the plain reading of "first
// match wins".
func (p *Policy) linear(method string, up bool, host, path string) int {
	for i := range p.rules {
		if p.rules[i].matches(method, up, host, path, p.fold) {
			return i
		}
	}
	return -1
}

func hostList(hs []hostPat) string {
	s := make([]string, len(hs))
	for i, h := range hs {
		s[i] = h.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

func (r *rule) pathDesc() string {
	if r.re != nil {
		return "regex " + r.re.String()
	}
	s := make([]string, len(r.globs))
	for i, g := range r.globs {
		s[i] = g.src
	}
	return strings.Join(s, " or ")
}
