package secondfactor

import (
	"net/http"
	"strings"
)

// StripCookie removes every cookie named CookieName from h's Cookie lines,
// so that the upstream never receives the second-factor token (SPEC §7).
// The other cookies are kept in order with their bytes unchanged, joined
// by "; " (RFC 6265 §5.4); a line left empty is dropped, and so is the
// Cookie header when no line is left. A line without the cookie is kept
// as is and costs no allocation. Pairs are split and trimmed as Check
// reads them (nextCookie), so whatever Check could take for a token is
// removed.
func (t *Tokens) StripCookie(h http.Header) {
	lines, ok := h["Cookie"]
	if !ok {
		return
	}
	name := t.cfg.CookieName
	var out []string
	for i, line := range lines {
		kept, changed := stripCookieLine(line, name)
		if !changed && out == nil {
			continue
		}
		if out == nil {
			out = make([]string, 0, len(lines))
			out = append(out, lines[:i]...)
		}
		if kept != "" {
			out = append(out, kept)
		}
	}
	switch {
	case out == nil:
		// Nothing removed.
	case len(out) == 0:
		delete(h, "Cookie")
	default:
		h["Cookie"] = out
	}
}

// stripCookieLine returns line without the pairs named name, and whether
// any was removed.
func stripCookieLine(line, name string) (string, bool) {
	if !strings.Contains(line, name) {
		return line, false
	}
	var b strings.Builder
	b.Grow(len(line))
	changed := false
	for rest := line; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ";")
		k, _, _ := strings.Cut(part, "=")
		if strings.Trim(k, " \t") == name {
			changed = true
			continue
		}
		if strings.Trim(part, " \t") == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(strings.Trim(part, " \t"))
	}
	if !changed {
		return line, false
	}
	return b.String(), true
}

// CookieName is the cookie the token travels in (second_factor.cookie).
func (t *Tokens) CookieName() string { return t.cfg.CookieName }
