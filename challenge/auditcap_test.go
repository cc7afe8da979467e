package challenge

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/respond"
)

// TestAuditCapsClientValues checks that the audit record of a ceremony
// carries a client's 64 KiB User-Agent and X-Request-Id capped and without
// control characters (respond.LogText): they were logged whole, so every
// request could add 128 KiB to the audit log or forge what looks like a
// line of its own.
func TestAuditCapsClientValues(t *testing.T) {
	e := newPasskeyEnv(t)
	ua := strings.Repeat("Mozilla\n\x1b[2J", 64<<10/12)
	rid := strings.Repeat("r\x00\r\n", 64<<10/4)
	r := apiReq(http.MethodPost, hPrefix+"/api/email-otp", hAlice, `{"index":0}`)
	r.Header.Set("User-Agent", ua)
	r.Header.Set("X-Request-Id", rid)
	if w := hServe(e.h, r); w.Code != http.StatusOK {
		t.Fatalf("POST /api/email-otp: %d %s", w.Code, w.Body)
	}
	var rec map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["event"] == "code_sent" {
			rec = m
		}
	}
	if rec == nil {
		t.Fatalf("no code_sent record:\n%.2000s", e.logs.String())
	}
	for _, f := range []struct {
		key string
		max int
	}{{"user_agent", respond.MaxLoggedUserAgent}, {"request_id", respond.MaxLoggedRequestID}} {
		got, _ := rec[f.key].(string)
		if got == "" || len(got) > f.max+len("…") || strings.ContainsAny(got, "\x00\r\n\x1b") {
			t.Errorf("%s logged as %d bytes %.60q; want at most %d and no control characters", f.key, len(got), got, f.max+len("…"))
		}
	}
	if len(e.logs.String()) > 8<<10 {
		t.Errorf("the log grew by %d bytes for one send; want a few hundred", len(e.logs.String()))
	}
}
