package challenge

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/secondfactor"
)

// This file holds the chooser (GET /challenge): the methods a page accepts
// that the user has, strongest first, and the authenticator-app form it
// carries (POST /totp), which comes back to the chooser when refused.

// emailOption is one address on the challenge page.
type emailOption struct {
	Index   int
	Masked  string
	Checked bool
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
	c, ok := s.postCode(w, r, opTOTP, s.VerifyTOTP)
	if !ok {
		return
	}
	switch c.e.Code {
	case "invalid_otp", "replayed_otp":
		methods, merr := s.methodsFor(r, c.id, c.f.RD)
		if merr != nil {
			s.h.pages.Error(w, r, errorFor(opFactors, merr))
			return
		}
		s.renderChallenge(w, r, c.f, c.id, methods, c.e.Status, c.e.Msg)
	default:
		s.h.pages.Error(w, r, c.e)
	}
}
