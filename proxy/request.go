package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/stepgate/stepgate/policy"
)

// overrideHeaders are the method-override headers frameworks honour
// (SPEC §4). They are compared with headerIs, so X_HTTP_Method matches too.
var overrideHeaders = [...]string{"x-http-method-override", "x-http-method", "x-method-override"}

// BuildRequest builds what the policy matches for r, whose target was
// canonicalised to t: method, method overrides (X-HTTP-Method-Override,
// X-HTTP-Method, X-Method-Override, _method), host, match path. explain
// uses it too, so the CLI and the proxy decide alike. A Host that is not
// one authority (policy.ParseHost) is refused. It also reports doubt: when a query parameter that may be read as `_method` does not
// decode, frameworks could read a method the policy cannot see, so the
// error (wrapping policy.ErrRejected) means the request must be refused
// (SPEC §4, deny on doubt). The returned Request is still filled with what
// did decode.
func BuildRequest(r *http.Request, t policy.Target) (policy.Request, error) {
	if _, err := policy.ParseHost(r.Host); err != nil {
		return policy.Request{Method: r.Method, Host: r.Host, Path: t.MatchPath}, err
	}
	return buildRequest(r, t, nil)
}

// buildRequest is BuildRequest that, given the policy p that will decide,
// also reads `_method` from a POST form body when p is method-sensitive
// (formOverrides, override.go); it may then replace r.Body with one that
// replays what it read. Its error also means the body could not be read.
// The Gate uses it; nil p reads no body. It does not check the Host: the
// Gate's setTarget did, before any decision.
func buildRequest(r *http.Request, t policy.Target, p *policy.Policy) (policy.Request, error) {
	pr := policy.Request{Method: r.Method, Host: r.Host, Path: t.MatchPath}
	for name, vs := range r.Header {
		for _, o := range overrideHeaders {
			if headerIs(name, o) {
				pr.Overrides = appendOverrides(pr.Overrides, vs)
				break
			}
		}
	}
	var err error
	pr.Overrides, err = queryOverrides(pr.Overrides, t.RawQuery)
	if err == nil && p != nil {
		err = formOverrides(r, p, &pr)
	}
	return pr, err
}

// appendOverrides adds each value and, for a value a proxy may have merged
// from several lines ("DELETE, PUT"), each comma-separated element, so the
// strictest reading decides.
func appendOverrides(dst, vs []string) []string {
	for _, v := range vs {
		dst = append(dst, v)
		if strings.IndexByte(v, ',') < 0 {
			continue
		}
		for part := range strings.SplitSeq(v, ",") {
			if p := strings.TrimSpace(part); p != "" {
				dst = append(dst, p)
			}
		}
	}
	return dst
}

// queryOverrides adds the values of every query parameter a framework may
// read as a method override, by the rules of override.go (isMethodKey).
// The raw query is split on both '&' and ';' (older parsers accept
// either). This errs on the side of seeing more overrides, which can only
// make the decision stricter.
func queryOverrides(dst []string, rawQuery string) ([]string, error) {
	if !containsFold(rawQuery, "method") && !strings.Contains(rawQuery, "%") {
		return dst, nil // fast path: no key can spell method
	}
	for rawQuery != "" {
		var pair string
		pair, rawQuery = cutAny(rawQuery, "&;")
		k, v, _ := strings.Cut(pair, "=")
		key, kerr := unescapeQuery(k)
		if !isMethodKey(key) {
			if kerr != nil && containsFold(key, "method") {
				return dst, fmt.Errorf("%w: a query key that may be _method does not decode", policy.ErrRejected)
			}
			continue
		}
		if kerr != nil {
			return dst, fmt.Errorf("%w: a query key that may be _method does not decode", policy.ErrRejected)
		}
		val, err := unescapeQuery(v)
		if err != nil {
			return dst, fmt.Errorf("%w: undecodable _method value", policy.ErrRejected)
		}
		dst = appendOverrides(dst, []string{val})
	}
	return dst, nil
}

// cutAny splits s at the first byte in seps.
func cutAny(s, seps string) (before, after string) {
	if i := strings.IndexAny(s, seps); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

var errMalformedEscape = errors.New("malformed percent-encoding")

// unescapeQuery decodes %XX and '+'. On a malformed escape it returns the
// lenient decoding (bad escapes kept literally, as PHP does) and an error.
func unescapeQuery(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	var bad error
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) {
			if v := hexByte(s[i+1 : i+3]); v >= 0 {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		switch c {
		case '+':
			b.WriteByte(' ')
		case '%':
			bad = errMalformedEscape
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), bad
}

// hexByte is the value of two hex digits, or -1.
func hexByte(s string) int {
	v, err := strconv.ParseUint(s, 16, 8)
	if err != nil {
		return -1
	}
	return int(v)
}

// lower folds an ASCII letter to lower case and '_' to '-': CGI, PHP and
// WSGI servers merge the two in header names (SPEC §7). It is not policy's
// case fold: that one never reads '_' as '-'.
func lower(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_':
		return '-'
	}
	return c
}

// headerIs reports whether header name is want (lower case, '-') with
// ASCII case folded and '_' read as '-'.
func headerIs(name, want string) bool {
	return len(name) == len(want) && headerHasPrefix(name, want)
}

// headerHasPrefix is headerIs for a prefix.
func headerHasPrefix(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if lower(name[i]) != prefix[i] {
			return false
		}
	}
	return true
}

// containsFold reports whether s contains sub (lower case) ignoring ASCII
// case, without allocating: it runs on every request with a query.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if asciiFoldPrefix(s[i:], sub) {
			return true
		}
	}
	return false
}

// asciiFoldPrefix reports whether s starts with sub (lower case), ASCII
// letters compared without case; unlike lower, '_' stays '_'.
func asciiFoldPrefix(s, sub string) bool {
	for j := 0; j < len(sub); j++ {
		c := s[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != sub[j] {
			return false
		}
	}
	return true
}

// peerAddr parses r.RemoteAddr ("ip:port", or a bare IP from some test
// servers). An unparsable address is the zero Addr, which no prefix
// contains, so it is never trusted.
func peerAddr(remoteAddr string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(remoteAddr); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// containsAddr reports whether a is in one of prefixes.
func containsAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// maxRequestIDLen bounds a request id accepted from a trusted proxy.
const maxRequestIDLen = 128

// validRequestID accepts ids a trusted proxy may send: short and made of
// characters that cannot forge log lines or header syntax.
func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// newRequestID returns 16 random bytes in hex. crypto/rand never fails on
// supported platforms (it panics rather than return weak bytes).
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	var h [32]byte
	hex.Encode(h[:], b[:])
	return string(h[:])
}
