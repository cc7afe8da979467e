package challenge

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/secondfactor"
)

// emailOption is one address on the challenge page.
type emailOption struct {
	Index   int
	Masked  string
	Checked bool
}

// formData is what every page with a form needs.
type formData struct {
	CSRF string
	RD   string // cleaned return path
}

// challengeData is the challenge page's Data.
type challengeData struct {
	formData
	Emails []emailOption
	// Passkey links to the passkey step-up ({prefix}/passkey?rd=), offered
	// first (strongest, phishing-resistant); "" when not offered.
	Passkey string
	// TOTP offers the authenticator-app form.
	TOTP bool
	// CodeLength is the TOTP form's maxlength.
	CodeLength int
	// Factors links to the enrolment page when no allowed method is usable.
	Factors string
	// Error says why the last authenticator code was refused.
	Error string
}

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

// lockedData is the 429 page's Data.
type lockedData struct {
	Wait    string // "15 minutes"
	Until   string // "19:52 UTC"
	RD      string
	Locked  bool // wrong codes, not too many sends
	Pending bool // a code is still pending: offer to enter it
}

// maskEmail shows the first and last character of the local part and the
// domain: "j***n@example.com", enough to tell two addresses on one domain
// apart and to recognise one's own, without disclosing it to someone
// looking over the shoulder. A local part of one or two characters keeps
// only its first.
func maskEmail(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "***"
	}
	local := addr[:at]
	first, n := utf8.DecodeRuneInString(local)
	last, m := utf8.DecodeLastRuneInString(local)
	if utf8.RuneCountInString(local) <= 2 || n+m > len(local) {
		return string(first) + "***" + addr[at:]
	}
	return string(first) + "***" + string(last) + addr[at:]
}

// maskEmails masks addresses for the JSON API the SPEC's way
// ("j***@example.com": the first character and the domain), which API
// clients may display or compare; the pages use maskEmail.
func maskEmails(addrs []string) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		at := strings.LastIndexByte(a, '@')
		if at <= 0 {
			out = append(out, "***")
			continue
		}
		r, _ := utf8.DecodeRuneInString(a)
		out = append(out, string(r)+"***"+a[at:])
	}
	return out
}

func (s *Service) form(id identity.Identity, rd string) formData {
	return formData{CSRF: csrfToken(s.h.csrfKey, id), RD: respond.CleanRedirect(rd)}
}

// userLabel says who is signed in, with the first address masked.
func userLabel(id identity.Identity) string {
	if len(id.Emails) > 0 {
		return id.Subject + " (" + maskEmail(id.Emails[0]) + ")"
	}
	return id.Subject
}

// page is the PageData every page of a signed-in user shares: who is
// signed in and a way out. The way out is the site's home page: the page
// the user asked for (rd) needs the very step they would be cancelling.
func (s *Service) page(id identity.Identity, title, msg string, data any) respond.PageData {
	back := "Cancel and go to the home page"
	if s.cfg.UI.AppName != "" {
		back = "Cancel and go back to " + s.cfg.UI.AppName
	}
	return respond.PageData{Title: title, Message: msg, Data: data, User: userLabel(id),
		Back: &respond.Link{URL: "/", Text: back}}
}

// clock is a time as pages show it: "19:37 UTC", with the day when it is
// not today ("3 Dec, 19:37 UTC"), in UI.TimeZone.
func (s *Service) clock(t time.Time) string {
	z := s.cfg.zone()
	t, now := t.In(z), s.h.now().In(z)
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04 MST")
	}
	return t.Format("2 Jan, 15:04 MST")
}

// in is d from now in words: "in 5 minutes".
func in(d time.Duration) string {
	if d <= 0 {
		return "now"
	}
	return "in " + humanDuration(d)
}

func challengePage(f formData, emails []string) respond.PageData {
	d := challengeData{formData: f}
	for i, e := range emails {
		d.Emails = append(d.Emails, emailOption{Index: i, Masked: maskEmail(e), Checked: i == 0})
	}
	if len(d.Emails) == 0 {
		return respond.PageData{Title: "No address for a code",
			Message: "Your account has no email address that a code could be sent to. Ask your administrator to add one.",
			Data:    d}
	}
	return respond.PageData{Title: "Confirm it's you",
		Message: "This page needs a second step. Choose where to send a one-time code.", Data: d}
}

// tooOld is the challenge page's first sentence when the user has a
// second factor that still works elsewhere but is older than this page
// (the max_age of the rule deciding rd, asked of the live policy through
// RuleFor) allows; "" otherwise. Without RuleFor, or when rd is decided
// by no step_up rule, the limit is not named. A confirmation the rule
// would still accept (the page asks for another reason, e.g. a method it
// does not accept) is not called too old.
func (s *Service) tooOld(r *http.Request, id identity.Identity, rd string) string {
	g, ok := s.cfg.Tokens.Check(r, id, s.cfg.Tokens.TTL())
	if !ok {
		return ""
	}
	age := s.h.now().Sub(g.AuthTime)
	if s.cfg.RuleFor != nil && rd != "" {
		if _, maxAge, ok := s.cfg.RuleFor(r, respond.CleanRedirect(rd)); ok && maxAge > 0 {
			if age <= maxAge {
				return ""
			}
			return fmt.Sprintf("Your confirmation from %s ago is older than this page allows (%s), so it's needed again.",
				humanDuration(age), humanDuration(maxAge))
		}
	}
	return fmt.Sprintf("Your confirmation from %s ago is older than this page allows, so it's needed again.", humanDuration(age))
}

// serveChallenge is GET /challenge?rd= (SPEC §6, §11): the methods the
// rule deciding rd allows that the user has, strongest first, email last;
// a page that says how to add one when there is none.
func (s *Service) serveChallenge(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	f := s.form(id, r.URL.Query().Get("rd"))
	methods, err := s.methodsFor(r, id, f.RD)
	if err != nil {
		// The factor store is down: email codes do not need it, so offer
		// them when the rule allows email rather than fail the page.
		allowed := s.allowedFor(r, f.RD)
		if !s.methodEnabled(secondfactor.MethodEmail) || (allowed != nil && !slices.Contains(allowed, secondfactor.MethodEmail)) || len(id.Emails) == 0 {
			s.h.pages.Error(w, r, errorFor(opFactors, err))
			return
		}
		s.h.log.Warn("factor store unavailable; offering email codes only", "err", err)
		s.renderChallenge(w, r, f, id, []string{secondfactor.MethodEmail}, http.StatusOK, "")
		return
	}
	s.renderChallenge(w, r, f, id, methods, http.StatusOK, "")
}

// renderChallenge renders the chooser for methods (AvailableMethods).
func (s *Service) renderChallenge(w http.ResponseWriter, r *http.Request, f formData, id identity.Identity, methods []string, status int, errMsg string) {
	var emails []string
	if slices.Contains(methods, secondfactor.MethodEmail) {
		emails = id.Emails
	}
	pd := challengePage(f, emails)
	d := pd.Data.(challengeData)
	d.TOTP = slices.Contains(methods, secondfactor.MethodTOTP)
	if slices.Contains(methods, secondfactor.MethodPasskey) {
		d.Passkey = s.cfg.Prefix + "/passkey?rd=" + url.QueryEscape(f.RD)
	}
	d.CodeLength = max(s.cfg.TOTP.Digits, 6)
	d.Error = errMsg
	switch {
	case len(methods) == 0:
		status = http.StatusForbidden
		if s.cfg.Passkeys != nil && s.ruleAllows(r, f.RD, secondfactor.MethodPasskey) {
			d.Factors = s.cfg.Prefix + "/factors/passkey"
			pd.Title = "Add a passkey first"
			pd.Message = "This page accepts only second factors you have not set up yet. Add a passkey on your passkeys page (you will confirm it's you with a code by email), then come back."
		} else if s.methodEnabled(secondfactor.MethodTOTP) {
			d.Factors = s.cfg.Prefix + "/factors"
			pd.Title = "Add an authenticator app first"
			pd.Message = "This page accepts only second factors you have not set up yet. Add an authenticator app on your second factors page (you will confirm it's you with a code by email), then come back."
		}
	case d.Passkey != "" && !d.TOTP && len(d.Emails) == 0:
		pd.Title = "Confirm it's you"
		pd.Message = "This page needs a second step, and accepts only a passkey."
	case d.Passkey != "":
		pd.Message = "This page needs a second step. Use a passkey, or another way below."
	case d.TOTP && len(d.Emails) == 0:
		pd.Title = "Confirm it's you"
		pd.Message = "This page needs a second step. Enter the code from your authenticator app."
	case d.TOTP:
		pd.Message = "This page needs a second step. Enter the code from your authenticator app, or have a code sent by email."
	}
	pd.Data = d
	if why := s.tooOld(r, id, f.RD); why != "" && len(methods) > 0 {
		pd.Message = why + " " + pd.Message[len("This page needs a second step. "):]
	}
	shared := s.page(id, "", "", nil)
	pd.User, pd.Back = shared.User, shared.Back
	s.h.pages.Render(w, status, "challenge", pd)
}

// serveTOTP is POST /totp (code, rd, csrf): an authenticator code; right →
// cookie and 303 to rd; wrong or replayed → the chooser again saying so.
func (s *Service) serveTOTP(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok || !s.postForm(w, r, id) {
		return
	}
	f := s.form(id, r.PostForm.Get("rd"))
	g, err := s.VerifyTOTP(r.Context(), id, r.PostForm.Get("code"), meta(r))
	if err == nil {
		s.cfg.Tokens.SetCookie(w, g)
		http.Redirect(w, r, f.RD, http.StatusSeeOther)
		return
	}
	e := errorFor(opTOTP, err)
	if le, ok := errors.AsType[*LimitError](err); ok {
		s.renderLimited(w, r, id, e, le, f.RD)
		return
	}
	switch e.Code {
	case "invalid_otp", "replayed_otp":
		methods, merr := s.methodsFor(r, id, f.RD)
		if merr != nil {
			s.h.pages.Error(w, r, errorFor(opFactors, merr))
			return
		}
		s.renderChallenge(w, r, f, id, methods, e.Status, e.Msg)
	default:
		s.h.pages.Error(w, r, e)
	}
}

// postForm parses a urlencoded body and checks its CSRF token against id.
// It answers and returns false on a body that is too large or malformed
// and on a bad token.
func (s *Service) postForm(w http.ResponseWriter, r *http.Request, id identity.Identity) bool {
	if err := r.ParseForm(); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			s.h.pages.Error(w, r, &respond.HTTPError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Title: "Request too large",
				Msg: "The form was too large."})
			return false
		}
		s.h.pages.Error(w, r, &respond.HTTPError{Status: http.StatusBadRequest, Code: "bad_request", Title: "Bad request",
			Msg: "The form could not be read."})
		return false
	}
	if !csrfValid(s.h.csrfKey, id, r.PostForm.Get("csrf")) {
		s.h.log.Warn("csrf token refused", "sub", id.Subject, "client", r.RemoteAddr, "path", respond.LogText(r.URL.Path, respond.MaxLoggedPath))
		s.h.pages.Error(w, r, &respond.HTTPError{Status: http.StatusForbidden, Code: "csrf", Title: "This form has expired",
			Msg: "Go back, reload the page and try again.", Link: &respond.Link{URL: s.cfg.Prefix + "/challenge?rd=" + url.QueryEscape(respond.CleanRedirect(r.PostForm.Get("rd"))), Text: "Start again"}})
		return false
	}
	return true
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

// retryAfter is the Retry-After value in whole seconds, at least 1
// (RFC 9110 §10.2.3).
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

func (s *Service) renderLimited(w http.ResponseWriter, r *http.Request, id identity.Identity, e *respond.HTTPError, le *LimitError, rd string) {
	d := lockedData{Wait: humanDuration(le.RetryAfter), Until: s.clock(s.h.now().Add(le.RetryAfter)), RD: rd, Locked: errors.Is(le, ErrLocked)}
	if !d.Locked {
		_, d.Pending = s.verifyData(r.Context(), id, formData{RD: rd})
	}
	e.WriteHeader(w)
	s.h.pages.Render(w, e.Status, "locked", s.page(id, e.Title, e.Msg, d))
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
	id, ok := s.identify(w, r, false)
	if !ok || !s.postForm(w, r, id) {
		return
	}
	f := s.form(id, r.PostForm.Get("rd"))
	g, err := s.Verify(r.Context(), id, r.PostForm.Get("code"), meta(r))
	if err == nil {
		s.cfg.Tokens.SetCookie(w, g)
		http.Redirect(w, r, f.RD, http.StatusSeeOther)
		return
	}
	e := errorFor(opVerify, err)
	if le, ok := errors.AsType[*LimitError](err); ok {
		s.renderLimited(w, r, id, e, le, f.RD)
		return
	}
	switch e.Code {
	case "invalid_otp":
		d, _ := s.verifyData(r.Context(), id, f)
		d.Error, d.Warn = e.Msg, strings.Contains(e.Msg, "after that")
		if w := s.failuresWarning(err); w != "" {
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

// humanDuration says d in words a person reads at a glance, rounded up:
// "30 seconds", "15 minutes", "2 hours". It is the one humaniser, for the
// locked page's wait and the mail's code lifetime (which also gives the
// exact clock time).
func humanDuration(d time.Duration) string {
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d < time.Minute:
		return plural(max(1, int(math.Ceil(d.Seconds()))), "second")
	case d < time.Hour:
		return plural(int(math.Ceil(d.Minutes())), "minute")
	default:
		return plural(int(math.Ceil(d.Hours())), "hour")
	}
}
