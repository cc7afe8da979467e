package challenge

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"io"
	"strings"
	"unicode"
)

// Keys derived from second_factor.secret, one per use, so that a code MAC,
// a CSRF token and a token signature can never stand in for one another.
const (
	otpKeyLabel  = "stepgate otp v1"
	csrfKeyLabel = "stepgate csrf v1"
)

// deriveKey returns HMAC-SHA256(secret, label).
func deriveKey(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// generateCode returns n decimal digits from r, uniformly distributed.
// Bytes of 250 and above are rejected so that every digit has probability
// exactly 1/10 (SPEC §9): 250 is the largest multiple of 10 below 256, and a
// plain b%10 over all 256 values would favour 0–5.
func generateCode(r io.Reader, n int) (string, error) {
	out := make([]byte, 0, n)
	var buf [16]byte
	for len(out) < n {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return "", err
		}
		for _, b := range buf {
			if b >= 250 {
				continue
			}
			out = append(out, '0'+b%10)
			if len(out) == n {
				break
			}
		}
	}
	return string(out), nil
}

// newCode draws a code from crypto/rand.
func newCode(n int) (string, error) { return generateCode(rand.Reader, n) }

// canonicalCode strips the white space and dashes a user may type or paste
// ("123 456", "123-456") and reports whether what is left is exactly n
// ASCII digits. It is the one normaliser of codes, for the pages and the
// API alike. A code that
// is not well formed is still checked (and counted) as a wrong code, so
// malformed input gives no shortcut around the attempt limits.
func canonicalCode(in string, n int) (string, bool) {
	if len(in) > 64 {
		// Far longer than any code; keep the MAC input bounded.
		in = in[:64]
	}
	code := strings.Map(func(r rune) rune {
		switch {
		case unicode.IsSpace(r) || unicode.Is(unicode.Pd, r) || r == '\u2212' || r == '\u00ad' || r == '\u200b':
			// Spaces of every kind (an indented line, a no-break space),
			// dashes and minus signs, soft hyphens and zero-width spaces
			// that mail clients insert.
			return -1
		case '\uff10' <= r && r <= '\uff19':
			// Full-width digits from East Asian input methods.
			return '0' + (r - '\uff10')
		}
		return r
	}, in)
	if len(code) != n {
		return code, false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return code, false
		}
	}
	return code, true
}

// writeField writes one length-prefixed field, so that no two different
// tuples (user, session, address, code) produce the same MAC input.
func writeField(h hash.Hash, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}

// codeMAC binds a code to the user, the session and the address it was
// sent to (SPEC §9): only this MAC is stored, never the code.
func codeMAC(key []byte, user, session, address, code string) []byte {
	m := hmac.New(sha256.New, key)
	writeField(m, "code")
	writeField(m, user)
	writeField(m, session)
	writeField(m, address)
	writeField(m, code)
	return m.Sum(nil)
}

// codeKey is the Store key of the pending code of (user, session). It is a
// hash so that its length is bounded whatever the subject and session are.
func codeKey(user, session string) string {
	h := sha256.New()
	writeField(h, "pending")
	writeField(h, user)
	writeField(h, session)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// errBadCode is a Store programming error: a MAC longer than SHA-256's or a
// non-positive TTL.
var errBadCode = errors.New("invalid pending code")
