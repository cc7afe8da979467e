package respond

import (
	"strings"
	"unicode/utf8"
)

// Bounds of client-supplied values in log and audit records. A path is cut
// at 512 bytes in the access log (main's accessPath); these follow it.
const (
	// MaxLoggedUserAgent bounds a logged User-Agent.
	MaxLoggedUserAgent = 512
	// MaxLoggedRequestID bounds a logged request id; the proxy keeps a
	// trusted proxy's X-Request-Id only up to 128 bytes anyway.
	MaxLoggedRequestID = 128
	// MaxLoggedPath bounds a logged path, as the access log cuts it.
	MaxLoggedPath = 512
	// MaxLoggedMethod bounds a logged method: net/http accepts any token.
	MaxLoggedMethod = 32
)

// LogText is s as a log or audit record may carry it when the client chose
// it (a User-Agent, a request id): control characters (C0, DEL, C1, U+2028
// and U+2029, which end a line in some log viewers) are stripped, invalid
// UTF-8 becomes U+FFFD, and the result is cut to at most max bytes on a
// rune boundary, with "…" appended when cut. A client could otherwise fill
// the log with a 64 KiB header on every request, or write what looks like
// a second record. A short printable ASCII value, the usual case, is
// returned as it is without allocating.
func LogText(s string, max int) string {
	clean := len(s) <= max
	for i := 0; clean && i < len(s); i++ {
		clean = s[i] >= 0x20 && s[i] < 0x7f
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), max) + len("…"))
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > max {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
