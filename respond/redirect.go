package respond

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxRedirectLen bounds a return URL; longer ones are not worth the risk.
const maxRedirectLen = 2048

// CleanRedirect returns rd when it is a path on this same origin and "/"
// otherwise (SPEC §6: `rd` is honoured only as `/…`, not `//…`, not `/\…`,
// no scheme). Browsers read backslashes as slashes and drop tabs and
// newlines inside URLs (WHATWG URL "special" schemes), so "/\evil" and
// "/\t/evil" would leave the origin; they are refused raw and after one
// percent-decoding, which catches "/%2F/evil" and "/%5Cevil" too. This
// follows tailscale tsweb.CleanRedirectURL, but only accepts paths.
func CleanRedirect(rd string) string {
	if !safeRedirectPath(rd, false) {
		return "/"
	}
	dec, err := url.PathUnescape(rd)
	if err != nil || !safeRedirectPath(dec, true) {
		return "/"
	}
	u, err := url.Parse(rd)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	return rd
}

// safeRedirectPath reports whether p starts with exactly one "/" and holds
// no backslash, no control character and only valid UTF-8. A raw URL may
// not hold spaces either; a decoded one may ("%20" is an ordinary path or
// query character), since browsers only strip tabs and newlines.
func safeRedirectPath(p string, decoded bool) bool {
	if p == "" || len(p) > maxRedirectLen || p[0] != '/' {
		return false
	}
	if len(p) > 1 && (p[1] == '/' || p[1] == '\\') {
		return false
	}
	if !utf8.ValidString(p) || strings.ContainsRune(p, '\\') {
		return false
	}
	for _, r := range p {
		if unicode.IsControl(r) || (!decoded && unicode.IsSpace(r)) {
			return false
		}
	}
	return true
}
