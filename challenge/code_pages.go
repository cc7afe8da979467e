package challenge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
)

// This file holds the email-code pages: sending a code (POST /send), the
// code form (GET /verify) and checking a code (POST /verify).

// verifyData is the code form's Data.
type verifyData struct {
	formData
	SentTo     string // masked address, "" when unknown
	CodeLength int
	MaxLength  int    // the field's maxlength: room for pasted spaces and dashes
	ExpiresAt  string // "19:37 UTC", "" when unknown
	ExpiresIn  string // "in 5 minutes"
	ResendAt   string // when a new code may be asked for, "" when now
	ResendIn   string // "in 30 seconds"
	Error      string // why the last code was refused
	Warn       bool   // few tries are left: the error is a warning
	Notice     string // why the user is here rather than where they asked to go
	Dead       bool   // no code is pending: only "send a new code" helps
}

// serveSend is POST /send (email = index, rd, csrf): it sends a code and
// answers 303 to the code form (SPEC §6).
func (s *Service) serveSend(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok || !s.postForm(w, r, id) {
		return
	}
	rd := respond.CleanRedirect(r.PostForm.Get("rd"))
	back := &respond.Link{URL: s.cfg.Prefix + "/challenge?rd=" + url.QueryEscape(rd), Text: "Choose an address"}
	idx, err := strconv.Atoi(r.PostForm.Get("email"))
	if err != nil || idx < 0 || idx >= len(id.Emails) {
		s.h.pages.Error(w, r, &respond.HTTPError{Status: http.StatusBadRequest, Code: "bad_email", Title: "Choose an address",
			Msg: "Please choose one of your addresses.", Link: back})
		return
	}
	if _, err := s.Send(r.Context(), id, idx, meta(r)); err != nil {
		if le, ok := errors.AsType[*LimitError](err); ok && errors.Is(le, ErrThrottled) {
			// A code is still pending: keep the user where it can be
			// typed rather than on a dead end.
			if v, ok := s.verifyData(r.Context(), id, s.form(id, rd)); ok {
				v.Notice = fmt.Sprintf("A code was sent a moment ago; enter it below. You can ask for another %s.", in(le.RetryAfter))
				// No "send a new code" link until the limit that refused
				// this one (resend_after or the hourly cap) has passed.
				v.ResendAt, v.ResendIn = s.clock(s.h.now().Add(le.RetryAfter)), in(le.RetryAfter)
				e := errorFor(opSend, err)
				e.WriteHeader(w)
				s.h.pages.Render(w, e.Status, "verify", s.page(id, "Enter your code", "", v))
				return
			}
		}
		s.sendFailed(w, r, id, err, rd, back)
		return
	}
	http.Redirect(w, r, s.cfg.Prefix+"/verify?rd="+url.QueryEscape(rd), http.StatusSeeOther)
}

// sendFailed renders a failed Send from errorFor: the locked page with
// Retry-After when throttled or locked, else an error page linking back to
// the address choice (SPEC §9: never "code sent").
func (s *Service) sendFailed(w http.ResponseWriter, r *http.Request, id identity.Identity, err error, rd string, back *respond.Link) {
	e := errorFor(opSend, err)
	if le, ok := errors.AsType[*LimitError](err); ok {
		s.renderLimited(w, r, id, e, le, rd)
		return
	}
	e.Link = back
	s.h.pages.Error(w, r, e)
}

// maxCodeInput is the code field's maxlength: room for a code pasted with
// spaces, dashes or an indent, and canonicalCode's bound.
const maxCodeInput = 32

// verifyData describes id's pending code for the code form: where it was
// sent, until when it works, when a new one may be asked for, and how many
// tries are left. ok is false when no code is pending (or the store cannot
// tell); the form then says less.
func (s *Service) verifyData(ctx context.Context, id identity.Identity, f formData) (verifyData, bool) {
	d := verifyData{formData: f, CodeLength: s.codeLen(), MaxLength: maxCodeInput}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := s.cfg.Store.PeekCode(ctx, codeKey(id.Subject, id.Session))
	now := s.h.now()
	if err != nil || c.Email == "" || !now.Before(c.ExpiresAt) {
		return d, false
	}
	d.SentTo = maskEmail(c.Email)
	d.ExpiresAt, d.ExpiresIn = s.clock(c.ExpiresAt), in(c.ExpiresAt.Sub(now))
	o := s.cfg.OTP
	if resend := c.ExpiresAt.Add(-o.TTL).Add(o.ResendAfter); resend.After(now) {
		d.ResendAt, d.ResendIn = s.clock(resend), in(resend.Sub(now))
	}
	if left := o.MaxAttempts - c.Attempts; c.Attempts > 0 && left <= 2 {
		d.Warn = true
		d.Error = fewLeftMessage(left)
	}
	return d, true
}

// fewLeftMessage warns that a code is about to die.
func fewLeftMessage(left int) string {
	if left == 1 {
		return "Only 1 try left for this code; after that you will need a new one."
	}
	return fmt.Sprintf("Only %d tries left for this code; after that you will need a new one.", left)
}

// codeLen is the form's maxlength; a generous default keeps the form
// usable should the config leave it unset.
func (s *Service) codeLen() int {
	if s.cfg.OTP.Length > 0 {
		return s.cfg.OTP.Length
	}
	return 10
}

// serveVerifyForm is GET /verify?rd= (SPEC §6).
func (s *Service) serveVerifyForm(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	f := s.form(id, r.URL.Query().Get("rd"))
	d, ok := s.verifyData(r.Context(), id, f)
	if !ok {
		d.Dead, d.Error = true, "There is no code waiting for you: it expired or was already used. Ask for a new one."
	}
	s.h.pages.Render(w, http.StatusOK, "verify", s.page(id, "Enter your code", "", d))
}

// attemptsLeftMessage is the refusal of a wrong code.
func attemptsLeftMessage(n int) string {
	switch {
	case n == 1:
		return "That code is not right. 1 try left for this code; after that you will need a new one."
	case n == 2:
		return "That code is not right. 2 tries left for this code; after that you will need a new one."
	}
	return fmt.Sprintf("That code is not right. %d tries left.", n)
}

// failuresWarnAt is the most wrong codes left this hour that the verify
// page warns about.
const failuresWarnAt = 3

// failuresWarning is the verify page's warning when few wrong codes are
// left in the rolling hour (otp.max_failures_per_hour): "2 more wrong
// codes and sign-in confirmation is locked until 19:37 UTC."; "" when
// more are left or the count is unknown.
func (s *Service) failuresWarning(err error) string {
	ce, ok := errors.AsType[*CodeError](err)
	if !ok || ce.FailuresLeft < 1 || ce.FailuresLeft > failuresWarnAt {
		return ""
	}
	codes := "wrong codes"
	if ce.FailuresLeft == 1 {
		codes = "wrong code"
	}
	return fmt.Sprintf("%d more %s and sign-in confirmation is locked until %s.", ce.FailuresLeft, codes, s.clock(ce.LockedUntil))
}

// The two ways a code stops working, each with its own sentence.
const (
	deadCodeMessage    = "This code has expired or was already used. Ask for a new one."
	killedCodeMessage  = "That was the last try for this code: after too many wrong tries it no longer works. Ask for a new one."
	malformedCodeWords = "A code has only digits; spaces and dashes are fine."
)

// serveVerify is POST /verify (code, rd, csrf): right → cookie and 303 to
// rd; wrong → the form again with attempts left (SPEC §6).
func (s *Service) serveVerify(w http.ResponseWriter, r *http.Request) {
	c, ok := s.postCode(w, r, opVerify, s.Verify)
	if !ok {
		return
	}
	id, f, e := c.id, c.f, c.e
	switch e.Code {
	case "invalid_otp":
		d, _ := s.verifyData(r.Context(), id, f)
		d.Error, d.Warn = e.Msg, strings.Contains(e.Msg, "after that")
		if w := s.failuresWarning(c.err); w != "" {
			d.Error, d.Warn = d.Error+" "+w, true
		}
		if _, ok := canonicalCode(r.PostForm.Get("code"), s.codeLen()); !ok {
			d.Error = fmt.Sprintf("%s %s", e.Msg, malformedCodeWords)
		}
		s.h.pages.Render(w, e.Status, "verify", s.page(id, "Enter your code", "", d))
	case "expired_otp":
		d := verifyData{formData: f, CodeLength: s.codeLen(), MaxLength: maxCodeInput, Error: e.Msg, Dead: true}
		s.h.pages.Render(w, e.Status, "verify", s.page(id, "Enter your code", "", d))
	default:
		s.h.pages.Error(w, r, e)
	}
}
