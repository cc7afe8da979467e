package challenge

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/secondfactor"
)

// CodeError is a wrong code.
type CodeError struct {
	AttemptsLeft int
	// FailuresLeft is how many more wrong codes the user may have checked
	// in the rolling hour (otp.max_failures_per_hour) before the lock,
	// and LockedUntil when that lock would end; -1 when unknown (a store
	// error, or a check that does not read it).
	FailuresLeft int
	LockedUntil  time.Time
}

func (e *CodeError) Error() string { return "invalid code" }
func (e *CodeError) Unwrap() error { return ErrInvalidCode }

var (
	ErrInvalidCode      = errors.New("invalid code")
	ErrMailUnavailable  = errors.New("mail delivery unavailable")
	ErrStoreUnavailable = errors.New("challenge store unavailable")
	ErrBadEmail         = errors.New("no such address")
)

// op is the ceremony step that failed; what the user is told depends on it.
type op int

const (
	opSend     op = iota // sending a code (POST /send, POST /api/email-otp)
	opVerify             // checking a code (POST /verify, PUT /api/email-otp)
	opValidate           // checking a token (GET /api/validate)
	opRevoke             // dropping the second factor (POST /logout)
	opTOTP               // checking an authenticator code (POST /totp, PUT /api/totp)
	opEnrol              // adding a factor (POST /factors/totp..., /api/factors/totp...)
	opRemove             // removing a factor
	opFactors            // listing factors
)

// errorFor is the one mapping from the ceremony's errors (ErrLocked,
// ErrThrottled, *CodeError, ErrNoCode, ErrBadEmail, ErrMailUnavailable,
// ErrStoreUnavailable, secondfactor's errors) to what the client is told
// and what is logged. The pages and the API both render from it; only the
// pages' own shapes (the code form, the locked page) are theirs.
func errorFor(o op, err error) *respond.HTTPError {
	if le, ok := errors.AsType[*LimitError](err); ok {
		e := &respond.HTTPError{Status: http.StatusTooManyRequests, Code: "too_many_requests",
			Title: "Too many codes requested", Msg: "Please wait before asking for another code.",
			APIMsg: le.Error(), Header: http.Header{"Retry-After": {retryAfter(le.RetryAfter)}}}
		if errors.Is(le, ErrLocked) {
			e.Title, e.Msg = "Too many wrong codes", "For your safety, codes are blocked for a while."
		}
		return e
	}
	if e := factorErrorFor(o, err); e != nil {
		return e
	}
	switch o {
	case opSend:
		switch {
		case errors.Is(err, ErrBadEmail):
			return &respond.HTTPError{Status: http.StatusBadRequest, Code: "invalid_email", Title: "Choose an address",
				Msg: "That address cannot receive a code. Please choose another one.", APIMsg: "that address cannot receive a code"}
		case errors.Is(err, ErrMailUnavailable), errors.Is(err, ErrStoreUnavailable):
			return &respond.HTTPError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Title: "Could not send a code",
				Msg: "We could not send a code right now. Please try again in a few minutes.", APIMsg: "no code was sent; try again later",
				Op: "send code", Err: err}
		}
		return &respond.HTTPError{Status: http.StatusInternalServerError, Code: "server_error", Title: "Could not send a code",
			Msg: "Something went wrong. Please try again.", APIMsg: "no code was sent", Op: "send code", Err: err}
	case opVerify:
		ce, isCode := errors.AsType[*CodeError](err)
		switch {
		case isCode && ce.AttemptsLeft > 0:
			return &respond.HTTPError{Status: http.StatusUnauthorized, Code: "invalid_otp", Title: "Enter your code",
				Msg: attemptsLeftMessage(ce.AttemptsLeft), APIMsg: "wrong code"}
		case isCode:
			// The wrong try that used up the code's attempts.
			return &respond.HTTPError{Status: http.StatusUnauthorized, Code: "expired_otp", Title: "Enter your code",
				Msg: killedCodeMessage, APIMsg: "no valid code; request a new one"}
		case errors.Is(err, ErrNoCode):
			return &respond.HTTPError{Status: http.StatusUnauthorized, Code: "expired_otp", Title: "Enter your code",
				Msg: deadCodeMessage, APIMsg: "no valid code; request a new one"}
		case errors.Is(err, ErrStoreUnavailable):
			return &respond.HTTPError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Title: "Try again shortly",
				Msg: "Your code could not be checked right now. Please try again in a moment.", APIMsg: "the code could not be checked; try again later",
				Op: "verify code", Err: err}
		}
		return &respond.HTTPError{Status: http.StatusInternalServerError, Code: "server_error", Title: "Something went wrong",
			Msg: "Your code could not be checked. Please try again.", APIMsg: "the code could not be checked", Op: "verify code", Err: err}
	case opValidate:
		if errors.Is(err, secondfactor.ErrUnavailable) {
			// The revocation list could not be read: deny, but say it is
			// temporary so the back end does not send the user round again.
			return &respond.HTTPError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
				Msg: "the token could not be checked; try again later", Op: "validate token", Err: err}
		}
		return &respond.HTTPError{Status: http.StatusUnauthorized, Code: "invalid_token", Msg: "invalid second-factor token"}
	case opRevoke:
		return &respond.HTTPError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Title: "Not signed out",
			Msg: "Your second step could not be removed right now. Please try again in a moment.",
			Op:  "revoke second factor", Err: err}
	}
	return &respond.HTTPError{Status: http.StatusInternalServerError, Code: "server_error", Title: "Something went wrong",
		Msg: "Please try again.", Err: fmt.Errorf("unknown step %d: %w", o, err)}
}

// attemptsLeft is the attempts_left of a verify answer: the tries left
// after a wrong code, 0 when only a new code helps, nil otherwise.
func attemptsLeft(err error) *int {
	n := 0
	if ce, ok := errors.AsType[*CodeError](err); ok {
		n = ce.AttemptsLeft
	} else if !errors.Is(err, ErrNoCode) {
		return nil
	}
	return &n
}
