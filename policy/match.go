package policy

// Match decides r: first matching rule wins, else the default. With method
// overrides or AnyMethod, each effective method is decided and the
// strictest decision wins: a POST overridden to DELETE must not slip
// through an earlier "allow POST" rule, since the upstream framework will
// run it as a DELETE (SPEC §4). Match does not allocate.
//
// With AnyMethod it also decides every named method and otherMethod. A
// method no rule names matches only the rules without methods, which can
// be stricter than what any named method gets ("allow POST", "allow
// DELETE", then "deny" for the rest), so it is decided too.
func (p *Policy) Match(r Request) Decision {
	// The host is normalised once for every method decided below: the
	// lower-case key into a stack buffer, which does not allocate. The key
	// is passed apart from host, which escapes (netip.ParseAddr), so that
	// escape analysis keeps buf on the stack.
	host := requestHost(r.Host)
	var buf [hostKeyMax]byte
	key := hostKey(&buf, host)
	best := p.decision(p.first(r.Method, false, host, key, r.Path))
	for _, m := range r.Overrides {
		if d := p.decision(p.first(m, true, host, key, r.Path)); stricter(d, best) {
			best = d
		}
	}
	if r.AnyMethod {
		for _, m := range p.named {
			if m == r.Method {
				continue // decided above
			}
			if d := p.decision(p.first(m, false, host, key, r.Path)); stricter(d, best) {
				best = d
			}
		}
		if d := p.decision(p.first(otherMethod, false, host, key, r.Path)); stricter(d, best) {
			best = d
		}
	}
	return best
}

// otherMethod stands for any method no rule names. It is empty, which
// checkMethod refuses in rules, so it matches exactly the rules without
// methods.
const otherMethod = ""

// stricter reports whether a is stricter than b: a stricter action, then
// enforce over audit, then (for step_up) the shorter max_age. On a tie the
// earlier decision is kept.
func stricter(a, b Decision) bool {
	if a.Action != b.Action {
		return a.Action > b.Action
	}
	if a.Mode != b.Mode {
		return a.Mode == Enforce
	}
	return a.Action == StepUp && a.MaxAge < b.MaxAge
}

func (p *Policy) decision(i int) Decision {
	if i < 0 {
		return p.def
	}
	return p.rules[i].dec
}

// first returns the index of the first rule that matches, or -1. up says
// that method is an override value, which frameworks upper-case. host is
// from requestHost, key from hostKey.
//
// It tries the candidate lists of the trie nodes along the path, at each
// node the plain list and the request host's byHost list; each list is
// ascending, so the first full match in a list is that list's answer,
// and the smallest answer over all lists is the first matching rule.
func (p *Policy) first(method string, up bool, host string, key []byte, path string) int {
	best := len(p.rules)
	n := p.root
	best = p.scanNode(n, best, method, up, host, key, path)
	for depth, pos := 0, 0; depth < maxIndexDepth; depth++ {
		seg, next, ok := nextSeg(path, pos)
		if !ok {
			break
		}
		if n = n.lookup(seg, p.fold); n == nil {
			break
		}
		best = p.scanNode(n, best, method, up, host, key, path)
		pos = next
	}
	if best == len(p.rules) {
		return -1
	}
	return best
}

// scanNode tries a node's plain list, then its byHost list for the
// request host. The byHost lookup converts the key in the index
// expression, which does not allocate; a nil key (a host too long for any
// name) has no list.
func (p *Policy) scanNode(n *node, best int, method string, up bool, host string, key []byte, path string) int {
	best = p.scan(n.rules, best, method, up, host, path)
	if n.byHost != nil && key != nil {
		best = p.scanHost(n.byHost[string(key)], best, method, up, path)
	}
	return best
}

func (p *Policy) scan(list []int32, best int, method string, up bool, host, path string) int {
	for _, i := range list {
		if int(i) >= best {
			break
		}
		if p.rules[i].matches(method, up, host, path, p.fold) {
			return int(i)
		}
	}
	return best
}

// scanHost is scan for a byHost list, whose rules all match the request
// host by construction.
func (p *Policy) scanHost(list []int32, best int, method string, up bool, path string) int {
	for _, i := range list {
		if int(i) >= best {
			break
		}
		if r := &p.rules[i]; r.methodOK(method, up) && r.pathOK(path, p.fold) {
			return int(i)
		}
	}
	return best
}

// matches reports whether the rule matches; hosts and methods first, as
// they are the cheapest.
func (r *rule) matches(method string, up bool, host, path string, fold bool) bool {
	return r.hostOK(host) && r.methodOK(method, up) && r.pathOK(path, fold)
}

func (r *rule) hostOK(host string) bool {
	if len(r.hosts) == 0 {
		return true
	}
	for i := range r.hosts {
		if r.hosts[i].match(host) {
			return true
		}
	}
	return false
}

// methodOK compares exactly as sent (SPEC §4); a rule listing GET also
// covers HEAD, which servers answer with the GET handler.
func (r *rule) methodOK(m string, up bool) bool {
	if len(r.methods) == 0 {
		return true
	}
	for _, rm := range r.methods {
		if methodEqual(rm, m, up) || rm == "GET" && methodEqual("HEAD", m, up) {
			return true
		}
	}
	return false
}

// methodEqual compares a configured method with one sent; with up the sent
// value is upper-cased first, without allocating.
func methodEqual(rm, m string, up bool) bool {
	if !up {
		return rm == m
	}
	if len(rm) != len(m) {
		return false
	}
	for i := 0; i < len(m); i++ {
		if upper(m[i]) != rm[i] {
			return false
		}
	}
	return true
}

func (r *rule) pathOK(path string, fold bool) bool {
	if r.re != nil {
		// Folding is compiled into the expression as (?i).
		return r.re.MatchString(path)
	}
	for i := range r.globs {
		if r.globs[i].match(path, fold) {
			return true
		}
	}
	return false
}
