package identity

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// counter counts Inc calls (JWTConfig.Shed).
type counter struct{ n atomic.Int64 }

func (c *counter) Inc() { c.n.Add(1) }

// budgetAuth is an RS256 Authenticator with one verification slot, the
// given wait and a shed counter, and a hook that reports each signature
// check on entered and holds it until proceed says so.
func budgetAuth(t *testing.T, wait time.Duration) (a *Authenticator, shed *counter, entered chan struct{}, proceed chan struct{}, running *atomic.Int32) {
	t.Helper()
	cfg := rsConfig(t, newClock())
	cfg.JWT.VerifyConcurrency = 1
	cfg.JWT.VerifyWait = wait
	shed = &counter{}
	cfg.JWT.Shed = shed
	a = newAuth(t, cfg)
	entered, proceed = make(chan struct{}), make(chan struct{})
	running = new(atomic.Int32)
	return a, shed, entered, proceed, running
}

// hold installs the hook of budgetAuth; a check running while another one
// runs fails the test.
func hold(t *testing.T, a *Authenticator, entered, proceed chan struct{}, running *atomic.Int32) {
	a.jwt.verifying = func() {
		if n := running.Add(1); n != 1 {
			t.Errorf("%d signature checks at once; want at most 1", n)
		}
		entered <- struct{}{}
		<-proceed
		running.Add(-1)
	}
}

// TestVerifyBudgetOneAtOnce: with verify_concurrency 1, concurrent
// requests with distinct uncached RS256 tokens are verified one at a time,
// each waiting (not shed) while the slot is busy.
func TestVerifyBudgetOneAtOnce(t *testing.T) {
	a, shed, entered, proceed, running := budgetAuth(t, time.Minute)
	hold(t, a, entered, proceed, running)
	good := sign(t, jwt.SigningMethodRS256, rsaKey(), claims(), "")
	const n = 6
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := a.Authenticate(request([]string{"access_token=" + forge(good, i+1)}, ""))
			errs <- err
		}()
	}
	for range n {
		<-entered // one check is running; the others wait for its slot
		if got := running.Load(); got != 1 {
			t.Fatalf("%d checks running; want 1", got)
		}
		proceed <- struct{}{}
	}
	for range n {
		if err := <-errs; !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			t.Errorf("forged token: got %v; want a signature error (waited, then verified)", err)
		}
	}
	if got := shed.n.Load(); got != 0 {
		t.Errorf("shed %d; want 0", got)
	}
	if len(a.jwt.budget.slots) != 0 {
		t.Errorf("%d slots still held after every check returned", len(a.jwt.budget.slots))
	}
}

// TestVerifyBudgetShed: while the only slot is held, a request whose token
// needs a check is shed with ErrBusy after verify_wait (counted, not
// ErrInvalid, not remembered as refused), one whose context ends is shed at
// once, and cache hits, valid or refused, answer without waiting.
func TestVerifyBudgetShed(t *testing.T) {
	a, shed, entered, proceed, running := budgetAuth(t, 50*time.Millisecond)
	good := sign(t, jwt.SigningMethodRS256, rsaKey(), claims(), "")
	replayed := forge(good, 1)
	// Fill both caches before the slot is taken.
	if _, err := a.Authenticate(request([]string{"access_token=" + good}, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(request([]string{"access_token=" + replayed}, "")); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	hold(t, a, entered, proceed, running)
	holder := make(chan error, 1)
	go func() {
		_, err := a.Authenticate(request([]string{"access_token=" + forge(good, 2)}, ""))
		holder <- err
	}()
	<-entered // the slot is held until proceed

	// Cache hits never wait: with the slot held, a wait would end in
	// ErrBusy, not in these answers.
	if id, err := a.Authenticate(request([]string{"access_token=" + good}, "")); err != nil || id.Subject != "alice" {
		t.Fatalf("cached valid token while the slot is held: %v, %v", id, err)
	}
	if _, err := a.Authenticate(request([]string{"access_token=" + replayed}, "")); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "refused before") {
		t.Fatalf("cached refused token while the slot is held: %v; want refused from the cache", err)
	}

	// A distinct token waits verify_wait, then is shed.
	waiter := forge(good, 3)
	start := time.Now()
	_, err := a.Authenticate(request([]string{"access_token=" + waiter}, ""))
	if !errors.Is(err, ErrBusy) || errors.Is(err, ErrInvalid) {
		t.Fatalf("waiter: got %v; want ErrBusy and not ErrInvalid", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("shed after %v; want after verify_wait (50ms)", d)
	}
	if got := shed.n.Load(); got != 1 {
		t.Errorf("shed counter %d; want 1", got)
	}
	if a.jwt.invalid.has(tokenSum(waiter)) {
		t.Error("a shed token was remembered as refused")
	}

	// A request whose context ends stops waiting, whatever verify_wait.
	a.jwt.budget.wait = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	r := request([]string{"access_token=" + forge(good, 4)}, "").WithContext(ctx)
	cancelled := make(chan error, 1)
	go func() { _, err := a.Authenticate(r); cancelled <- err }()
	cancel()
	if err := <-cancelled; !errors.Is(err, ErrBusy) {
		t.Fatalf("cancelled request: got %v; want ErrBusy", err)
	}

	// A shed token among the candidates makes the answer "busy" even when
	// another candidate is invalid: it might have been the valid one.
	a.jwt.budget.wait = time.Millisecond
	if _, err := a.Authenticate(request([]string{"access_token=" + forge(good, 5)}, replayed)); !errors.Is(err, ErrBusy) {
		t.Fatalf("shed cookie and refused bearer: got %v; want ErrBusy", err)
	}
	// But a valid cached candidate still wins.
	if id, err := a.Authenticate(request([]string{"access_token=" + forge(good, 6)}, good)); err != nil || id.Subject != "alice" {
		t.Fatalf("shed cookie and cached bearer: %v, %v; want alice", id, err)
	}

	proceed <- struct{}{}
	if err := <-holder; !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Fatalf("holder: %v", err)
	}
	// The shed token, once a slot is free, is judged like any other.
	a.jwt.verifying = nil
	if _, err := a.Authenticate(request([]string{"access_token=" + waiter}, "")); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Fatalf("shed token retried: %v; want a signature error", err)
	}
}

// TestVerifyBudgetHMAC: HS* checks are not bounded (no budget), and the
// default concurrency is half of GOMAXPROCS, at least one.
func TestVerifyBudgetHMAC(t *testing.T) {
	if a := newAuth(t, hsConfig(newClock())); a.jwt.budget != nil {
		t.Error("HS256 source has a verification budget")
	}
	a := newAuth(t, rsConfig(t, newClock()))
	if got, want := cap(a.jwt.budget.slots), DefaultVerifyConcurrency(); got != want || want < 1 {
		t.Errorf("default slots %d; want %d (>= 1)", got, want)
	}
	if a.jwt.budget.wait != defaultVerifyWait {
		t.Errorf("default wait %v; want %v", a.jwt.budget.wait, defaultVerifyWait)
	}
}
