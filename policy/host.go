package policy

import (
	"errors"
	"net/netip"
	"strings"
)

// Hosts compare case-insensitively, without port or trailing dot
// (SPEC §4). "*.example.com" matches subdomains at any depth, never
// example.com itself.

type hostPat struct {
	name     string     // lower-case, no trailing dot; for a wildcard the suffix with its leading '.'
	wildcard bool       // "*.example.com"
	ip       netip.Addr // valid for IP literals, which compare as addresses
}

func (h hostPat) String() string {
	switch {
	case h.ip.IsValid():
		return h.ip.String()
	case h.wildcard:
		return "*" + h.name
	}
	return h.name
}

// compileHost validates and normalises one configured host.
func compileHost(s string) (hostPat, error) {
	switch {
	case s == "":
		return hostPat{}, errors.New("is empty")
	case strings.Contains(s, "://"):
		return hostPat{}, errors.New("is a URL; write the host name only, without scheme")
	case strings.ContainsAny(s, "/?#@"):
		return hostPat{}, errors.New("is not a host name; write it without path, query or user")
	}
	if strings.HasPrefix(s, "[") {
		a, err := netip.ParseAddr(strings.TrimSuffix(s[1:], "]"))
		if err != nil || !strings.HasSuffix(s, "]") || !a.Is6() {
			return hostPat{}, errors.New("is not a bracketed IPv6 address (a port is not allowed: hosts match without port)")
		}
		return hostPat{ip: a}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return hostPat{ip: a}, nil
	}
	if strings.IndexByte(s, ':') >= 0 {
		return hostPat{}, errors.New("has a port; hosts match without port, so leave it out")
	}
	name := strings.TrimSuffix(strings.ToLower(s), ".")
	h := hostPat{name: name}
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		h = hostPat{name: "." + rest, wildcard: true}
		name = rest
	}
	if strings.IndexByte(name, '*') >= 0 {
		return hostPat{}, errors.New("'*' is only allowed as the whole first label, as in *.example.com")
	}
	if !validHostname(name) {
		return hostPat{}, errors.New("is not a valid host name (letters, digits, '-' and '_' in dot-separated labels)")
	}
	return h, nil
}

func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// requestHost strips the port, IPv6 brackets and one trailing dot from a
// Host header as sent. It returns a substring and does not allocate.
func requestHost(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
}

// match reports whether the request host (from requestHost) matches.
func (hp *hostPat) match(h string) bool {
	if hp.ip.IsValid() {
		a, err := netip.ParseAddr(h)
		return err == nil && a.Unmap() == hp.ip.Unmap()
	}
	if hp.wildcard {
		// At least one label before the suffix: "*.example.com" never
		// matches "example.com" or ".example.com".
		n := len(h) - len(hp.name)
		return n > 0 && h[n-1] != '.' && foldEqual(h[n:], hp.name)
	}
	return foldEqual(h, hp.name)
}

// foldEqual compares s with the lower-case t ignoring ASCII case.
func foldEqual(s, t string) bool { return segEqual(s, t, true) }
