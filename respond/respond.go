// Package respond is how stepgate answers a client itself rather than
// forwarding: it tells browsers from API clients (SPEC §5), sets the safe
// headers every stepgate page carries, and renders error pages or JSON.
package respond

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
)

// IsAPI reports whether r is an API request (SPEC §5): it carries
// Authorization: Bearer, or X-Requested-With: XMLHttpRequest, or no Accept,
// or an Accept without text/html.
func IsAPI(r *http.Request) bool {
	if len(r.Header.Get("Authorization")) >= 7 && strings.EqualFold(r.Header.Get("Authorization")[:7], "bearer ") {
		return true
	}
	if strings.EqualFold(r.Header.Get("X-Requested-With"), "XMLHttpRequest") {
		return true
	}
	accept := r.Header.Values("Accept")
	if len(accept) == 0 {
		return true
	}
	for _, a := range accept {
		if strings.Contains(strings.ToLower(a), "text/html") {
			return false
		}
	}
	return true
}

// CSP is the Content-Security-Policy of every stepgate page: no scripts,
// styles only from stepgate itself, never framed.
const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ScriptCSP is CSP for the passkey pages: also the one first-party script
// (script-src 'self', never inline) and its calls to stepgate's own API
// (connect-src 'self').
const ScriptCSP = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// SecureHeaders sets the headers every stepgate response carries.
func SecureHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
}

// JSON writes v as JSON with status.
func JSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	SecureHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// APIError is the JSON body of every API error (SPEC §5).
type APIError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// Link is an optional link on an error page.
type Link struct {
	URL  string
	Text string
}

// PageData is what every page template receives; pages add their own
// fields through Data.
type PageData struct {
	Title   string
	Message string
	Prefix  string
	Link    *Link
	Data    any
	// Script is the path of the page's one first-party script below the
	// prefix ("/passkey.js"); "" means none. It switches the page to
	// ScriptCSP.
	Script string
	// App is the protected site's name (ui.app_name), for the title and
	// the heading; set by Render from Pages.SetApp. "" names none.
	App string
	// Logo is the path of the site's logo below the prefix ("/logo"), or
	// "" for none; set by Render from Pages.SetApp.
	Logo string
	// User says who is signed in ("demo (d***o@example.org)"); "" shows
	// nothing.
	User string
	// Back is the way back to where the user came from (the cleaned rd)
	// or to "/"; nil shows none.
	Back *Link
	// Notice is a confirmation of what just happened ("Second step
	// removed."); "" shows none.
	Notice string
}

// Pages renders the page templates parsed once from an fs.FS.
type Pages struct {
	pages  map[string]*template.Template
	prefix string
	log    *slog.Logger
	app    string // ui.app_name; "" for none
	logo   string // logo path below the prefix; "" for none
}

// SetApp names the protected site (ui.app_name) and its logo path below
// the prefix ("" for none) on every page. Call it before serving.
func (p *Pages) SetApp(name, logo string) {
	p.app, p.logo = name, logo
}

// ParsePages parses layout.html with each named page ("error" reads
// error.html). It fails when a page is missing or does not parse.
func ParsePages(fsys fs.FS, prefix string, log *slog.Logger, names ...string) (*Pages, error) {
	if log == nil {
		log = slog.Default()
	}
	p := &Pages{pages: make(map[string]*template.Template), prefix: prefix, log: log}
	for _, n := range append([]string{"error"}, names...) {
		t, err := template.ParseFS(fsys, "layout.html", n+".html")
		if err != nil {
			return nil, fmt.Errorf("parse page %s: %w", n, err)
		}
		p.pages[n] = t
	}
	return p, nil
}

// Render writes page name with status. It renders into a buffer first so a
// template error never sends half a page.
func (p *Pages) Render(w http.ResponseWriter, status int, name string, d PageData) {
	d.Prefix, d.App, d.Logo = p.prefix, p.app, p.logo
	var buf bytes.Buffer
	t, ok := p.pages[name]
	if !ok {
		p.log.Error("unknown page", "page", name)
		status, t = http.StatusInternalServerError, p.pages["error"]
		d = PageData{Title: "Something went wrong", Message: "Please try again.", Prefix: p.prefix, App: p.app, Logo: p.logo}
	}
	if err := t.ExecuteTemplate(&buf, "layout", d); err != nil {
		p.log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	SecureHeaders(w.Header())
	if d.Script != "" {
		w.Header().Set("Content-Security-Policy", ScriptCSP)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", fmt.Sprint(buf.Len()))
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// HTTPError is an answer stepgate gives itself: what the user sees
// (Status, Code, Title, Msg, Link) kept apart from what is logged (Err),
// in the shape of tailscale's tsweb.HTTPError (STYLE 5).
type HTTPError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the API "error" value (SPEC §5), such as
	// "temporarily_unavailable".
	Code string
	// Title heads the error page.
	Title string
	// Msg is safe for users: the page's text and, unless APIMsg is set,
	// the API's error_description. Never an internal error.
	Msg string
	// APIMsg is the API's error_description when it differs from Msg
	// (shorter, for machines); "" means Msg.
	APIMsg string
	// Link is an optional link on the page; nil means none.
	Link *Link
	// Header is added to the response (Retry-After); nil means none.
	Header http.Header
	// Op names what failed, for the log ("send code"); "" means
	// "request".
	Op string
	// Err is the cause, logged at error level and never shown; nil means
	// nothing to log (the refusal is the outcome, not a failure).
	Err error
}

func (e *HTTPError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return e.Msg
}

func (e *HTTPError) Unwrap() error { return e.Err }

// APIDescription is the API's error_description.
func (e *HTTPError) APIDescription() string {
	if e.APIMsg != "" {
		return e.APIMsg
	}
	return e.Msg
}

// WriteHeader adds e.Header to w's headers.
func (e *HTTPError) WriteHeader(w http.ResponseWriter) {
	for k, vs := range e.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
}

// LogCause logs e.Err, when there is one, at error level.
func (e *HTTPError) LogCause(log *slog.Logger, attrs ...any) {
	if e.Err == nil {
		return
	}
	op := e.Op
	if op == "" {
		op = "request"
	}
	log.Error(op+" failed", append(attrs, "err", e.Err)...)
}

// WriteJSON logs e's cause and answers with an APIError.
func (e *HTTPError) WriteJSON(w http.ResponseWriter, log *slog.Logger) {
	e.LogCause(log)
	e.WriteHeader(w)
	JSON(w, e.Status, APIError{Error: e.Code, Description: e.APIDescription()})
}

// Error logs e's cause and answers with the error page for browsers and
// an APIError for API clients.
func (p *Pages) Error(w http.ResponseWriter, r *http.Request, e *HTTPError) {
	if IsAPI(r) {
		e.WriteJSON(w, p.log)
		return
	}
	e.LogCause(p.log)
	e.WriteHeader(w)
	p.Render(w, e.Status, "error", PageData{Title: e.Title, Message: e.Msg, Link: e.Link})
}
