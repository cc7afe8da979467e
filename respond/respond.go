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
}

// Pages renders the page templates parsed once from an fs.FS.
type Pages struct {
	pages  map[string]*template.Template
	prefix string
	log    *slog.Logger
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
	d.Prefix = p.prefix
	var buf bytes.Buffer
	t, ok := p.pages[name]
	if !ok {
		p.log.Error("unknown page", "page", name)
		status, t = http.StatusInternalServerError, p.pages["error"]
		d = PageData{Title: "Something went wrong", Message: "Please try again.", Prefix: p.prefix}
	}
	if err := t.ExecuteTemplate(&buf, "layout", d); err != nil {
		p.log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	SecureHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", fmt.Sprint(buf.Len()))
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// Error answers with an error page for browsers and an APIError for API
// clients. title and message are safe for users; never pass internal errors.
func (p *Pages) Error(w http.ResponseWriter, r *http.Request, status int, code, title, message string, link *Link) {
	if IsAPI(r) {
		JSON(w, status, APIError{Error: code, Description: message})
		return
	}
	p.Render(w, status, "error", PageData{Title: title, Message: message, Link: link})
}
