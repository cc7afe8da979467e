package identity

import (
	"context"
	"errors"
	"runtime"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrBusy means a token needed a signature check and no verification slot
// came free within the wait (JWTConfig.VerifyWait, or the request's
// context ended first). It does not wrap ErrInvalid: the token was not
// judged, so the caller answers 503 with Retry-After, never "sign in" and
// never forwards.
var ErrBusy = errors.New("token verification busy: try again")

// defaultVerifyWait is how long a request waits for a verification slot
// when JWTConfig.VerifyWait is 0.
const defaultVerifyWait = 500 * time.Millisecond

// DefaultVerifyConcurrency is the number of asymmetric signature checks run
// at once when JWTConfig.VerifyConcurrency is 0: half the CPUs Go uses, at
// least one.
func DefaultVerifyConcurrency() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// verifyBudget bounds the uncached asymmetric signature checks (RS*,
// ES*, EdDSA: 30–60 µs of CPU each) that run at once, so that a flood of
// distinct forged tokens, which neither token cache can absorb, takes at
// most its slots' share of the CPU from requests whose tokens are cached.
// A request waits for a slot at most wait (and never past its context);
// then it is shed with ErrBusy. Cache hits, valid or refused, never come
// here. HS* checks stay outside: an HMAC costs about what decoding the
// token costs (a few µs), so bounding it would protect nothing that
// decoding garbage does not already cost.
//
// The slots are a buffered channel: a send takes one, a receive gives it
// back.
type verifyBudget struct {
	slots chan struct{}
	wait  time.Duration
	shed  interface{ Inc() } // nil: not counted
}

func newVerifyBudget(slots int, wait time.Duration, shed interface{ Inc() }) *verifyBudget {
	return &verifyBudget{slots: make(chan struct{}, max(slots, 1)), wait: wait, shed: shed}
}

// verifyCall is the Keyfunc of one request's uncached verifications: it
// takes a slot once the key is known (after the parser checked alg and
// decoded the token, just before the signature check), and verify gives
// it back when the parser returns. until is the end of the request's
// wait, set when it first has to wait, so several candidate tokens (cookies
// and Bearer) share one wait rather than each getting its own.
type verifyCall struct {
	s     *jwtSource
	ctx   context.Context
	until time.Time
	held  bool
}

func (c *verifyCall) key(t *jwt.Token) (any, error) {
	k, err := c.s.key(t)
	if err != nil {
		return nil, err
	}
	if err := c.acquire(); err != nil {
		return nil, err
	}
	c.held = true
	if c.s.verifying != nil {
		c.s.verifying()
	}
	return k, nil
}

// acquire takes a slot, waiting until c.until or the end of c.ctx.
func (c *verifyCall) acquire() error {
	b := c.s.budget
	select {
	case b.slots <- struct{}{}:
		return nil
	default:
	}
	if c.until.IsZero() {
		c.until = time.Now().Add(b.wait)
	}
	if d := time.Until(c.until); d > 0 && c.ctx.Err() == nil {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case b.slots <- struct{}{}:
			return nil
		case <-t.C:
		case <-c.ctx.Done():
		}
	}
	if b.shed != nil {
		b.shed.Inc()
	}
	return ErrBusy
}

// parse runs the parser with c.key as the Keyfunc and gives back the slot
// it took, even if the parser panics (net/http recovers a handler's panic;
// a slot lost that way would shed every later check).
func (c *verifyCall) parse(raw string, claims jwt.MapClaims) error {
	defer c.release()
	_, err := c.s.parser.ParseWithClaims(raw, claims, c.key)
	return err
}

// release gives back the slot taken by key, if any.
func (c *verifyCall) release() {
	if c.held {
		c.held = false
		<-c.s.budget.slots
	}
}
