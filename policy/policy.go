// Package policy decides what a request needs from the path policies: it
// canonicalises request targets, compiles rules once, and matches requests
// against them without I/O or allocation on the hot path.
//
// The types and entry points are here; the bodies live in the other files
// of the package: target.go (ParseTarget), glob.go, host.go, compile.go,
// index.go, match.go, explain.go and runtests.go.
package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Action is what a rule requires. The zero value is invalid.
// Actions are ordered by strictness: Allow < Authenticate < StepUp < Deny.
type Action uint8

const (
	Allow Action = iota + 1
	Authenticate
	StepUp
	Deny
)

// ParseAction parses allow | authenticate | step_up | deny.
func ParseAction(s string) (Action, error) {
	switch s {
	case "allow":
		return Allow, nil
	case "authenticate":
		return Authenticate, nil
	case "step_up":
		return StepUp, nil
	case "deny":
		return Deny, nil
	}
	return 0, fmt.Errorf("unknown action %q: want allow, authenticate, step_up or deny", s)
}

// String returns the config spelling (allow, authenticate, step_up, deny).
func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Authenticate:
		return "authenticate"
	case StepUp:
		return "step_up"
	case Deny:
		return "deny"
	}
	// Never a number: this reaches messages (`stepgate check`), and a
	// user wrote a word.
	return "an unknown action"
}

// valid reports whether a is one of the four actions; the zero value is not.
func (a Action) valid() bool { return a >= Allow && a <= Deny }

// Mode says whether a rule's decision is enforced or only observed.
type Mode uint8

const (
	Enforce Mode = iota // zero value: enforce
	Audit
)

// ParseMode parses enforce | audit ("" is enforce).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "enforce":
		return Enforce, nil
	case "audit":
		return Audit, nil
	}
	return 0, fmt.Errorf("unknown mode %q: want enforce or audit", s)
}

func (m Mode) String() string {
	switch m {
	case Enforce:
		return "enforce"
	case Audit:
		return "audit"
	}
	return "an unknown mode"
}

// Rule is one policy rule as written in the config.
type Rule struct {
	Name    string
	Hosts   []string // optional; "*.example.com" wildcards
	Paths   []string // globs; exactly one of Paths and Regex is set
	Regex   string   // one RE2 expression, anchored by its author
	Methods []string // optional; empty means every method
	Action  Action
	MaxAge  time.Duration // step_up only; 0 means Config.DefaultMaxAge
	ACR     string
	Mode    Mode
	// Factors lists the second-factor methods that satisfy a step_up rule
	// (SPEC §11); nil means any method.
	Factors []string
}

// Config is a whole policy.
type Config struct {
	Default              Action        // applies when no rule matches
	Rules                []Rule        // tried in order; the first match decides
	CaseInsensitivePaths bool          // match paths ignoring ASCII case (IIS upstreams)
	DefaultMaxAge        time.Duration // max_age for step_up rules that set none
}

// RuleError locates one problem in Config.Rules.
type RuleError struct {
	Rule  int    // index in Config.Rules; -1 for the policy as a whole (e.g. default)
	Field string // "name", "hosts", "paths", "regex", "methods", "action", "max_age", "mode", "" for the rule itself
	Index int    // index within a list field, or -1
	Err   error
	Name  string // the rule's name when it has one, for the message; "" otherwise
	// Value is the offending entry as written (the whole glob, host,
	// method or regex), quoted in the message; "" when the problem is not
	// one entry's.
	Value string
}

// Error reads `rule "admin": paths[1] "/files/**x": <Err>`; a rule
// without a name is "rule 3".
func (e *RuleError) Error() string {
	b := []byte(e.Where())
	b = append(b, ": "...)
	if e.Err != nil {
		b = append(b, e.Err.Error()...)
	} else {
		b = append(b, "invalid"...)
	}
	return string(b)
}

// Where is the message's location part: `rule "admin": paths[1]
// "/files/**x"`, `rule 3`, or `policy: default`.
func (e *RuleError) Where() string {
	var b strings.Builder
	if e.Rule < 0 {
		b.WriteString("policy")
	} else {
		b.WriteString(RuleLabel(e.Rule, e.Name))
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
		if e.Index >= 0 {
			fmt.Fprintf(&b, "[%d]", e.Index)
		}
	}
	if e.Value != "" {
		fmt.Fprintf(&b, " %q", e.Value)
	}
	return b.String()
}

// RuleLabel names a rule in messages: `rule "admin"`, or `rule 3` (its
// index) when it has no usable name.
func RuleLabel(i int, name string) string {
	if name == "" || !printable(name) {
		return fmt.Sprintf("rule %d", i)
	}
	return fmt.Sprintf("rule %q", name)
}
func (e *RuleError) Unwrap() error { return e.Err }

// Policy is a compiled, immutable Config, safe for concurrent use.
// Build it with Compile; the zero value is not usable.
type Policy struct {
	rules []rule   // compiled Config.Rules, same order and indices
	def   Decision // what applies when no rule matches
	fold  bool     // Config.CaseInsensitivePaths
	root  *node    // segment trie of literal path prefixes (index.go)
	// named lists every method some rule names, upper-case, sorted and
	// without duplicates: the methods Request.AnyMethod stands for. Empty
	// when no rule restricts methods (MethodSensitive is false).
	named []string
}

// Len reports the number of rules.
func (p *Policy) Len() int { return len(p.rules) }

// MethodSensitive reports whether some rule restricts methods. When none
// does, every method of a request gets the same decision, so a caller need
// not look for method overrides it would have to pay for (a request body).
func (p *Policy) MethodSensitive() bool { return len(p.named) > 0 }

// Request is what matching looks at.
type Request struct {
	Method    string   // exactly as sent
	Overrides []string // method-override values as sent (headers, _method); nil when none
	Host      string   // Host as sent, maybe with port or trailing dot
	Path      string   // Target.MatchPath
	// AnyMethod says the request may be run as a method nobody could read,
	// e.g. a `_method` form field beyond the part of the body that was
	// inspected. Match then also decides every method some rule names and
	// any other method, and the strictest decision wins (deny on doubt,
	// SPEC §4). False (the zero value): only Method and Overrides count.
	AnyMethod bool
}

// Decision is the outcome of Match.
type Decision struct {
	Rule   string // rule name; "default" when no rule matched
	Index  int    // rule index; -1 for the default
	Action Action
	Mode   Mode
	MaxAge time.Duration // for StepUp: the rule's max_age (or DefaultMaxAge)
	ACR    string
	// Factors is, for StepUp, the methods whose second factor satisfies
	// the rule, comma-separated in the rule's order ("totp,email"); ""
	// means any. A string keeps Decision comparable and Match
	// allocation-free; HasFactor reads it.
	Factors string
}

// HasFactor reports whether method satisfies d ("" Factors: any does).
func (d Decision) HasFactor(method string) bool {
	if d.Factors == "" {
		return true
	}
	for rest := d.Factors; rest != ""; {
		var m string
		m, rest, _ = strings.Cut(rest, ",")
		if m == method {
			return true
		}
	}
	return false
}

// FactorList is Factors as a list; nil for any.
func (d Decision) FactorList() []string {
	if d.Factors == "" {
		return nil
	}
	return strings.Split(d.Factors, ",")
}

// Step is one rule considered by Explain.
type Step struct {
	Index   int
	Rule    string
	Matched bool
	Why     string // e.g. "host app.example.com not in [...]", "path /x does not match /admin/**"
}

// Explanation is Match with its reasoning, for `stepgate explain`.
type Explanation struct {
	Methods  []string // effective methods considered
	Steps    []Step   // every rule considered up to the decisive one
	Decision Decision
}

// ErrRejected is wrapped by every ParseTarget refusal (answer 400).
var ErrRejected = errors.New("ambiguous request target")

// Target is a request target after canonicalisation.
type Target struct {
	Path      string // canonical escaped path: what is forwarded upstream
	MatchPath string // Path with ;params removed: what is matched
	RawQuery  string // query without '?', unchanged
}

// Test is one policies.tests entry.
type Test struct {
	Request string // "METHOD URL"
	Expect  Action
	Rule    string // optional
}

// TestError is one failed policy test.
type TestError struct {
	Test    int    // index in the tests list, counted from 0
	Request string // the test's request line, for the message
	Err     error
}

// Error reads `test 6 "GET http://app.example/x": got allow by rule
// "public"; want deny`.
func (e *TestError) Error() string {
	return fmt.Sprintf("test %d %q: %v", e.Test, e.Request, e.Err)
}
func (e *TestError) Unwrap() error { return e.Err }
