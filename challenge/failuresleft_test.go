package challenge

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestFewWrongCodesLeftWarning: after a wrong code, the verify page warns
// when at most 3 wrong codes are left in the rolling hour
// (max_failures_per_hour), with the time the lock they would start ends
// (the oldest counted failure leaving the hour, here later than the
// lockout), and the API's wrong-code answer says failures_left.
func TestFewWrongCodesLeftWarning(t *testing.T) {
	clock := &fakeClock{t: time.Now().UTC().Truncate(time.Hour).Add(19 * time.Minute)}
	mail := make(hMailbox, 4)
	cfg := hConfig()
	cfg.Now, cfg.Sender = clock.Now, mail
	cfg.OTP.MaxAttempts, cfg.OTP.MaxFailuresPerHour, cfg.OTP.Lockout = 10, 6, 15*time.Minute
	s := newHandlerOnly(t, cfg)
	h := s.Handler()
	now := clock.Now()
	// One wrong code 30 minutes ago (another session): it leaves the hour
	// at now+30m, after the lockout's end at now+15m.
	if _, err := s.cfg.Store.AddFailure(t.Context(), hAlice.Subject, now.Add(-30*time.Minute), 6, 15*time.Minute); err != nil {
		t.Fatal(err)
	}
	lockEnd := now.Add(30 * time.Minute).Format("15:04 MST")

	if w := hServe(h, apiReq(http.MethodPost, hPrefix+"/api/email-otp", hAlice, `{"index":0}`)); w.Code != http.StatusOK {
		t.Fatalf("send: %d %s", w.Code, w.Body)
	}
	code := regexp.MustCompile(`\b\d{6}\b`).FindString((<-mail).Text)
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	postWrong := func() string {
		t.Helper()
		w := hServe(h, browserReq(http.MethodGet, hPrefix+"/verify?rd=%2Fadmin", hAlice, nil))
		form := url.Values{"code": {wrong}, "rd": {"/admin"}, "csrf": {csrfFrom(t, w.Body.String())}}
		w = hServe(h, browserReq(http.MethodPost, hPrefix+"/verify", hAlice, form))
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("wrong code: status %d; want 401:\n%s", w.Code, w.Body)
		}
		return w.Body.String()
	}
	// 2 counted, 4 left: no warning yet.
	if body := postWrong(); strings.Contains(body, "more wrong code") {
		t.Errorf("4 left: want no warning:\n%s", body)
	}
	// 3 counted: the API says 3.
	w := hServe(h, apiReq(http.MethodPut, hPrefix+"/api/email-otp", hAlice, `{"otp":"`+wrong+`"}`))
	var oe struct {
		Error        string `json:"error"`
		FailuresLeft *int   `json:"failures_left"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &oe); err != nil || oe.Error != "invalid_otp" || oe.FailuresLeft == nil || *oe.FailuresLeft != 3 {
		t.Fatalf("API wrong code: got %d %s; want invalid_otp with failures_left 3", w.Code, w.Body)
	}
	for _, want := range []string{
		"2 more wrong codes and sign-in confirmation is locked until " + lockEnd + ".",
		"1 more wrong code and sign-in confirmation is locked until " + lockEnd + ".",
	} {
		if body := postWrong(); !strings.Contains(body, want) {
			t.Errorf("want %q in:\n%s", want, body)
		}
	}
	// The sixth wrong code locks, until the time the warning said.
	w = hServe(h, apiReq(http.MethodPut, hPrefix+"/api/email-otp", hAlice, `{"otp":"`+wrong+`"}`))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1800" {
		t.Errorf("sixth wrong code: got %d Retry-After %q; want 429 after 1800 s", w.Code, w.Header().Get("Retry-After"))
	}
}
