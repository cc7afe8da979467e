package challenge

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"

	"github.com/stepgate/stepgate/identity"
)

// csrfToken is the form token for id: HMAC(key, subject, session) in
// base64url. It is bound to the login session (SPEC §6), so one user's
// token never works for another user nor for another session of the same
// user, and it needs no server state. The subject is length-prefixed so
// that ("ab","c") and ("a","bc") never share a token.
func csrfToken(key []byte, id identity.Identity) string {
	m := hmac.New(sha256.New, key)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(id.Subject)))
	m.Write(n[:])
	m.Write([]byte(id.Subject))
	m.Write([]byte(id.Session))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfValid compares got with id's token in constant time.
func csrfValid(key []byte, id identity.Identity, got string) bool {
	if got == "" {
		return false
	}
	want := csrfToken(key, id)
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
