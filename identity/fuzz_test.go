package identity

import (
	"errors"
	"testing"
)

// FuzzParseToken feeds arbitrary strings as the cookie and as the Bearer
// token: nothing may panic, and without the secret nothing may
// authenticate. The error must be one of the two documented outcomes.
func FuzzParseToken(f *testing.F) {
	c := newClock()
	a := newAuth(f, hsConfig(c))
	// Seeds beyond testdata/fuzz/FuzzParseToken: tokens signed with a
	// wrong key, so mutations start from well-formed JWTs.
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.")
	f.Fuzz(func(t *testing.T, tok string) {
		req := request(nil, "")
		req.Header.Set("Cookie", "access_token="+tok)
		req.Header.Set("Authorization", "Bearer "+tok)
		id, err := a.Authenticate(req)
		if err == nil {
			t.Fatalf("Authenticate(%q) = %+v; want an error", tok, id)
		}
		if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNoCredential) {
			t.Fatalf("Authenticate(%q) error %v; want ErrInvalid or ErrNoCredential", tok, err)
		}
		if id.Subject != "" || id.Session != "" || id.Emails != nil {
			t.Fatalf("Authenticate(%q) returned identity %+v with an error", tok, id)
		}
	})
}
