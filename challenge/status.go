package challenge

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/secondfactor"
)

// This file is the status page (GET {prefix}/): who is signed in, which
// second factor they hold, and the form that drops it (POST /logout).

// statusData is the status page's Data.
type statusData struct {
	formData
	Subject   string
	Email     string
	HasFactor bool
	AuthTime  string
	ExpiresAt string
	Areas     []areaStatus
}

// areaStatus is one step_up rule on the status page.
type areaStatus struct {
	Rule   string
	MaxAge string // "10 minutes"
	Until  string // "19:45 UTC (for 8 more minutes)"; "" when it no longer counts
}

// timeFormat is a full date and time in UTC, for the factors pages and
// mails that show one.
const timeFormat = "2 Jan 2006, 15:04 UTC"

// statusPage shows who is signed in, when the second step was given, and
// per step_up rule how long it still counts there. Times are in
// UI.TimeZone, named: the server cannot know the reader's zone without
// JavaScript, and a zone-less time would mislead.
func (s *Service) statusPage(f formData, id identity.Identity, g secondfactor.Grant, has bool) respond.PageData {
	d := statusData{formData: f, Subject: id.Subject, HasFactor: has}
	if len(id.Emails) > 0 {
		d.Email = id.Emails[0]
	}
	now := s.h.now()
	if has {
		d.AuthTime = s.clock(g.AuthTime) + " (" + humanDuration(now.Sub(g.AuthTime)) + " ago)"
		d.ExpiresAt = s.clock(g.ExpiresAt)
	}
	for _, a := range s.cfg.Areas {
		as := areaStatus{Rule: a.Rule, MaxAge: humanDuration(a.MaxAge)}
		if has {
			until := g.AuthTime.Add(a.MaxAge)
			if g.ExpiresAt.Before(until) {
				until = g.ExpiresAt
			}
			if until.After(now) {
				as.Until = fmt.Sprintf("%s (for %s more)", s.clock(until), humanDuration(until.Sub(now)))
			}
		}
		d.Areas = append(d.Areas, as)
	}
	return s.page(id, "Your sign-in", "", d)
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
	p := s.statusPage(s.form(id, rd), id, g, has)
	if r.URL.Query().Get("done") == "removed" && !has {
		p.Notice = "Second step removed. You are still signed in; pages that need it will ask for a new code."
	}
	p.Back = &respond.Link{URL: "/", Text: "Back to the home page"}
	if clean := respond.CleanRedirect(rd); clean != s.cfg.Prefix+"/" {
		p.Back = &respond.Link{URL: clean, Text: "Back to where you were"}
	}
	s.h.pages.Render(w, http.StatusOK, "status", p)
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
	rd := respond.CleanRedirect(r.PostForm.Get("rd"))
	if rd == s.cfg.Prefix+"/" {
		// Back to the status page, which then confirms the removal.
		rd += "?done=removed"
	}
	http.Redirect(w, r, rd, http.StatusSeeOther)
}
