package policy

import (
	"fmt"
	"net/netip"
	"strings"
)

// The Host header (SPEC §4). Go's server accepts any Host made of the
// bytes RFC 3986 allows somewhere in an authority, so a value such as
// "a.example,b.example" or "app.example:8080:9090" reaches the handler.
// Such a value matches no host rule, yet the frameworks behind stepgate
// read a host out of it: Rails (ActionDispatch::Request#host) takes the
// last entry of a comma list, Express (req.hostname) and Spring
// (UriComponentsBuilder) the first, and Express cuts the port at the first
// ':'. The policy would decide for no host at all while the upstream serves
// one it names. So the Host must be exactly one authority, or the request
// is refused before matching.

// maxHostLen bounds a host name (RFC 1035 §2.3.4 allows 253 characters
// plus a trailing dot; 255 leaves room for neither to be an issue).
const maxHostLen = 255

// ParseHost checks that a Host header value (r.Host) is exactly one
// authority without user information, and returns its host part: a
// reg-name made of RFC 3986 unreserved characters (letters, digits, '-',
// '.', '_', '~'), an IPv4 address in dotted decimal, or a bracketed IPv6
// literal without zone, optionally followed by one ':port' of 1 to 5 digits
// no greater than 65535. The returned host keeps the case and any trailing
// dot as sent and drops the brackets. Anything else is refused with an
// error wrapping ErrRejected that says why: percent-encoding and the
// sub-delimiters of RFC 3986 (',' ';' '!' ...), which some frameworks read
// as list separators; several ports; an empty port; a name whose last label
// is numeric but which is not a dotted-decimal IPv4 address ("010.1",
// "0x7f.1", "1.2.3.4.5"), which WHATWG URL parsers (Node, browsers) and
// inet_aton read as a different IPv4 address.
//
// The empty Host (an HTTP/1.0 request without one) is accepted as no
// authority at all: it matches only rules without hosts, and the upstream is
// told no host. ParseHost does not allocate on success.
func ParseHost(h string) (string, error) {
	if h == "" {
		return "", nil
	}
	host, port := h, ""
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", rejectHost(h, "an IPv6 literal must end with ']'")
		}
		host, port = h[1:end], h[end+1:]
		if port != "" && port[0] != ':' {
			return "", rejectHost(h, "only ':port' may follow an IPv6 literal")
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", rejectHost(h, "the bracketed part is not an IPv6 address (zones and IPvFuture are refused)")
		}
	} else {
		if i := strings.IndexByte(h, ':'); i >= 0 {
			host, port = h[:i], h[i:]
		}
		if why := checkRegName(host); why != "" {
			return "", rejectHost(h, why)
		}
	}
	if port != "" {
		if why := checkPort(port[1:]); why != "" {
			return "", rejectHost(h, why)
		}
	}
	return host, nil
}

func rejectHost(h, why string) error {
	return fmt.Errorf("%w: Host %q is not one authority: %s", ErrRejected, clip(h), why)
}

// checkPort checks the digits after ':'.
func checkPort(p string) string {
	switch {
	case p == "":
		return "an empty port is refused"
	case strings.IndexByte(p, ':') >= 0:
		return "several ports are refused: frameworks disagree on which one counts"
	case len(p) > 5 || !allDigits(p):
		return "the port must be 1 to 5 digits"
	}
	n := 0
	for i := 0; i < len(p); i++ {
		n = n*10 + int(p[i]-'0')
	}
	if n > 65535 {
		return "the port must be at most 65535"
	}
	return ""
}

// checkRegName checks a host name, or an IPv4 address, without port.
func checkRegName(s string) string {
	if s == "" {
		return "the host is empty"
	}
	if len(s) > maxHostLen {
		return fmt.Sprintf("a host longer than %d bytes is refused", maxHostLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
		case c == ',':
			return "a list of hosts (',') is refused: Rails reads the last, Express and Spring the first"
		case c == '@':
			return "user information ('@') is refused"
		case c == '%':
			return "percent-encoding in a host is refused"
		default:
			return fmt.Sprintf("character %q is refused in a host: only letters, digits, '-', '.', '_' and '~' are accepted", c)
		}
	}
	// WHATWG URL §3.5 (host parsing): a name whose last label (ignoring
	// one trailing dot) is a number is an IPv4 address, read with octal,
	// hex and fewer than four parts; inet_aton does the same. Only the
	// plain dotted-decimal form means the same to everyone.
	name := strings.TrimSuffix(s, ".")
	last := name[strings.LastIndexByte(name, '.')+1:]
	if numericLabel(last) {
		if a, err := netip.ParseAddr(name); err != nil || !a.Is4() {
			return "a numeric host that is not a dotted-decimal IPv4 address is refused: URL parsers read it as another address (octal, hex, short forms)"
		}
	}
	return ""
}

// numericLabel reports whether a label is a number to a WHATWG URL parser:
// decimal digits, or 0x/0X followed by hex digits.
func numericLabel(l string) bool {
	if l == "" {
		return false
	}
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		for i := 2; i < len(l); i++ {
			if !('0' <= l[i] && l[i] <= '9' || 'a' <= l[i] && l[i] <= 'f' || 'A' <= l[i] && l[i] <= 'F') {
				return false
			}
		}
		return true
	}
	return allDigits(l)
}
