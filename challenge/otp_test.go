package challenge

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stepgate/stepgate/identity"
)

var ctx0 = context.Background()

func TestGenerateCodeUniform(t *testing.T) {
	const n, length = 20000, 6
	var counts [10]int
	for i := 0; i < n; i++ {
		c, err := newCode(length)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := canonicalCode(c, length); !ok {
			t.Fatalf("got %q; want %d digits", c, length)
		}
		for _, d := range c {
			counts[d-'0']++
		}
	}
	// Chi-squared with 9 degrees of freedom: 27.88 is the 0.1% critical
	// value, so an unbiased generator fails this once in a thousand runs.
	exp := float64(n*length) / 10
	var chi float64
	for _, c := range counts {
		chi += math.Pow(float64(c)-exp, 2) / exp
	}
	if chi > 27.88 {
		t.Errorf("digit counts %v: chi² %.1f; want < 27.88", counts, chi)
	}
}

// byteReader yields the given bytes, for the rejection-sampling test.
type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func TestGenerateCodeRejectsBiasedBytes(t *testing.T) {
	// 250..255 would map to 0..5 and bias the low digits; they must be
	// skipped, not reduced modulo 10.
	in := append(bytes.Repeat([]byte{255, 250, 251}, 4), 7, 13, 249, 0, 99, 42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)
	got, err := generateCode(&byteReader{b: in}, 6)
	if err != nil {
		t.Fatal(err)
	}
	if want := "739092"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestCanonicalCode(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"123456", "123456", true},
		{" 123 456\t", "123456", true},
		{"123-456", "123456", true}, // as pasted from some mail clients
		{"12-34-5", "12345", false},
		{"12345", "12345", false},
		{"1234567", "1234567", false},
		{"12345a", "12345a", false},
		{"１２３４５６", "123456", true}, // full-width digits, as East Asian input methods type them
		{"１２３ ４５６", "123456", true},
		{"    456 086\n", "456086", true}, // the mail's indented line, pasted whole
		{"456\u00a0086", "456086", true},  // a no-break space
		{"456\u2013086", "456086", true},  // an en dash
		{"456\u2212086", "456086", true},  // a minus sign
		{"٤٥٦٠٨٦", "٤٥٦٠٨٦", false},       // other scripts' digits are not read as a code
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := canonicalCode(tt.in, 6)
		if got != tt.want || ok != tt.ok {
			t.Errorf("canonicalCode(%q): got %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCodeMACFraming(t *testing.T) {
	k := deriveKey(testSecret, otpKeyLabel)
	a := codeMAC(k, "ab", "c", "x@example.com", "123456")
	b := codeMAC(k, "a", "bc", "x@example.com", "123456")
	if bytes.Equal(a, b) {
		t.Error("MAC of (ab, c) equals MAC of (a, bc): framing is ambiguous")
	}
	if bytes.Equal(k, testSecret) || len(k) != 32 {
		t.Error("the OTP key must be derived, not the secret itself")
	}
}

func TestSendVerify(t *testing.T) {
	e := newEnv(t)
	exp, err := e.s.Send(ctx0, alice, 1, Meta{RequestID: "r1", Client: "192.0.2.1", Rule: "admin"})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if exp != 5*time.Minute {
		t.Errorf("expiresIn: got %v; want 5m", exp)
	}
	m := e.sender.last(t)
	if m.To != "a.work@example.org" || m.Subject != "Your verification code" {
		t.Errorf("got To %q Subject %q; want a.work@example.org, Your verification code", m.To, m.Subject)
	}
	code := e.sender.lastCode(t, 6)
	for _, part := range []string{m.Text, m.HTML} {
		for _, want := range []string{"Your verification code for signing in to a protected area", code, "5 minutes", "did not ask for this, ignore"} {
			if !strings.Contains(part, want) {
				t.Errorf("mail part lacks %q:\n%s", want, part)
			}
		}
		if strings.Contains(part, "stepgate") {
			t.Errorf("mail part names stepgate rather than the site:\n%s", part)
		}
		if strings.Contains(part, "http") || strings.Contains(part, "href") {
			t.Errorf("mail contains a link:\n%s", part)
		}
	}
	g, err := e.s.Verify(ctx0, alice, code[:3]+" "+code[3:], Meta{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if g.Subject != "alice" || g.Session != alice.Session || !g.AuthTime.Equal(e.clock.Now()) {
		t.Errorf("got grant %+v; want alice now", g)
	}
	if _, err := e.s.cfg.Tokens.Validate(ctx0, g.Token, alice); err != nil {
		t.Errorf("Validate minted: %v", err)
	}
	// Single use.
	if _, err := e.s.Verify(ctx0, alice, code, Meta{}); !errors.Is(err, ErrNoCode) {
		t.Errorf("second Verify: got %v; want ErrNoCode", err)
	}
	logs := e.logs.String()
	if strings.Contains(logs, code) || strings.Contains(logs, g.Token) {
		t.Errorf("code or token in logs: %s", logs)
	}
	for _, want := range []string{`"event":"code_sent"`, `"event":"code_verified"`, `"request_id":"r1"`, `"client":"192.0.2.1"`, `"rule":"admin"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s: %s", want, logs)
		}
	}
}

func TestVerifyRefusals(t *testing.T) {
	e := newEnv(t)
	bob := identity.Identity{Subject: "bob", Emails: []string{"bob@example.com"}, Session: "sess-b"}
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
		t.Fatal(err)
	}
	code := e.sender.lastCode(t, 6)
	// Another user's and another session's code are refused.
	if _, err := e.s.Verify(ctx0, bob, code, Meta{}); !errors.Is(err, ErrNoCode) {
		t.Errorf("bob with alice's code: got %v; want ErrNoCode", err)
	}
	otherSess := alice
	otherSess.Session = "sess-a2"
	if _, err := e.s.Verify(ctx0, otherSess, code, Meta{}); !errors.Is(err, ErrNoCode) {
		t.Errorf("other session: got %v; want ErrNoCode", err)
	}
	// Expiry by the configured clock.
	e.clock.Advance(5 * time.Minute)
	if _, err := e.s.Verify(ctx0, alice, code, Meta{}); !errors.Is(err, ErrNoCode) {
		t.Errorf("after ttl: got %v; want ErrNoCode", err)
	}
}

func TestCodeBoundToAddress(t *testing.T) {
	e := newEnv(t)
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
		t.Fatal(err)
	}
	code := e.sender.lastCode(t, 6)
	key := codeKey(alice.Subject, alice.Session)
	pending, err := e.store.PeekCode(ctx0, key)
	if err != nil {
		t.Fatal(err)
	}
	// Someone able to write the store swaps the address: the MAC no longer
	// matches, so the right digits do not work for another address.
	pending.Email = alice.Emails[1]
	if err := e.store.PutCode(ctx0, key, pending, time.Minute); err != nil {
		t.Fatal(err)
	}
	var ce *CodeError
	if _, err := e.s.Verify(ctx0, alice, code, Meta{}); !errors.As(err, &ce) {
		t.Errorf("code with swapped address: got %v; want *CodeError", err)
	}
}

func TestBruteForceLockout(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) {
		c.Metrics = NewMetrics(reg)
		c.OTP.MaxSendsPerHour = 100
	})
	// Per code: 5 wrong tries kill it. Per user: 20 in an hour lock the
	// user, across codes and sessions (N means N), for 15 minutes or, as
	// here, until the first of them leaves the hour, whichever is later.
	first := e.clock.Now()
	failures := 0
	for round := 0; failures < 20; round++ {
		id := alice
		id.Session = "sess-" + string(rune('a'+round))
		if _, err := e.s.Send(ctx0, id, 0, Meta{}); err != nil {
			t.Fatalf("round %d Send: %v", round, err)
		}
		code := e.sender.lastCode(t, 6)
		wrong := wrongCode(code)
		for attempt := 1; attempt <= 5 && failures < 20; attempt++ {
			in := wrong
			if attempt == 2 {
				in = "12a456" // malformed counts as wrong
			}
			_, err := e.s.Verify(ctx0, id, in, Meta{})
			failures++
			var ce *CodeError
			var le *LimitError
			switch {
			case failures == 20: // N means N: the 20th wrong code locks
				if want := first.Add(time.Hour).Sub(e.clock.Now()); !errors.As(err, &le) || !errors.Is(err, ErrLocked) || le.RetryAfter != want {
					t.Fatalf("failure 20: got %v; want *LimitError ErrLocked %v (until the first failure leaves the hour)", err, want)
				}
			case errors.As(err, &ce):
				if want := 5 - attempt; ce.AttemptsLeft != want {
					t.Fatalf("failure %d: got %d attempts left; want %d", failures, ce.AttemptsLeft, want)
				}
			default:
				t.Fatalf("failure %d: got %v; want *CodeError", failures, err)
			}
		}
		if failures < 20 {
			// The code is dead after 5 wrong tries: even the right one fails.
			if _, err := e.s.Verify(ctx0, id, code, Meta{}); !errors.Is(err, ErrNoCode) {
				t.Fatalf("dead code: got %v; want ErrNoCode", err)
			}
		}
		e.clock.Advance(31 * time.Second)
		if round > 10 {
			t.Fatal("no lockout")
		}
	}
	// Locked: no send, no verify, whatever the session.
	var le *LimitError
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
		t.Errorf("Send while locked: got %v; want ErrLocked", err)
	}
	if _, err := e.s.Verify(ctx0, alice, "000000", Meta{}); !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
		t.Errorf("Verify while locked: got %v; want ErrLocked", err)
	}
	if got := testutil.ToFloat64(e.s.metrics.Verified.WithLabelValues("invalid")); got != 19 {
		t.Errorf("verify_total{invalid}: got %v; want 19 (the 20th locked)", got)
	}
	if got := testutil.ToFloat64(e.s.metrics.Verified.WithLabelValues("locked")); got != 2 {
		t.Errorf("verify_total{locked}: got %v; want 2", got)
	}
	if got := testutil.ToFloat64(e.s.metrics.Sent.WithLabelValues("locked")); got != 1 {
		t.Errorf("sent_total{locked}: got %v; want 1", got)
	}
	if !strings.Contains(e.logs.String(), `"event":"code_locked"`) {
		t.Error("no code_locked audit record")
	}
	// The record says until when, in UTC, and how long is left.
	until := regexp.MustCompile(`"event":"code_locked".*"locked_until":"([^"]+)","retry_after":"([^"]+)"`).FindStringSubmatch(e.logs.String())
	if until == nil {
		t.Errorf("code_locked record lacks locked_until and retry_after:\n%s", e.logs.String())
	} else if at, err := time.Parse(time.RFC3339, until[1]); err != nil || !at.Equal(first.Add(time.Hour).Truncate(time.Second)) || !strings.HasSuffix(until[1], "Z") {
		t.Errorf("locked_until %q: want %v in UTC (the first failure leaves the hour)", until[1], first.Add(time.Hour).UTC())
	}
	// The lockout's 15 minutes are not enough: the hour still holds 20.
	e.clock.Advance(15 * time.Minute)
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
		t.Errorf("Send 15m later, 20 failures still in the hour: got %v; want ErrLocked", err)
	}
	// Once the first failure left the hour, the user may try again.
	e.clock.Advance(first.Add(time.Hour).Sub(e.clock.Now()))
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
		t.Errorf("Send after lockout: %v", err)
	}
}

// TestLockoutNMeansN: with max_failures_per_hour N, exactly N wrong codes
// are checked in any rolling hour; the Nth locks, and then a right code,
// too, gets ErrLocked with the lock left, until the lockout ends and the
// oldest failure left the hour.
func TestLockoutNMeansN(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.OTP.MaxFailuresPerHour = 3
		c.OTP.MaxAttempts = 10
	})
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
		t.Fatal(err)
	}
	code := e.sender.lastCode(t, 6)
	for i := 1; i <= 3; i++ {
		_, err := e.s.Verify(ctx0, alice, wrongCode(code), Meta{})
		var le *LimitError
		var ce *CodeError
		switch {
		case i < 3 && !errors.As(err, &ce):
			t.Fatalf("wrong code %d of 3: got %v; want *CodeError", i, err)
		case i == 3 && (!errors.As(err, &le) || le.RetryAfter != time.Hour):
			t.Fatalf("wrong code 3 of 3: got %v; want *LimitError with 1h (until the failures leave the hour)", err)
		}
	}
	// The right code, after N failures: locked, not a token.
	var le *LimitError
	if g, err := e.s.Verify(ctx0, alice, code, Meta{}); !errors.As(err, &le) || !errors.Is(err, ErrLocked) || le.RetryAfter != time.Hour {
		t.Fatalf("right code after 3 failures: got %+v, %v; want ErrLocked with Retry-After 1h", g, err)
	}
	// The 15m lockout ended, but the hour still holds 3 failures: a fourth
	// wrong code could be checked within the hour, so the right one, too,
	// is refused until the first failure leaves it.
	e.clock.Advance(15*time.Minute + time.Second)
	if g, err := e.s.Verify(ctx0, alice, code, Meta{}); !errors.As(err, &le) || !errors.Is(err, ErrLocked) || le.RetryAfter != 45*time.Minute-time.Second {
		t.Fatalf("right code after the lockout, 3 failures in the hour: got %+v, %v; want ErrLocked with Retry-After 44m59s", g, err)
	}
	e.clock.Advance(45*time.Minute - time.Second)
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
		t.Fatalf("Send after the lockout: %v", err)
	}
	if _, err := e.s.Verify(ctx0, alice, e.sender.lastCode(t, 6), Meta{}); err != nil {
		t.Fatalf("right code after the lockout: got %v; want a grant", err)
	}
}

// TestRightCodeAfterNMinus1Failures: N-1 wrong codes leave the right one
// its chance, and it resets nothing it should not.
func TestRightCodeAfterNMinus1Failures(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.OTP.MaxFailuresPerHour = 3
		c.OTP.MaxAttempts = 10
	})
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
		t.Fatal(err)
	}
	code := e.sender.lastCode(t, 6)
	for range 2 {
		var ce *CodeError
		if _, err := e.s.Verify(ctx0, alice, wrongCode(code), Meta{}); !errors.As(err, &ce) {
			t.Fatalf("wrong code: got %v; want *CodeError", err)
		}
	}
	if _, err := e.s.Verify(ctx0, alice, code, Meta{}); err != nil {
		t.Fatalf("right code after 2 of 3 failures: got %v; want a grant", err)
	}
}

func wrongCode(code string) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

func TestConcurrentVerifyOneWins(t *testing.T) {
	e := newEnv(t)
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
		t.Fatal(err)
	}
	code := e.sender.lastCode(t, 6)
	var wins, noCode atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := e.s.Verify(ctx0, alice, code, Meta{})
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, ErrNoCode):
				noCode.Add(1)
			default:
				t.Errorf("Verify: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 || noCode.Load() != 49 {
		t.Errorf("got %d wins, %d ErrNoCode; want 1 and 49", wins.Load(), noCode.Load())
	}
}

func TestResend(t *testing.T) {
	e := newEnv(t)
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
		t.Fatal(err)
	}
	first := e.sender.lastCode(t, 6)
	// Too soon: throttled, with the time left.
	e.clock.Advance(10 * time.Second)
	var le *LimitError
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); !errors.As(err, &le) || !errors.Is(err, ErrThrottled) || le.RetryAfter != 20*time.Second {
		t.Fatalf("resend after 10s: got %v; want ErrThrottled with 20s", err)
	}
	e.clock.Advance(20 * time.Second)
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
		t.Fatalf("resend after 30s: %v", err)
	}
	second := e.sender.lastCode(t, 6)
	if first != second {
		// The old code is replaced; it must not work any more.
		if _, err := e.s.Verify(ctx0, alice, first, Meta{}); err == nil {
			t.Error("the replaced code still works")
		}
	}
	if _, err := e.s.Verify(ctx0, alice, second, Meta{}); err != nil {
		t.Errorf("the new code: %v", err)
	}
}

func TestHourlySendCap(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 5; i++ {
		if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
			t.Fatalf("send %d: %v", i+1, err)
		}
		e.clock.Advance(time.Minute)
	}
	// The 6th within the hour is refused until the first leaves the window.
	var le *LimitError
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); !errors.As(err, &le) || !errors.Is(err, ErrThrottled) || le.RetryAfter != 55*time.Minute {
		t.Fatalf("send 6: got %v; want ErrThrottled with 55m", err)
	}
	if got := testutil.ToFloat64(e.s.metrics.Sent.WithLabelValues("throttled")); got != 1 {
		t.Errorf("sent_total{throttled}: got %v; want 1", got)
	}
	e.clock.Advance(55 * time.Minute)
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
		t.Errorf("send after the window moved: %v", err)
	}
}

func TestSendBadEmail(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		id    identity.Identity
		index int
	}{
		{"negative", alice, -1},
		{"out of range", alice, 2},
		{"no emails", identity.Identity{Subject: "x", Session: "s"}, 0},
		{"CRLF", identity.Identity{Subject: "x", Session: "s", Emails: []string{"a@example.com\r\nBcc: evil@example.com"}}, 0},
		{"two addresses", identity.Identity{Subject: "x", Session: "s", Emails: []string{"a@example.com, b@example.com"}}, 0},
		{"display name", identity.Identity{Subject: "x", Session: "s", Emails: []string{"Evil <a@example.com>"}}, 0},
	}
	for _, tt := range tests {
		if _, err := e.s.Send(ctx0, tt.id, tt.index, Meta{}); !errors.Is(err, ErrBadEmail) {
			t.Errorf("%s: got %v; want ErrBadEmail", tt.name, err)
		}
	}
	if len(e.sender.msgs) != 0 {
		t.Errorf("got %d messages; want none", len(e.sender.msgs))
	}
}

func TestSendMailFailureKillsCode(t *testing.T) {
	e := newEnv(t)
	e.sender.err = errors.New("dial tcp: connection refused")
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); !errors.Is(err, ErrMailUnavailable) {
		t.Fatalf("got %v; want ErrMailUnavailable", err)
	}
	if _, err := e.store.PeekCode(ctx0, codeKey(alice.Subject, alice.Session)); !errors.Is(err, ErrNoCode) {
		t.Errorf("pending code after a failed send: got %v; want ErrNoCode", err)
	}
	if got := testutil.ToFloat64(e.s.metrics.Sent.WithLabelValues("mail_error")); got != 1 {
		t.Errorf("sent_total{mail_error}: got %v; want 1", got)
	}
}

// downStore fails everything, like an unreachable Redis.
type downStore struct{ Store }

var errDown = errors.New("dial tcp 127.0.0.1:6379: connection refused")

func (downStore) Locked(context.Context, string, time.Time) (time.Duration, error) { return 0, errDown }

func TestStoreDown(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Store = downStore{NewMemoryStore(0)} })
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("Send: got %v; want ErrStoreUnavailable", err)
	}
	if _, err := e.s.Verify(ctx0, alice, "123456", Meta{}); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("Verify: got %v; want ErrStoreUnavailable", err)
	}
	if got := testutil.ToFloat64(e.s.metrics.Verified.WithLabelValues("store_error")); got != 1 {
		t.Errorf("verify_total{store_error}: got %v; want 1", got)
	}
}

func TestStoreFull(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Store = NewMemoryStore(1) })
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
		t.Fatal(err)
	}
	bob := identity.Identity{Subject: "bob", Emails: []string{"bob@example.com"}, Session: "s"}
	if _, err := e.s.Send(ctx0, bob, 0, Meta{}); !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, ErrStoreFull) {
		t.Errorf("got %v; want ErrStoreUnavailable wrapping ErrStoreFull", err)
	}
}
