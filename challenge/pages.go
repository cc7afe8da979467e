package challenge

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/secondfactor"
)

// This file holds what every page of a signed-in user shares: the form
// fields, the page frame, masked addresses, times in words, the posted
// form's checks and the locked page.

// formData is what every page with a form needs.
type formData struct {
	CSRF string
	RD   string // cleaned return path
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

// refusedCode is a posted code that postCode did not accept and did not
// answer: the caller renders its own page from it.
type refusedCode struct {
	id  identity.Identity
	f   formData
	err error              // the ceremony's error, for details errorFor drops
	e   *respond.HTTPError // errorFor(op, err)
}

// postCode is what POST /totp and POST /verify share: the user, the form
// and its CSRF token are checked, the posted code goes to check, a grant
// becomes the cookie and a 303 to rd, and a limit the locked page. It
// returns ok false when it has answered, else the refusal.
func (s *Service) postCode(w http.ResponseWriter, r *http.Request, o op,
	check func(context.Context, identity.Identity, string, Meta) (secondfactor.Grant, error)) (refusedCode, bool) {
	id, ok := s.identify(w, r, false)
	if !ok || !s.postForm(w, r, id) {
		return refusedCode{}, false
	}
	f := s.form(id, r.PostForm.Get("rd"))
	g, err := check(r.Context(), id, r.PostForm.Get("code"), meta(r))
	if err == nil {
		s.cfg.Tokens.SetCookie(w, g)
		http.Redirect(w, r, f.RD, http.StatusSeeOther)
		return refusedCode{}, false
	}
	e := errorFor(o, err)
	if le, ok := errors.AsType[*LimitError](err); ok {
		s.renderLimited(w, r, id, e, le, f.RD)
		return refusedCode{}, false
	}
	return refusedCode{id: id, f: f, err: err, e: e}, true
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
