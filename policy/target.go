package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// This file canonicalises request targets (SPEC §4, "What the policy saw is
// what the upstream gets"). The canonical path is both what the rules match
// and what is forwarded, so every form that some upstream could read
// differently from us is refused instead of guessed at.

// ParseTarget canonicalises an origin-form request target (r.RequestURI) as
// SPEC §4, or refuses it with an error wrapping ErrRejected that says why.
func ParseTarget(uri string) (Target, error) {
	if uri == "" {
		return Target{}, reject("the request target is empty")
	}
	if uri[0] != '/' {
		return Target{}, reject(notOriginForm(uri))
	}
	path, query, _ := strings.Cut(uri, "?")
	cp, why := canonicalPath(path)
	if why != "" {
		return Target{}, reject(why)
	}
	return Target{Path: cp, MatchPath: stripParams(cp), RawQuery: query}, nil
}

// reject wraps ErrRejected with a reason a human understands.
func reject(why string) error { return fmt.Errorf("%w: %s", ErrRejected, why) }

// notOriginForm explains why a target that does not start with '/' is
// refused. RFC 9112 §3.2 lists the four forms; only origin-form is served.
//
// The target is quoted without its query, which may carry secrets
// (access_token=...) and must never reach a log line, and without what
// could be user information before an '@'.
func notOriginForm(uri string) string {
	uri, _, _ = strings.Cut(uri, "?")
	if i := strings.LastIndexByte(uri, '@'); i >= 0 {
		uri = "…" + uri[i:] // no user information either
	}
	switch {
	case uri == "*":
		return "asterisk-form (OPTIONS *) is not accepted; the target must be a path starting with '/'"
	case strings.Contains(uri, "://"):
		// Go's server would take the host of an absolute-form target over
		// the Host header, so the policy and the upstream could disagree.
		return "absolute-form targets (scheme://host/path) are refused; send the path with a Host header"
	}
	if i := strings.IndexByte(uri, ':'); i > 0 {
		if allDigits(uri[i+1:]) {
			return "authority-form targets (CONNECT host:port) are refused; this is not a forward proxy"
		}
		return fmt.Sprintf("%q looks like a URL without '//' (rootless form); the target must be a path starting with '/'", clip(uri))
	}
	return fmt.Sprintf("%q is not origin-form; the target must be a path starting with '/'", clip(uri))
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// clip shortens attacker-controlled input quoted in an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Byte classes of RFC 3986 §2.2-2.3 and Appendix A (pchar).
const (
	clsUnreserved = 1 << iota // ALPHA DIGIT - . _ ~ : decoded when escaped
	clsRaw                    // may stay raw in a path: unreserved, sub-delims, ':' '@'
	clsEncode                 // printable ASCII that is not a pchar: percent-encoded
)

var class = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = clsUnreserved | clsRaw
		t[c-'a'+'A'] = clsUnreserved | clsRaw
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = clsUnreserved | clsRaw
	}
	for _, c := range "-._~" {
		t[c] = clsUnreserved | clsRaw
	}
	for _, c := range "!$&'()*+,;=:@" {
		t[c] = clsRaw
	}
	// Not pchars, but harmless once encoded: browsers send some raw.
	for _, c := range " \"<>[]^`{|}" {
		t[c] = clsEncode
	}
	return t
}()

const upperHex = "0123456789ABCDEF"

// pathWriter builds the canonical path without allocating while the output
// is still a prefix of the input.
type pathWriter struct {
	src string
	n   int    // while buf == nil, the output so far is src[:n]
	buf []byte // the output once it differs from the input
}

// keep outputs src[i:j] unchanged.
func (w *pathWriter) keep(i, j int) {
	if w.buf == nil {
		if i == w.n {
			w.n = j
			return
		}
		w.diverge()
	}
	w.buf = append(w.buf, w.src[i:j]...)
}

// emit outputs a byte that is not the input's byte at this place.
func (w *pathWriter) emit(c byte) {
	if w.buf == nil {
		w.diverge()
	}
	w.buf = append(w.buf, c)
}

func (w *pathWriter) emitEscape(c byte) {
	w.emit('%')
	w.emit(upperHex[c>>4])
	w.emit(upperHex[c&15])
}

func (w *pathWriter) diverge() {
	w.buf = make([]byte, w.n, len(w.src)+16)
	copy(w.buf, w.src[:w.n])
}

func (w *pathWriter) String() string {
	if w.buf == nil {
		return w.src[:w.n]
	}
	return string(w.buf)
}

// unhex returns the value of a hex digit and whether it is one, and whether
// it is in canonical (upper-case) form.
func unhex(c byte) (v byte, ok, upper bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true, false
	}
	return 0, false, false
}

// unit reads one character of p at i: a raw byte, or a %XX escape. It
// returns the decoded byte, the number of input bytes, whether it was
// escaped and whether the escape already had upper-case hex.
func unit(p string, i int) (v byte, n int, esc, upper bool, why string) {
	if p[i] != '%' {
		return p[i], 1, false, false, ""
	}
	if i+2 >= len(p) {
		return 0, 0, false, false, fmt.Sprintf("malformed percent-encoding %q at the end of the path: '%%' must be followed by two hex digits", p[i:])
	}
	hi, ok1, up1 := unhex(p[i+1])
	lo, ok2, up2 := unhex(p[i+2])
	if !ok1 || !ok2 {
		return 0, 0, false, false, fmt.Sprintf("malformed percent-encoding %q: '%%' must be followed by two hex digits", p[i:i+3])
	}
	return hi<<4 | lo, 3, true, up1 && up2, ""
}

// utf8Len is the length of the UTF-8 sequence a lead byte starts, or 0 when
// c cannot start one (RFC 3629 §4).
func utf8Len(c byte) int {
	switch {
	case c >= 0xC2 && c <= 0xDF:
		return 2
	case c >= 0xE0 && c <= 0xEF:
		return 3
	case c >= 0xF0 && c <= 0xF4:
		return 4
	}
	return 0
}

// confusable reports runes that Unicode compatibility normalisation (NFKC),
// used by some frameworks and by "best fit" code page mapping on Windows,
// turns into '.', '/' or '\', which would make new dot segments or
// separators behind the policy's back.
func confusable(r rune) bool {
	switch r {
	case '\uFF0E', // FULLWIDTH FULL STOP
		'\uFF0F', // FULLWIDTH SOLIDUS
		'\uFF3C', // FULLWIDTH REVERSE SOLIDUS
		'\uFE52', // SMALL FULL STOP
		'\uFE68', // SMALL REVERSE SOLIDUS
		'\u2024', // ONE DOT LEADER
		'\u2025', // TWO DOT LEADER
		'\u2026', // HORIZONTAL ELLIPSIS
		'\u2215', // DIVISION SLASH
		'\u2044': // FRACTION SLASH
		return true
	}
	return false
}

// canonicalPath canonicalises an escaped path that starts with '/'. It
// returns the canonical path, or "" and the reason it is refused. It does
// not allocate when p is already canonical (or only needs '/' runs merged
// at its end).
//
// Canonical means: runs of '/' merged; escapes of unreserved characters
// decoded (RFC 3986 §6.2.2.2); other escapes with upper-case hex (§6.2.2.1);
// non-ASCII UTF-8 and non-pchar ASCII percent-encoded, so the path is
// ASCII. Refused: anything a server might decode or split differently.
func canonicalPath(p string) (string, string) {
	w := pathWriter{src: p}
	i := 0
	for i < len(p) {
		// p[i] == '/': keep one, drop the rest of the run.
		w.keep(i, i+1)
		i++
		for i < len(p) && p[i] == '/' {
			i++
		}
		// One segment: name[;params] up to the next '/'.
		inParams := false
		dots, others := 0, false // decoded name: count of '.', any non-'.'/' ' char
		var last byte            // last decoded byte of the name
		for i < len(p) && p[i] != '/' {
			c := p[i]
			if c == ';' && !inParams {
				if why := dotSegment(dots, others, last); why != "" {
					return "", why
				}
				inParams = true
				w.keep(i, i+1)
				i++
				continue
			}
			v, n, esc, upper, why := unit(p, i)
			if why != "" {
				return "", why
			}
			switch {
			case v >= 0x80:
				j, why := utf8Seq(&w, p, i, v, n, esc && upper)
				if why != "" {
					return "", why
				}
				i = j
				others, last = true, 0x80
				continue
			case v < 0x20 || v == 0x7f:
				if esc {
					return "", fmt.Sprintf("encoded control character %q is refused", p[i:i+n])
				}
				return "", fmt.Sprintf("control character %q is refused", c)
			case v == '\\':
				if esc {
					return "", fmt.Sprintf("encoded backslash %q is refused: some servers read it as '/'", p[i:i+n])
				}
				return "", "a backslash is refused: some servers read it as '/'"
			case v == '#':
				if esc {
					return "", fmt.Sprintf("encoded '#' %q is refused: some servers cut the path there", p[i:i+n])
				}
				return "", "a literal '#' is refused: a fragment is never sent by clients and some servers cut the path there"
			}
			if esc {
				switch v {
				case '/':
					return "", fmt.Sprintf("encoded slash %q is refused: some servers decode it into a path separator", p[i:i+n])
				case '%':
					return "", fmt.Sprintf("%q (an encoded '%%', double encoding) is refused: some servers decode twice", p[i:i+n])
				case ';':
					return "", fmt.Sprintf("encoded ';' %q is refused: some servers decode it before stripping path parameters", p[i:i+n])
				case '?':
					return "", fmt.Sprintf("encoded '?' %q is refused: some servers decode it into a query separator", p[i:i+n])
				}
			}
			if !inParams {
				if v == '.' {
					dots++
				} else if v != ' ' {
					others = true
				}
				last = v
			}
			switch {
			case esc && class[v]&clsUnreserved != 0:
				w.emit(v) // RFC 3986 §6.2.2.2: decode unreserved.
			case esc && upper:
				w.keep(i, i+n)
			case esc:
				w.emitEscape(v) // RFC 3986 §6.2.2.1: upper-case hex.
			case class[v]&clsRaw != 0:
				w.keep(i, i+1)
			case class[v]&clsEncode != 0:
				w.emitEscape(v)
			default:
				// Unreachable: every ASCII byte is classified above.
				return "", fmt.Sprintf("character %q is refused", c)
			}
			i += n
		}
		if !inParams {
			if why := dotSegment(dots, others, last); why != "" {
				return "", why
			}
		}
	}
	return w.String(), ""
}

// dotSegment refuses a segment name (before any ";params") that is made of
// dots, after decoding: "." and ".." (RFC 3986 §5.2.4) in any encoding, and
// names such as "..." or ". ." that Windows servers trim to one of them.
// Tomcat reads "..;x" as "..", hence the check before the parameters.
// A name ending in '.' or ' ' is refused too: Windows servers trim them, so
// "/admin." or "/admin%20" would reach "/admin" behind the policy's back.
func dotSegment(dots int, others bool, last byte) string {
	switch {
	case dots > 0 && !others:
		return "a '.' or '..' path segment (in any encoding, also with ;params) is refused: the upstream could resolve it and reach another path"
	case last == '.' || last == ' ':
		return "a path segment ending in '.' or a space is refused: Windows servers trim them and would serve another path"
	}
	return ""
}

// utf8Seq reads the UTF-8 sequence whose lead byte v (n input bytes) is at
// p[i], in raw or percent-encoded bytes, validates it and writes it
// percent-encoded. canon says whether the lead was already "%XX" upper-case.
func utf8Seq(w *pathWriter, p string, i int, v byte, n int, canon bool) (int, string) {
	bad := func() string {
		return fmt.Sprintf("invalid UTF-8 near %q is refused", clip(p[i:]))
	}
	size := utf8Len(v)
	if size == 0 {
		return 0, bad()
	}
	var seq [4]byte
	seq[0] = v
	j := i + n
	for k := 1; k < size; k++ {
		if j >= len(p) {
			return 0, bad()
		}
		cv, cn, cesc, cupper, why := unit(p, j)
		if why != "" {
			return 0, why
		}
		if cv < 0x80 || cv > 0xBF {
			return 0, bad()
		}
		seq[k] = cv
		canon = canon && cesc && cupper
		j += cn
	}
	r, rs := utf8.DecodeRune(seq[:size])
	if r == utf8.RuneError || rs != size {
		return 0, bad() // overlong forms such as %C0%AE, surrogates, > U+10FFFF
	}
	if confusable(r) {
		return 0, fmt.Sprintf("character %U is refused: some servers normalise it to '.', '/' or '\\'", r)
	}
	if canon {
		w.keep(i, j)
	} else {
		for _, b := range seq[:size] {
			w.emitEscape(b)
		}
	}
	return j, ""
}

// stripParams returns a canonical path without the ";params" of its
// segments, with the '/' runs this leaves merged: what rules match
// (SPEC §4). Paths without ';' are returned as they are.
func stripParams(p string) string {
	if strings.IndexByte(p, ';') < 0 {
		return p
	}
	b := make([]byte, 0, len(p))
	skip := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			skip = false
			if len(b) > 0 && b[len(b)-1] == '/' {
				continue
			}
		case c == ';':
			skip = true
		}
		if !skip {
			b = append(b, c)
		}
	}
	return string(b)
}
