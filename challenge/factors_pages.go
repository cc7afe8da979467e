package challenge

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/stepgate/stepgate/factors/totp"
	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
)

// factorRow is one line of the factors page.
type factorRow struct {
	ID, Type, Name, Added, LastUsed string
	Pending                         bool
}

// factorsData is the factors page's Data.
type factorsData struct {
	formData
	Factors []factorRow
	// Fresh: the request holds a second factor from the last FreshFactor,
	// so adding an authenticator app is offered; else a link to confirm
	// first.
	Fresh bool
	// CanRemove: the request may remove factors (freshFor: once the user
	// has a passkey, only a fresh passkey may), so Remove buttons are
	// shown. A button that could only lead back to a step-up is not.
	CanRemove bool
	// WithPasskey: the user has a passkey, so removing needs one;
	// RemoveConfirm is then the passkey step-up that comes back here.
	WithPasskey   bool
	RemoveConfirm string
	Confirm       string // the challenge link that comes back here
	CanAdd        bool   // totp is enabled
	Passkeys      string // the passkeys page, when passkeys are enabled
	Notice        string
	FreshMins     int
}

// totpSetupData is the setup page's Data.
type totpSetupData struct {
	formData
	ID, Name, Secret, QR string
	CodeLength           int
	Error                string
}

func (s *Service) factorsURL() string { return s.cfg.Prefix + "/factors" }

// serveFactors is GET /factors: the user's factors with add and remove.
func (s *Service) serveFactors(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	list, err := s.ListFactors(r.Context(), id)
	if err != nil {
		s.h.pages.Error(w, r, errorFor(opFactors, err))
		return
	}
	d := factorsData{
		formData:  s.form(id, s.factorsURL()),
		Fresh:     s.fresh(r, id),
		CanRemove: s.freshFor(r, id),
		Confirm:   s.cfg.Prefix + "/challenge?rd=" + url.QueryEscape(s.factorsURL()),
		CanAdd:    s.methodEnabled("totp") && s.cfg.Factors != nil,
		FreshMins: freshMins(),
	}
	if has, err := s.HasPasskey(r.Context(), id); err == nil && has {
		d.WithPasskey = true
		d.RemoveConfirm = s.removeConfirmURL()
	}
	if s.cfg.Passkeys != nil {
		d.Passkeys = s.cfg.Prefix + "/factors/passkey"
	}
	switch r.URL.Query().Get("done") {
	case "added":
		d.Notice = "Your authenticator app was added."
	case "removed":
		d.Notice = "The factor was removed."
	}
	for _, f := range list {
		row := factorRow{ID: f.ID, Type: typeLabel(f.Type), Name: f.Name, Added: time.Unix(f.CreatedAt, 0).UTC().Format(timeFormat), LastUsed: "never", Pending: f.Pending}
		if f.LastUsedAt != 0 {
			row.LastUsed = time.Unix(f.LastUsedAt, 0).UTC().Format(timeFormat)
		}
		d.Factors = append(d.Factors, row)
	}
	s.h.pages.Render(w, http.StatusOK, "factors", respond.PageData{Title: "Your second factors", Data: d})
}

// removeConfirmURL is the passkey step-up that returns to the factors
// page: what a user with a passkey needs before removing a factor.
func (s *Service) removeConfirmURL() string {
	return s.cfg.Prefix + "/passkey?rd=" + url.QueryEscape(s.factorsURL())
}

// needFresh answers for a change without a fresh second factor (fresh
// false): back to the challenge, returning to the factors page.
func (s *Service) needFresh(w http.ResponseWriter, r *http.Request, fresh bool) bool {
	if fresh {
		return false
	}
	http.Redirect(w, r, s.cfg.Prefix+"/challenge?rd="+url.QueryEscape(s.factorsURL()), http.StatusSeeOther)
	return true
}

// serveBeginTOTP is POST /factors/totp (name, csrf): a pending factor,
// then 303 to its setup page.
func (s *Service) serveBeginTOTP(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok || !s.postForm(w, r, id) || s.needFresh(w, r, s.fresh(r, id)) {
		return
	}
	e, err := s.BeginTOTP(r.Context(), id, r.PostForm.Get("name"), meta(r))
	if err != nil {
		he := errorFor(opEnrol, err)
		he.Link = &respond.Link{URL: s.factorsURL(), Text: "Back to your second factors"}
		s.h.pages.Error(w, r, he)
		return
	}
	http.Redirect(w, r, s.factorsURL()+"/totp/"+e.ID, http.StatusSeeOther)
}

// serveSetupTOTP is GET /factors/totp/{id}: the QR code, the secret and
// the code form of a pending enrolment.
func (s *Service) serveSetupTOTP(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	s.renderSetup(w, r, id, r.PathValue("id"), http.StatusOK, "")
}

func (s *Service) renderSetup(w http.ResponseWriter, r *http.Request, id identity.Identity, fid string, status int, errMsg string) {
	e, v, err := s.PendingTOTP(r.Context(), id, fid)
	if err != nil {
		he := errorFor(opEnrol, err)
		he.Link = &respond.Link{URL: s.factorsURL(), Text: "Back to your second factors"}
		s.h.pages.Error(w, r, he)
		return
	}
	d := totpSetupData{
		formData: s.form(id, s.factorsURL()), ID: e.ID, Name: v.Name, Secret: e.Secret,
		QR: s.factorsURL() + "/totp/" + e.ID + "/qr.png", CodeLength: max(s.cfg.TOTP.Digits, 6), Error: errMsg,
	}
	s.h.pages.Render(w, status, "totp_setup", respond.PageData{Title: "Add an authenticator app", Data: d})
}

// serveQR is GET /factors/totp/{id}/qr.png: the otpauth URI of a pending
// enrolment as a PNG, same-origin so the CSP's img-src 'self' allows it.
func (s *Service) serveQR(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	e, _, err := s.PendingTOTP(r.Context(), id, r.PathValue("id"))
	if err != nil {
		s.h.pages.Error(w, r, errorFor(opEnrol, err))
		return
	}
	png, err := totp.QR(e.URI, 256)
	if err != nil {
		s.h.pages.Error(w, r, errorFor(opEnrol, storeErr(err)))
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(png)
}

// serveConfirmTOTP is POST /factors/totp/{id} (code, csrf).
func (s *Service) serveConfirmTOTP(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok || !s.postForm(w, r, id) {
		return
	}
	fid := r.PathValue("id")
	err := s.ConfirmTOTP(r.Context(), id, fid, r.PostForm.Get("code"), meta(r))
	if err == nil {
		http.Redirect(w, r, s.factorsURL()+"?done=added", http.StatusSeeOther)
		return
	}
	e := errorFor(opEnrol, err)
	if le, ok := errors.AsType[*LimitError](err); ok {
		s.renderLimited(w, r, id, e, le, s.factorsURL())
		return
	}
	if e.Code == "invalid_otp" {
		s.renderSetup(w, r, id, fid, e.Status, e.Msg)
		return
	}
	e.Link = &respond.Link{URL: s.factorsURL(), Text: "Back to your second factors"}
	s.h.pages.Error(w, r, e)
}

// serveRemoveFactor is POST /factors/remove/{id} (csrf). Freshness is
// freshFor's: a user with a passkey removes factors only after a passkey,
// or an email code could remove the passkey and then add another.
// A user with a passkey and a stale form (the passkey step-up older than
// FreshFactor) is sent to the passkey step-up, the one that can succeed.
func (s *Service) serveRemoveFactor(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok || !s.postForm(w, r, id) {
		return
	}
	if !s.freshFor(r, id) {
		if has, err := s.HasPasskey(r.Context(), id); err == nil && has {
			http.Redirect(w, r, s.removeConfirmURL(), http.StatusSeeOther)
			return
		}
		s.needFresh(w, r, false)
		return
	}
	if err := s.RemoveFactor(r.Context(), id, r.PathValue("id"), meta(r)); err != nil {
		e := errorFor(opRemove, err)
		e.Link = &respond.Link{URL: s.factorsURL(), Text: "Back to your second factors"}
		s.h.pages.Error(w, r, e)
		return
	}
	http.Redirect(w, r, s.factorsURL()+"?done=removed", http.StatusSeeOther)
}
