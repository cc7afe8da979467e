package challenge

import (
	"net/http"
	"strings"
	"testing"
)

// TestPasskeyBeginStrictJSON checks that the passkey begin calls decode
// their bodies like the rest of the JSON API (decodeJSON): unknown fields,
// trailing data and a second value are refused with 400, a body over 4 KiB
// with 413, another Content-Type with 415; the documented bodies pass.
// Begin-registration used to read {"name"} with plain json.Unmarshal.
func TestPasskeyBeginStrictJSON(t *testing.T) {
	e := newPasskeyEnv(t)
	tok := e.emailToken(t, hAlice)
	for _, c := range []struct {
		path, ok string
	}{
		{"/api/factors/passkey/begin", `{"name":"Phone"}`},
		{"/api/passkey/begin", `{}`},
	} {
		for _, b := range []struct {
			body string
			want int
		}{
			{`{"name":"Phone","admin":true}`, http.StatusBadRequest},
			{`{"nmae":"Phone"}`, http.StatusBadRequest},
			{c.ok + ` {}`, http.StatusBadRequest},
			{c.ok + `x`, http.StatusBadRequest},
			{`[]`, http.StatusBadRequest},
			{`{"name":"` + strings.Repeat("a", 5<<10) + `"}`, http.StatusRequestEntityTooLarge},
		} {
			if c.path == "/api/passkey/begin" && b.body == `{"nmae":"Phone"}` {
				b.body = `{"name":"Phone"}` // begin takes no field at all
			}
			w, m := e.call(t, c.path, hAlice, tok, []byte(b.body))
			if w.Code != b.want {
				t.Errorf("POST %s %.40q: %d %v; want %d", c.path, b.body, w.Code, m, b.want)
			}
		}
		r := apiReq(http.MethodPost, hPrefix+c.path, hAlice, c.ok)
		r.Header.Set("Content-Type", "text/plain")
		r.Header.Set("X-Second-Factor-Token", tok)
		if w := hServe(e.h, r); w.Code != http.StatusUnsupportedMediaType {
			t.Errorf("POST %s as text/plain: %d; want 415", c.path, w.Code)
		}
		// The documented body is read: begin-registration answers the
		// options; the step-up begin says Alice has no passkey yet.
		w, m := e.call(t, c.path, hAlice, tok, []byte(c.ok))
		if c.path == "/api/passkey/begin" {
			if w.Code != http.StatusNotFound || m["error"] != "no_passkey" {
				t.Errorf("POST %s %s: %d %v; want 404 no_passkey", c.path, c.ok, w.Code, m)
			}
		} else if w.Code != http.StatusOK {
			t.Errorf("POST %s %s: %d %v; want 200", c.path, c.ok, w.Code, m)
		}
	}
}
