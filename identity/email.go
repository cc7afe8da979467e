package identity

import (
	"net/mail"
	"slices"
	"strings"
)

const (
	// maxEmailLen is the longest address kept (RFC 5321 §4.5.3.1.3 path
	// limit of 256 octets, minus the angle brackets).
	maxEmailLen = 254
	// maxEmails bounds how many addresses of one identity are kept.
	maxEmails = 16
)

// parseEmails reads an email claim: a string or a list of strings. Entries
// that are not a single bare address are dropped rather than failing the
// whole identity: the user is still who the token says, only without that
// address, so a bad entry can never become a mail recipient or a header
// (SPEC §9: addresses are validated before any mail is built). Duplicates
// are dropped; order is kept, the first being the primary address.
func parseEmails(v any) []string {
	var out []string
	add := func(s string) {
		if len(out) < maxEmails && validEmail(s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	switch v := v.(type) {
	case string:
		add(v)
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				add(s)
			}
		}
	case []string:
		for _, s := range v {
			add(s)
		}
	}
	return out
}

// validEmail reports whether s is exactly one bare address: no display
// name, no angle brackets, no comments, no CR/LF or other control
// characters (which could inject mail headers), at most maxEmailLen bytes.
func validEmail(s string) bool {
	if s == "" || len(s) > maxEmailLen || strings.ContainsAny(s, "\r\n") || !validText(s) {
		return false
	}
	addr, err := mail.ParseAddress(s)
	if err != nil {
		return false
	}
	// ParseAddress accepts "Name <a@b.c>" and "(comment) a@b.c"; only an
	// input that is its own address is bare.
	return addr.Name == "" && addr.Address == s
}
