package challenge

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestAuditAttrsOnce checks that an audit record carries each extra
// attribute once: audit appended them before and after the error, so
// every factor_added, factor_removed, code_locked and locked code_sent
// record held "factor", "type", "locked_until" and "retry_after" twice,
// which JSON consumers read as duplicate keys.
func TestAuditAttrsOnce(t *testing.T) {
	e := newEnv(t)
	e.s.audit(context.Background(), slog.LevelInfo, "factor removed", "factor_removed", "ok", alice, Meta{Client: "192.0.2.1"},
		errors.New("boom"), slog.String("factor", "f1"), slog.String("type", "totp"))
	line := strings.TrimSpace(e.logs.String())
	for _, key := range []string{`"factor":`, `"type":`, `"error":`, `"event":`, `"user":`} {
		if n := strings.Count(line, key); n != 1 {
			t.Errorf("%s appears %d times; want 1 in %s", key, n, line)
		}
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("record is not one JSON object: %v: %s", err, line)
	}
	if rec["factor"] != "f1" || rec["type"] != "totp" || rec["error"] != "boom" || rec["outcome"] != "ok" {
		t.Errorf("got %v; want factor f1, type totp, error boom, outcome ok", rec)
	}
}
