package policy

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode/utf8"
)

// rule is one compiled Config.Rules entry.
type rule struct {
	name    string
	hosts   []hostPat      // empty: every host
	globs   []glob         // exactly one of globs and re is set
	re      *regexp.Regexp // with (?i) when the policy folds case
	methods []string       // empty: every method
	dec     Decision       // what the rule decides when it matches
}

// Compile validates and compiles c. Every problem is reported: the error is
// an errors.Join of *RuleError values.
//
// A rule that can never decide, because earlier rules match every request
// it matches (shadow.go), is an error too.
func Compile(c Config) (*Policy, error) { return compile(c, false) }

// compile is Compile with loose: it reports every problem it finds, not only
// the first, so `stepgate check` can list them all at once (SPEC §2).
//
// With loose, rules shadowed by earlier ones are accepted: only the
// package's own tests of matching on random policies ask for it.
func compile(c Config, loose bool) (*Policy, error) {
	var errs []error
	add := func(rule int, name, field string, index int, value string, err error) {
		errs = append(errs, &RuleError{Rule: rule, Name: name, Field: field, Index: index, Value: value, Err: err})
	}
	if !c.Default.valid() {
		add(-1, "", "default", -1, "", errors.New("is missing or not an action: want allow, authenticate, step_up or deny"))
	}
	if c.DefaultMaxAge < 0 {
		add(-1, "", "default_max_age", -1, "", fmt.Errorf("%s is negative", c.DefaultMaxAge))
	}
	if c.Default == StepUp && c.DefaultMaxAge <= 0 {
		add(-1, "", "default_max_age", -1, "", errors.New("the default action is step_up but there is no default max_age (second_factor.ttl)"))
	}

	p := &Policy{fold: c.CaseInsensitivePaths, rules: make([]rule, len(c.Rules))}
	p.def = Decision{Rule: "default", Index: -1, Action: c.Default}
	if c.Default == StepUp {
		p.def.MaxAge = c.DefaultMaxAge
	}

	seen := make(map[string]int, len(c.Rules))
	for i, r := range c.Rules {
		name := r.Name
		errf := func(field string, index int, err error) { add(i, name, field, index, "", err) }
		errv := func(field string, index int, value string, err error) { add(i, name, field, index, value, err) }
		cr := &p.rules[i]
		cr.name = name

		switch {
		case name == "":
			errf("name", -1, errors.New("is missing; every rule needs a unique name (it appears in logs, metrics and headers)"))
		case strings.EqualFold(name, "default"):
			errf("name", -1, errors.New(`"default" is reserved for the decision when no rule matches`))
		case !printable(name):
			errf("name", -1, errors.New("must be printable text without control characters or surrounding spaces (it is sent in the X-Stepup-Rule header)"))
		default:
			if j, dup := seen[name]; dup {
				errf("name", -1, fmt.Errorf("%q is already the name of rule %d; names must be unique", name, j))
			} else {
				seen[name] = i
			}
		}

		if !r.Action.valid() {
			if r.Action == 0 {
				errf("action", -1, errors.New("is missing: want allow, authenticate, step_up or deny"))
			} else {
				errf("action", -1, errors.New("is not an action: want allow, authenticate, step_up or deny"))
			}
		}
		if r.Mode != Enforce && r.Mode != Audit {
			errf("mode", -1, errors.New("is not a mode: want enforce or audit"))
		}
		switch {
		case r.MaxAge < 0:
			errf("max_age", -1, fmt.Errorf("%s is negative", r.MaxAge))
		case r.MaxAge > 0 && r.Action.valid() && r.Action != StepUp:
			errf("max_age", -1, fmt.Errorf("is only meaningful for step_up rules, and this rule is %s", r.Action))
		case r.Action == StepUp && r.MaxAge == 0 && c.DefaultMaxAge <= 0:
			errf("max_age", -1, errors.New("is not set and there is no default max_age (second_factor.ttl)"))
		}
		for j, m := range r.Factors {
			if m == "" || strings.ContainsAny(m, ", ") || !printable(m) {
				errf("factors", j, fmt.Errorf("%q is not a method name", m))
			}
		}
		if len(r.Factors) > 0 && r.Action != StepUp {
			errf("factors", -1, fmt.Errorf("is only meaningful for step_up rules, and this rule is %s", r.Action))
		}
		if r.ACR != "" && (!printable(r.ACR) || strings.ContainsAny(r.ACR, `"\`)) {
			errf("acr", -1, errors.New(`must be printable text without '"' or '\' (it is sent in a WWW-Authenticate header)`))
		}

		for j, h := range r.Hosts {
			hp, err := compileHost(h)
			if err != nil {
				errv("hosts", j, h, err)
				continue
			}
			cr.hosts = append(cr.hosts, hp)
		}
		for j, m := range r.Methods {
			if err := checkMethod(m); err != nil {
				errv("methods", j, m, err)
				continue
			}
			cr.methods = append(cr.methods, m)
		}

		switch {
		case len(r.Paths) > 0 && r.Regex != "":
			errf("", -1, errors.New("has both paths and regex; set exactly one"))
		case len(r.Paths) == 0 && r.Regex == "":
			errf("", -1, errors.New("has neither paths nor regex; set exactly one"))
		case r.Regex != "":
			expr := r.Regex
			if c.CaseInsensitivePaths {
				expr = "(?i)" + expr
			}
			re, err := regexp.Compile(expr)
			if err != nil {
				errv("regex", -1, r.Regex, fmt.Errorf("is not a valid RE2 expression: %w", err))
				break
			}
			cr.re = re
		default:
			for j, s := range r.Paths {
				g, err := compileGlob(s, c.CaseInsensitivePaths)
				if err != nil {
					errv("paths", j, s, err)
					continue
				}
				cr.globs = append(cr.globs, g)
			}
		}

		cr.dec = Decision{Rule: name, Index: i, Action: r.Action, Mode: r.Mode, ACR: r.ACR}
		if r.Action == StepUp {
			cr.dec.Factors = strings.Join(r.Factors, ",")
			cr.dec.MaxAge = r.MaxAge
			if cr.dec.MaxAge == 0 {
				cr.dec.MaxAge = c.DefaultMaxAge
			}
		}
	}
	if len(errs) == 0 && !loose {
		for j, by := range shadowed(p.rules, c.Rules, c.CaseInsensitivePaths) {
			if by != nil {
				add(j, c.Rules[j].Name, "", -1, "", shadowError(p.rules, by))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.root = buildIndex(p.rules, c.Rules, c.CaseInsensitivePaths)
	p.named = namedMethods(p.rules)
	return p, nil
}

// shadowError says which earlier rules decide everything a rule matches.
func shadowError(rules []rule, by []int) error {
	names := make([]string, len(by))
	for k, i := range by {
		names[k] = RuleLabel(i, rules[i].name)
	}
	which := names[0]
	if len(names) > 1 {
		which = strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
	}
	return fmt.Errorf("can never decide: every request it matches is matched first by %s (the first matching rule wins); move it above, or narrow the earlier rule", which)
}

// namedMethods returns every method the rules name, sorted, without
// duplicates. They are upper-case already: checkMethod refuses the rest.
func namedMethods(rules []rule) []string {
	var ms []string
	for i := range rules {
		ms = append(ms, rules[i].methods...)
	}
	slices.Sort(ms)
	return slices.Compact(ms)
}

// checkMethod validates a configured method. Methods compare exactly as
// sent (SPEC §4), and clients send the standard ones upper-case, so a
// lower-case "post" would silently never match a POST: refused.
func checkMethod(m string) error {
	if m == "" {
		return errors.New("is empty")
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		case 'a' <= c && c <= 'z':
			return fmt.Errorf("is not upper-case; methods compare exactly as sent, so it would not match %q", strings.ToUpper(m))
		default:
			return errors.New("is not a method name (RFC 9110 §9.1: a token such as GET or POST)")
		}
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters
// or surrounding spaces.
func printable(s string) bool {
	if !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// regexPrefix returns the literal path segments every match of expr must
// start with, when expr is anchored at the start of the text ("^/api/v1/…"
// gives ["api"]: "v1" could be followed by more characters only if it is
// not followed by '/'). Otherwise nil: the rule is always a candidate.
// regexp.LiteralPrefix is not used because it describes where a match
// starts, not where the input starts, for unanchored expressions.
func regexPrefix(expr string, fold bool) []string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil
	}
	for re.Op == syntax.OpCapture && len(re.Sub) == 1 {
		re = re.Sub[0]
	}
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 || re.Sub[0].Op != syntax.OpBeginText {
		return nil
	}
	var lit strings.Builder
	for _, s := range re.Sub[1:] {
		if s.Op != syntax.OpLiteral || (s.Flags&syntax.FoldCase != 0 && !fold) {
			break
		}
		lit.WriteString(string(s.Rune))
	}
	prefix := lit.String()
	if fold {
		prefix = strings.ToLower(prefix)
	}
	if !strings.HasPrefix(prefix, "/") {
		return nil
	}
	// Only segments followed by '/' are complete.
	end := strings.LastIndexByte(prefix, '/')
	var segs []string
	for _, s := range strings.Split(prefix[:end], "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	return segs
}
