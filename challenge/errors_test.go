package challenge

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/secondfactor"
)

// TestErrorFor checks the one mapping from ceremony errors to answers:
// status, API code, Retry-After, and that a cause is kept for the log
// only when there is a failure to log.
func TestErrorFor(t *testing.T) {
	cause := errors.New("dial tcp 10.0.0.7:25: connection refused")
	tests := []struct {
		name    string
		op      op
		err     error
		status  int
		code    string
		logged  bool
		retryAt string
	}{
		{"throttled", opSend, &LimitError{RetryAfter: 1500 * time.Millisecond, Err: ErrThrottled}, 429, "too_many_requests", false, "2"},
		{"locked on verify", opVerify, &LimitError{RetryAfter: 15 * time.Minute, Err: ErrLocked}, 429, "too_many_requests", false, "900"},
		{"bad address", opSend, ErrBadEmail, 400, "invalid_email", false, ""},
		{"mail down", opSend, fmt.Errorf("%w: %w", ErrMailUnavailable, cause), 503, "temporarily_unavailable", true, ""},
		{"store down on send", opSend, fmt.Errorf("%w: %w", ErrStoreUnavailable, cause), 503, "temporarily_unavailable", true, ""},
		{"send, unknown", opSend, cause, 500, "server_error", true, ""},
		{"wrong code", opVerify, &CodeError{AttemptsLeft: 2}, 401, "invalid_otp", false, ""},
		{"dead code", opVerify, &CodeError{AttemptsLeft: 0}, 401, "expired_otp", false, ""},
		{"no code", opVerify, ErrNoCode, 401, "expired_otp", false, ""},
		{"store down on verify", opVerify, fmt.Errorf("%w: %w", ErrStoreUnavailable, cause), 503, "temporarily_unavailable", true, ""},
		{"verify, unknown", opVerify, cause, 500, "server_error", true, ""},
		{"revocations down", opValidate, fmt.Errorf("%w: %w", secondfactor.ErrUnavailable, cause), 503, "temporarily_unavailable", true, ""},
		{"invalid token", opValidate, secondfactor.ErrTokenInvalid, 401, "invalid_token", false, ""},
		{"revoke failed", opRevoke, cause, 503, "temporarily_unavailable", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := errorFor(tt.op, tt.err)
			if e.Status != tt.status || e.Code != tt.code {
				t.Errorf("got %d %q; want %d %q", e.Status, e.Code, tt.status, tt.code)
			}
			if got := e.Header.Get("Retry-After"); got != tt.retryAt {
				t.Errorf("Retry-After: got %q; want %q", got, tt.retryAt)
			}
			if got := e.Err != nil; got != tt.logged {
				t.Errorf("cause kept: got %v; want %v", got, tt.logged)
			}
			for _, shown := range []string{e.Title, e.Msg, e.APIDescription()} {
				if strings.Contains(shown, "10.0.0.7") || strings.Contains(shown, "refused") {
					t.Errorf("shown text %q carries the cause", shown)
				}
			}
		})
	}
}

// TestHTTPErrorLogsCauseOnly checks that an answer built by errorFor logs
// its cause and shows only the safe message, to pages and API alike.
func TestHTTPErrorLogsCauseOnly(t *testing.T) {
	cause := errors.New("dial tcp 10.0.0.7:25: connection refused")
	for _, accept := range []string{"text/html", "application/json"} {
		var logs bytes.Buffer
		cfg := hConfig()
		cfg.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		s := newHandlerOnly(t, cfg)
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", hPrefix+"/send", nil)
		r.Header.Set("Accept", accept)
		s.h.pages.Error(w, r, errorFor(opSend, fmt.Errorf("%w: %w", ErrMailUnavailable, cause)))
		if w.Code != 503 {
			t.Errorf("%s: got %d; want 503", accept, w.Code)
		}
		if strings.Contains(w.Body.String(), "10.0.0.7") {
			t.Errorf("%s: body shows the cause: %s", accept, w.Body)
		}
		if !strings.Contains(logs.String(), `"msg":"send code failed"`) || !strings.Contains(logs.String(), "10.0.0.7") {
			t.Errorf("%s: log %q; want send code failed with the cause", accept, logs.String())
		}
	}
}
