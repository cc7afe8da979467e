package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/totp"
	"github.com/stepgate/stepgate/policy"
	"github.com/stepgate/stepgate/secondfactor"
)

// This file validates policies.* and factors.*: the rules, their tests,
// the factors they ask for, and the factor store those need.

func (c *Config) validatePolicies(ps *problems) {
	pc := policy.Config{
		CaseInsensitivePaths: c.Server.CaseInsensitivePaths,
		DefaultMaxAge:        c.SecondFactor.TTL,
		Rules:                make([]policy.Rule, len(c.Policies.Rules)),
	}
	var err error
	if pc.Default, err = policy.ParseAction(c.Policies.Default); err != nil {
		ps.add("policies.default", "%q is not an action: want allow, authenticate, step_up or deny%s", c.Policies.Default, suggestWord(c.Policies.Default, actionWords))
	}
	for i, rc := range c.Policies.Rules {
		key := fmt.Sprintf("policies.rules[%d]", i)
		rule := policy.RuleLabel(i, rc.Name)
		r := policy.Rule{
			Name: rc.Name, Hosts: rc.Hosts, Paths: rc.Paths, Regex: rc.Regex,
			Methods: rc.Methods, MaxAge: rc.MaxAge, ACR: rc.ACR,
			Factors: c.ruleFactors(ps, key, rc),
		}
		if r.ACR == "" && len(rc.Factors) > 0 {
			r.ACR = acrValues(rc.Factors)
		}
		if r.Action, err = policy.ParseAction(rc.Action); err != nil && rc.Action != "" {
			ps.addLabeled(key+".action", fmt.Sprintf("%s: action %q", rule, rc.Action),
				"is not an action: want allow, authenticate, step_up or deny%s", suggestWord(rc.Action, actionWords))
		}
		if r.Mode, err = policy.ParseMode(rc.Mode); err != nil {
			ps.addLabeled(key+".mode", fmt.Sprintf("%s: mode %q", rule, rc.Mode),
				"is not a mode: want enforce or audit%s", suggestWord(rc.Mode, []string{"enforce", "audit"}))
		}
		for j, h := range rc.Hosts {
			if strings.Contains(h, "://") || strings.ContainsAny(h, "/?#@") {
				ps.addLabeled(fmt.Sprintf("%s.hosts[%d]", key, j), fmt.Sprintf("%s: hosts[%d] %q", rule, j, h),
					"must be a host name only, without scheme or path")
			}
		}
		if rc.MaxAge > c.SecondFactor.TTL && c.SecondFactor.TTL > 0 {
			// A second-factor token lives second_factor.ttl at most, so a
			// longer max_age can never be reached: it reads as "once a
			// day" but means "once per token".
			ps.warn(key+".max_age", fmt.Sprintf("%s: max_age %s", rule, shortDuration(rc.MaxAge)),
				"is longer than second_factor.ttl (%s): a second factor is never that old, since its token expires first; the rule asks for a new code every %s",
				shortDuration(c.SecondFactor.TTL), shortDuration(c.SecondFactor.TTL))
		}
		pc.Rules[i] = r
	}
	testKeys := make([]policy.Test, len(c.Policies.Tests))
	testsOK := true
	for i, tc := range c.Policies.Tests {
		a, err := policy.ParseAction(tc.Expect)
		if err != nil {
			ps.addLabeled(fmt.Sprintf("policies.tests[%d].expect", i), fmt.Sprintf("policies.tests[%d] %q: expect %q", i, tc.Request, tc.Expect),
				"is not an action: want allow, authenticate, step_up or deny%s", suggestWord(tc.Expect, actionWords))
			testsOK = false
		}
		testKeys[i] = policy.Test{Request: tc.Request, Expect: a, Rule: tc.Rule}
	}

	p, err := policy.Compile(pc)
	if err != nil {
		for _, e := range unjoin(err) {
			var re *policy.RuleError
			if !errors.As(e, &re) {
				ps.addOnce("policies", "", "%v", e)
				continue
			}
			label := re.Where()
			if re.Rule < 0 {
				label = ""
			}
			ps.addOnce(ruleErrorKey(re), label, "%v", re.Err)
		}
		return
	}
	c.policy = p
	for _, w := range policy.Warnings(pc) {
		ps.warn(ruleErrorKey(w), w.Where(), "%v", w.Err)
	}
	if len(c.Policies.Tests) == 0 {
		ps.warn("policies.tests", "", "there are no policy tests: add a few (request, expect) so that check catches a rule change that opens or closes a page by mistake, e.g. - {request: \"GET http://app.example.com/admin\", expect: step_up}")
	}
	c.checkLoginLoop(ps)
	if !testsOK {
		return
	}
	for _, e := range p.RunTests(testKeys) {
		var te *policy.TestError
		if errors.As(e, &te) {
			ps.addLabeled(fmt.Sprintf("policies.tests[%d]", te.Test), fmt.Sprintf("policies.tests[%d] %q", te.Test, te.Request), "%v", te.Err)
		} else {
			ps.add("policies.tests", "%v", e)
		}
	}
}

var actionWords = []string{"allow", "authenticate", "step_up", "deny"}

// suggestWord is " (did you mean step_up?)" for the word of words closest
// to s, or "" when none is close.
func suggestWord(s string, words []string) string {
	best, bestD := "", 3
	norm := strings.ToLower(strings.NewReplacer("-", "_", " ", "_").Replace(s))
	for _, w := range words {
		d := min(editDistance(s, w), editDistance(norm, w))
		if d < bestD {
			best, bestD = w, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// checkLoginLoop refuses a policy that does not allow the login page when
// identity.login_url is on this origin: stepgate would send a signed-out
// browser to the login page, decide that page needs a sign-in, and send it
// there again, forever.
func (c *Config) checkLoginLoop(ps *problems) {
	lu := c.Identity.LoginURL
	if lu == "" || c.policy == nil {
		return
	}
	pub, err := url.Parse(c.Server.PublicURL)
	if err != nil {
		return
	}
	target, host := lu, pub.Host
	if !strings.HasPrefix(lu, "/") || strings.HasPrefix(lu, "//") {
		u, err := url.Parse(lu)
		if err != nil || !strings.EqualFold(u.Scheme, pub.Scheme) || !strings.EqualFold(u.Host, pub.Host) {
			return // another origin: the identity provider's page
		}
		target = u.RequestURI()
	}
	target, _, _ = strings.Cut(target, "?")
	target = strings.ReplaceAll(target, "{rd}", "x")
	if p := c.Server.Prefix; target == p || strings.HasPrefix(target, p+"/") {
		return // stepgate's own pages are not decided by the policy
	}
	t, err := policy.ParseTarget(target)
	if err != nil {
		ps.add("identity.login_url", "the path %q would be refused by the proxy: %v", target, err)
		return
	}
	d := c.policy.Match(policy.Request{Method: http.MethodGet, Host: host, Path: t.MatchPath})
	if d.Action == policy.Allow {
		return
	}
	by := "policies.default"
	if d.Index >= 0 {
		by = policy.RuleLabel(d.Index, d.Rule)
	}
	key, label := "identity.login_url", ""
	if _, inFile := c.meta.lines[key]; !inFile {
		if _, inEnv := c.meta.env[key]; !inEnv {
			// The default login_url: the fix is in the policies.
			key, label = "policies", fmt.Sprintf("identity.login_url (default %q)", lu)
		}
	}
	ps.addLabeled(key, label, "the policy decides GET %s %s (by %s), so a signed-out browser sent to the login page is sent there again, forever; allow it with a rule before the others: {name: login, paths: [%q], action: allow}",
		t.Path, d.Action, by, t.Path)
}

// ruleErrorKey turns a *policy.RuleError into its key path.
func ruleErrorKey(re *policy.RuleError) string {
	if re.Rule < 0 {
		if re.Field == "" || re.Field == "default" {
			return "policies.default"
		}
		return "policies." + re.Field
	}
	key := fmt.Sprintf("policies.rules[%d]", re.Rule)
	if re.Field != "" {
		key += "." + re.Field
		if re.Index >= 0 {
			key += fmt.Sprintf("[%d]", re.Index)
		}
	}
	return key
}

// unjoin flattens an errors.Join tree.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// storedMethods are the methods whose factors live in the factor store.
var storedMethods = []string{secondfactor.MethodPasskey, secondfactor.MethodTOTP}

// knownMethods are the methods factors.enabled may list, strongest first
// (the order the challenge page offers them in).
var knownMethods = []string{secondfactor.MethodPasskey, secondfactor.MethodTOTP, secondfactor.MethodEmail}

// factorStoreNeeded reports whether an enabled method keeps factors in the
// factor store (and so needs the database and the encryption key).
func (c *Config) factorStoreNeeded() bool {
	for _, m := range c.Factors.Enabled {
		if slices.Contains(storedMethods, m) {
			return true
		}
	}
	return false
}

func (c *Config) validateFactors(ps *problems) {
	f := c.Factors
	if len(f.Enabled) == 0 {
		ps.add("factors.enabled", "must list at least one method (email, totp, passkey)")
	}
	seen := map[string]bool{}
	for i, m := range f.Enabled {
		key := fmt.Sprintf("factors.enabled[%d]", i)
		switch {
		case !slices.Contains(knownMethods, m):
			ps.add(key, "unknown method %q (email, totp or passkey)", m)
		case seen[m]:
			ps.add(key, "%q is listed twice", m)
		}
		seen[m] = true
	}
	if seen[secondfactor.MethodPasskey] {
		c.validatePasskey(ps)
	}
	if !c.factorStoreNeeded() {
		return
	}
	switch f.Driver {
	case "sqlite":
		if f.SQLite.Path == "" {
			ps.add("factors.sqlite.path", "required with factors.driver sqlite")
		}
	case "postgres":
		if f.Postgres.DSN == "" {
			ps.add(c.secretSource("factors.postgres.dsn", "factors.postgres.dsn_file"), "missing: set factors.postgres.dsn, factors.postgres.dsn_file or %s", envName("factors.postgres.dsn"))
		}
	default:
		ps.add("factors.driver", "unknown driver %q (sqlite or postgres)", f.Driver)
	}
	src := c.secretSource("factors.encryption_key", "factors.encryption_key_file")
	switch {
	case f.EncryptionKey == "":
		ps.add(src, "missing: totp is enabled, so factor secrets must be encrypted: set factors.encryption_key, factors.encryption_key_file or %s", envName("factors.encryption_key"))
	case len(f.EncryptionKey) < factors.MinKeyLen:
		ps.add(src, "key is %d bytes; at least %d are required", len(f.EncryptionKey), factors.MinKeyLen)
	case f.EncryptionKey == c.SecondFactor.Secret:
		ps.add(src, "must differ from second_factor.secret")
	}
	for i, k := range f.PreviousEncryptionKeys {
		key := fmt.Sprintf("factors.previous_encryption_keys[%d]", i)
		if len(k) < factors.MinKeyLen {
			ps.add(key, "key is %d bytes; at least %d are required", len(k), factors.MinKeyLen)
		} else if k == f.EncryptionKey {
			ps.add(key, "is the current factors.encryption_key")
		}
	}
	p := c.totpParams()
	if err := p.Validate(); err != nil {
		field, msg, _ := strings.Cut(err.Error(), ": ")
		ps.add("factors.totp."+field, "%s", msg)
	}
	if strings.ContainsAny(f.TOTP.Issuer, ":\r\n") || f.TOTP.Issuer == "" {
		ps.add("factors.totp.issuer", "must be a non-empty line without ':' (apps split the label on it)")
	}
}

// totpParams is factors.totp as the totp package takes it.
func (c *Config) totpParams() totp.Params {
	t := c.Factors.TOTP
	return totp.Params{Period: t.Period, Digits: t.Digits, Skew: t.Skew}
}

// ruleFactors checks a rule's factors list against factors.enabled and
// returns what the policy decides with: the list, or every enabled method
// when the rule has none.
func (c *Config) ruleFactors(ps *problems, key string, rc RuleConfig) []string {
	if len(rc.Factors) == 0 {
		if rc.Action != "step_up" {
			return nil
		}
		return c.Factors.Enabled
	}
	for j, m := range rc.Factors {
		if !slices.Contains(c.Factors.Enabled, m) {
			ps.add(fmt.Sprintf("%s.factors[%d]", key, j), "%q is not in factors.enabled %v", m, c.Factors.Enabled)
		}
	}
	return rc.Factors
}
