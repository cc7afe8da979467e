package proxy

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
)

// TestAuditCapsUserAgent: a 64 KiB User-Agent (with tabs, the one control
// character a header value may hold) reaches the step_up_required audit
// record capped and without control characters; it was logged whole.
func TestAuditCapsUserAgent(t *testing.T) {
	logs := &logBuffer{}
	e, send := newStepUpEnv(t, "", nil, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	alice := identity.Identity{Subject: "alice", Emails: []string{"alice@example.com"}, Session: "s1"}
	at := "Authorization: Bearer " + e.accessToken(t, alice.Subject, alice.Session, alice.Emails...)
	ua := "User-Agent: " + strings.Repeat("Mozilla\tX", 64<<10/9)
	long := "/pay/" + strings.Repeat("a", 16<<10)
	if res := send(get(long, at, ua)); res.Status != 401 {
		t.Fatalf("GET /pay/aaa…: %d; want 401", res.Status)
	}
	var rec map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["event"] == "step_up_required" {
			rec = r
		}
	}
	if rec == nil {
		t.Fatalf("no step_up_required record:\n%.2000s", logs.String())
	}
	got, _ := rec["user_agent"].(string)
	if !strings.HasPrefix(got, "MozillaX") || len(got) > respond.MaxLoggedUserAgent+len("…") || strings.ContainsRune(got, '\t') {
		t.Errorf("user_agent logged as %d bytes %.60q; want at most %d, no tabs", len(got), got, respond.MaxLoggedUserAgent+len("…"))
	}
	if p, _ := rec["path"].(string); !strings.HasPrefix(p, "/pay/aaa") || len(p) > respond.MaxLoggedPath+len("…") {
		t.Errorf("path logged as %d bytes %.60q; want at most %d", len(p), p, respond.MaxLoggedPath+len("…"))
	}
}
