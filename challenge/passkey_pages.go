package challenge

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/stepgate/stepgate/factors/passkey"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/secondfactor"
)

// passkeyScript is the script's path below the prefix.
const passkeyScript = "/passkey.js"

// passkeyData is the step-up page's Data.
type passkeyData struct {
	RD string
	// Others: the rule accepts other methods too, so the page links to them.
	Others bool
}

// passkeyItem is one passkey on the registration page.
type passkeyItem struct {
	Name, Added, LastUsed string
	Syncable, Synced      bool // backup_eligible, backup_state
	Cloned                bool
}

// passkeyAddData is the registration page's Data.
type passkeyAddData struct {
	Passkeys []passkeyItem
	Fresh    bool
	Confirm  string // the challenge, returning here
	Done     string // where to go once added
	// WithPasskey: the user has a passkey, so only a passkey confirms.
	WithPasskey bool
	FreshMins   int // FreshFactor in minutes
}

// pageTime formats a time for people (UTC).
func pageTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2 Jan 2006 15:04 UTC")
}

// serveScript is GET /passkey.js, the one script (CSP script-src 'self').
func (s *Service) serveScript(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	http.ServeContent(w, r, "passkey.js", time.Time{}, strings.NewReader(string(s.h.script)))
}

// servePasskey is GET /passkey?rd=: step-up with a passkey.
func (s *Service) servePasskey(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	rd := respond.CleanRedirect(r.URL.Query().Get("rd"))
	has, err := s.HasPasskey(r.Context(), id)
	if err != nil {
		s.h.pages.Error(w, r, passkeyError(err))
		return
	}
	if s.cfg.Passkeys == nil {
		s.h.pages.Error(w, r, passkeyError(errPasskeyNotEnabled))
		return
	}
	d := passkeyData{RD: rd, Others: s.othersAllowed(r, rd)}
	if !has {
		e := passkeyError(passkey.ErrNoPasskey)
		if d.Others {
			e.Link = &respond.Link{URL: s.cfg.Prefix + "/challenge?rd=" + url.QueryEscape(rd) + "&other=1", Text: "Use another way"}
		}
		s.h.pages.Error(w, r, e)
		return
	}
	s.h.pages.Render(w, http.StatusOK, "passkey", respond.PageData{
		Title: "Confirm it's you", Message: "This page needs a second step. Use the passkey on this device, your phone or your security key.",
		Data: d, Script: passkeyScript})
}

// othersAllowed reports whether the rule deciding rd accepts a method
// besides passkey (so the passkey page links to them).
func (s *Service) othersAllowed(r *http.Request, rd string) bool {
	for _, m := range s.ruleMethods(r, rd) {
		if m != secondfactor.MethodPasskey && s.methodEnabled(m) {
			return true
		}
	}
	return false
}

// ruleMethods are the methods the rule deciding rd accepts (every
// enabled one without RuleMethods or a rule's list).
func (s *Service) ruleMethods(r *http.Request, rd string) []string {
	if s.cfg.RuleMethods != nil {
		if ms := s.cfg.RuleMethods(r, rd); ms != nil {
			return ms
		}
	}
	if s.cfg.Methods == nil {
		return []string{secondfactor.MethodEmail}
	}
	return s.cfg.Methods
}

// ruleAllows reports whether the rule deciding rd accepts method.
func (s *Service) ruleAllows(r *http.Request, rd, method string) bool {
	return slices.Contains(s.ruleMethods(r, rd), method) && s.methodEnabled(method)
}

// serveAddPasskey is GET /factors/passkey: the user's passkeys (with
// their backup state) and, with a fresh second factor, the form to add one.
func (s *Service) serveAddPasskey(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, false)
	if !ok {
		return
	}
	rp, err := s.passkeys()
	if err != nil {
		s.h.pages.Error(w, r, passkeyError(err))
		return
	}
	list, err := rp.List(r.Context(), id.Subject)
	if err != nil {
		s.h.pages.Error(w, r, passkeyError(errPasskeyStore))
		return
	}
	d := passkeyAddData{
		Fresh:     s.freshFor(r, id),
		Confirm:   s.cfg.Prefix + "/challenge?rd=" + url.QueryEscape(s.cfg.Prefix+"/factors/passkey"),
		Done:      s.cfg.Prefix + "/factors/passkey",
		FreshMins: freshMins(),
	}
	for _, c := range list {
		if c.Factor.Confirmed && !c.Cloned {
			// Only a passkey adds another (freshFor).
			d.Confirm = s.cfg.Prefix + "/passkey?rd=" + url.QueryEscape(s.cfg.Prefix+"/factors/passkey")
			d.WithPasskey = true
		}
		d.Passkeys = append(d.Passkeys, passkeyItem{
			Name: c.Factor.Name, Added: pageTime(c.Factor.CreatedAt), LastUsed: pageTime(c.Factor.LastUsedAt),
			Syncable: c.BackupEligible, Synced: c.BackupState, Cloned: c.Cloned,
		})
	}
	msg := "A passkey lets you confirm it's you with this device's screen lock, your phone or a security key. It cannot be phished: it only works on this site."
	page := respond.PageData{Title: "Passkeys", Message: msg, Data: d}
	if d.Fresh {
		page.Script = passkeyScript
	}
	s.h.pages.Render(w, http.StatusOK, "passkey_add", page)
}
