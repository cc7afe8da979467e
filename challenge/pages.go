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
	Error      string // why the last code was refused
	Dead       bool   // no code is pending: only "send a new code" helps
}

// statusData is the status page's Data.
type statusData struct {
	formData
	Subject   string
	Email     string
	HasFactor bool
	AuthTime  string
	ExpiresAt string
}

// lockedData is the 429 page's Data.
type lockedData struct {
	Wait string // "15 minutes"
	RD   string
}

// maskEmail shows the first character of the local part and the domain:
// "j***@example.com" (SPEC §6), enough to recognise one's own address
// without disclosing it to someone looking over the shoulder.
func maskEmail(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "***"
	}
	r, _ := utf8.DecodeRuneInString(addr)
	return string(r) + "***" + addr[at:]
}

func maskEmails(addrs []string) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, maskEmail(a))
	}
	return out
}

func (s *Service) form(id identity.Identity, rd string) formData {
	return formData{CSRF: csrfToken(s.h.csrfKey, id), RD: respond.CleanRedirect(rd)}
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
		s.renderLimited(w, e, le, f.RD)
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
		s.h.log.Warn("csrf token refused", "sub", id.Subject, "client", r.RemoteAddr, "path", r.URL.Path)
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
		s.sendFailed(w, r, err, rd, back)
		return
	}
	http.Redirect(w, r, s.cfg.Prefix+"/verify?rd="+url.QueryEscape(rd), http.StatusSeeOther)
}

// sendFailed renders a failed Send from errorFor: the locked page with
// Retry-After when throttled or locked, else an error page linking back to
// the address choice (SPEC §9: never "code sent").
func (s *Service) sendFailed(w http.ResponseWriter, r *http.Request, err error, rd string, back *respond.Link) {
	e := errorFor(opSend, err)
	if le, ok := errors.AsType[*LimitError](err); ok {
		s.renderLimited(w, e, le, rd)
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

// lockedPage is the 429 page of e (from errorFor) for le.
func lockedPage(e *respond.HTTPError, le *LimitError, rd string) respond.PageData {
	return respond.PageData{Title: e.Title, Message: e.Msg, Data: lockedData{Wait: humanDuration(le.RetryAfter), RD: rd}}
}

func (s *Service) renderLimited(w http.ResponseWriter, e *respond.HTTPError, le *LimitError, rd string) {
	e.WriteHeader(w)
	s.h.pages.Render(w, e.Status, "locked", lockedPage(e, le, rd))
}

func verifyPage(f formData, sentTo string, codeLen int, errMsg string, dead bool) respond.PageData {
	return respond.PageData{Title: "Enter your code", Data: verifyData{
		formData: f, SentTo: sentTo, CodeLength: codeLen, Error: errMsg, Dead: dead,
	}}
}

// sentTo is the masked address of id's pending code, or "" when none is
// pending or the store cannot tell (the page then says it less precisely).
func (s *Service) sentTo(ctx context.Context, id identity.Identity) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := s.cfg.Store.PeekCode(ctx, codeKey(id.Subject, id.Session))
	if err != nil || c.Email == "" {
		return ""
	}
	return maskEmail(c.Email)
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
	s.h.pages.Render(w, http.StatusOK, "verify", verifyPage(f, s.sentTo(r.Context(), id), s.codeLen(), "", false))
}

// attemptsLeftMessage is the refusal of a wrong code.
func attemptsLeftMessage(n int) string {
	if n == 1 {
		return "That code is not right. 1 attempt left."
	}
	return fmt.Sprintf("That code is not right. %d attempts left.", n)
}

const deadCodeMessage = "This code is no longer valid. Ask for a new one."

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
		s.renderLimited(w, e, le, f.RD)
		return
	}
	switch e.Code {
	case "invalid_otp":
		s.h.pages.Render(w, e.Status, "verify", verifyPage(f, s.sentTo(r.Context(), id), s.codeLen(), e.Msg, false))
	case "expired_otp":
		s.h.pages.Render(w, e.Status, "verify", verifyPage(f, "", s.codeLen(), e.Msg, true))
	default:
		s.h.pages.Error(w, r, e)
	}
}

// timeFormat shows times in UTC: the server cannot know the reader's zone
// without JavaScript, and a zone-less time would mislead.
const timeFormat = "2 Jan 2006, 15:04 UTC"

func statusPage(f formData, id identity.Identity, g secondfactor.Grant, has bool) respond.PageData {
	d := statusData{formData: f, Subject: id.Subject, HasFactor: has}
	if len(id.Emails) > 0 {
		d.Email = id.Emails[0]
	}
	if has {
		d.AuthTime = g.AuthTime.UTC().Format(timeFormat)
		d.ExpiresAt = g.ExpiresAt.UTC().Format(timeFormat)
	}
	return respond.PageData{Title: "Your sign-in", Data: d}
}

// serveStatus is GET / (SPEC §6): who is signed in and whether a second
// factor is present, with a form to drop it.
func (s *Service) serveStatus(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	g, has := s.cfg.Tokens.Check(r, id, s.cfg.Tokens.TTL())
	rd := r.URL.Query().Get("rd")
	if rd == "" {
		rd = s.cfg.Prefix + "/"
	}
	s.h.pages.Render(w, http.StatusOK, "status", statusPage(s.form(id, rd), id, g, has))
}

// serveLogout is POST /logout (csrf, rd): it revokes the second factor's
// token id, clears the cookie and answers 303 to rd. When revocation fails
// the cookie is kept so that the user can try again: a cleared cookie
// would hide a token that still works.
func (s *Service) serveLogout(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok || !s.postForm(w, r, id) {
		return
	}
	if g, has := s.cfg.Tokens.Check(r, id, s.cfg.Tokens.TTL()); has {
		ctx, cancel := context.WithTimeout(withMeta(r.Context(), meta(r)), 5*time.Second)
		defer cancel()
		if err := s.Revoke(ctx, g); err != nil {
			e := errorFor(opRevoke, err)
			e.Link = &respond.Link{URL: s.cfg.Prefix + "/", Text: "Back to your sign-in status"}
			s.h.pages.Error(w, r, e)
			return
		}
	}
	s.cfg.Tokens.ClearCookie(w)
	http.Redirect(w, r, respond.CleanRedirect(r.PostForm.Get("rd")), http.StatusSeeOther)
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
