package challenge

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/templates"
)

// Body limits. Forms and API calls here are tiny; anything larger is
// refused with 413 before it is read.
const (
	maxFormBytes = 16 << 10
	maxJSONBytes = 4 << 10
)

// pageNames are the pages parsed besides error.html.
var pageNames = []string{"challenge", "verify", "status", "locked", "passkey", "passkey_add", "factors", "totp_setup"}

// handlerState is the Handler's parsed pages and routes, built once by
// initHandler, which New calls after validating the config.
type handlerState struct {
	// pages renders every HTML page; parsed once from Config.Templates
	// or templates.FS.
	pages *respond.Pages
	// style is style.css, read once and served at Prefix+"/style.css".
	style []byte
	// script is passkey.js, served at Prefix+"/passkey.js".
	script []byte
	// mux routes paths relative to the prefix ("/challenge").
	mux *http.ServeMux
	// csrfKey is HMAC(secret, "stepgate csrf v1").
	csrfKey []byte
	// cop refuses cross-origin unsafe requests (Sec-Fetch-Site, Origin).
	cop *http.CrossOriginProtection
	// log is Config.Logger or slog.Default().
	log *slog.Logger
	// now is Config.Now or time.Now.
	now func() time.Time
}

// initHandler parses the pages (Config.Templates or the embedded ones).
func (s *Service) initHandler() error {
	fsys := s.cfg.Templates
	if fsys == nil {
		fsys = templates.FS
	}
	log := s.cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	now := s.cfg.Now
	if now == nil {
		now = time.Now
	}
	pages, err := respond.ParsePages(fsys, s.cfg.Prefix, log, pageNames...)
	if err != nil {
		return err
	}
	logo := ""
	if len(s.cfg.UI.Logo) > 0 {
		logo = "/logo"
	}
	pages.SetApp(s.cfg.UI.AppName, logo)
	style, err := fs.ReadFile(fsys, "style.css")
	if err != nil {
		return err
	}
	script, err := fs.ReadFile(fsys, "passkey.js")
	if err != nil {
		return err
	}
	h := &handlerState{
		pages:   pages,
		style:   style,
		script:  script,
		mux:     http.NewServeMux(),
		csrfKey: deriveKey(s.cfg.Secret, csrfKeyLabel),
		cop:     http.NewCrossOriginProtection(),
		log:     log,
		now:     now,
	}
	routes := map[string]http.HandlerFunc{
		"GET /{$}":                      s.serveStatus,
		"GET /style.css":                s.serveStyle,
		"GET /logo":                     s.serveLogo,
		"GET /challenge":                s.serveChallenge,
		"POST /send":                    s.serveSend,
		"GET /verify":                   s.serveVerifyForm,
		"POST /verify":                  s.serveVerify,
		"POST /logout":                  s.serveLogout,
		"GET /api/trigger":              s.apiTrigger,
		"POST /api/email-otp":           s.apiSend,
		"PUT /api/email-otp":            s.apiVerify,
		"GET /api/validate":             s.apiValidate,
		"PUT /api/totp":                 s.apiTOTP,
		"GET /api/factors":              s.apiFactors,
		"POST /api/factors/totp":        s.apiBeginTOTP,
		"PUT /api/factors/totp/{id}":    s.apiConfirmTOTP,
		"DELETE /api/factors/{id}":      s.apiRemoveFactor,
		"POST /totp":                    s.serveTOTP,
		"GET /factors":                  s.serveFactors,
		"POST /factors/totp":            s.serveBeginTOTP,
		"GET /factors/totp/{id}":        s.serveSetupTOTP,
		"GET /factors/totp/{id}/qr.png": s.serveQR,
		"POST /factors/totp/{id}":       s.serveConfirmTOTP,
		"POST /factors/remove/{id}":     s.serveRemoveFactor,
	}
	for p, f := range s.passkeyRoutes() {
		routes[p] = f
	}
	for p, f := range routes {
		h.mux.Handle(p, f)
	}
	s.h = h
	return nil
}

// Handler serves stepgate's pages and API; it expects the full path
// (with Prefix) and answers 404 outside it.
func (s *Service) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

// serveHTTP sets the safe headers and the body limit on every response,
// strips the prefix, refuses cross-origin unsafe requests and routes.
func (s *Service) serveHTTP(w http.ResponseWriter, r *http.Request) {
	respond.SecureHeaders(w.Header())
	h := s.h
	if h == nil {
		// New was not called; never panic on the request path.
		http.Error(w, "stepgate is not configured", http.StatusServiceUnavailable)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, s.cfg.Prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		s.notFound(w, r)
		return
	}
	if rest == "" {
		rest = "/"
	}
	// A path the ServeMux would redirect to its clean form ("//x", "/a/../b")
	// is refused: the mux only sees the part below the prefix, so its
	// redirect would leave the prefix.
	if clean := path.Clean(rest); clean != rest && clean+"/" != rest {
		s.notFound(w, r)
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	}
	// Cross-origin POST/PUT are refused before anything else (Fetch
	// Metadata, then Origin against Host): defence in depth on top of the
	// session-bound CSRF tokens of the forms and the JSON content type the
	// API requires.
	if err := h.cop.Check(r); err != nil {
		h.pages.Error(w, r, &respond.HTTPError{Status: http.StatusForbidden, Code: "cross_origin", Title: "Request refused",
			Msg: "This request came from another site and was refused."})
		return
	}
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = rest, ""
	r2.URL = &u
	handler, pattern := h.mux.Handler(r2)
	if pattern == "" {
		// Let the mux tell 404 from 405 (with its Allow header), then
		// answer with our own page or JSON.
		pw := &probeWriter{h: make(http.Header)}
		handler.ServeHTTP(pw, r2)
		if pw.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", pw.h.Get("Allow"))
			h.pages.Error(w, r, &respond.HTTPError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Title: "Method not allowed",
				Msg: "This address does not accept that method."})
			return
		}
		s.notFound(w, r)
		return
	}
	// The mux serves, not handler: only ServeMux.ServeHTTP sets the
	// pattern's path values ({id}).
	h.mux.ServeHTTP(w, r2)
}

// probeWriter records the status and headers of the mux's own 404/405
// handlers and drops their plain-text body.
type probeWriter struct {
	h      http.Header
	status int
}

func (p *probeWriter) Header() http.Header { return p.h }
func (p *probeWriter) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}
func (p *probeWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

func (s *Service) notFound(w http.ResponseWriter, r *http.Request) {
	s.h.pages.Error(w, r, &respond.HTTPError{Status: http.StatusNotFound, Code: "not_found", Title: "Not found",
		Msg: "There is nothing at this address.", Link: &respond.Link{URL: s.cfg.Prefix + "/", Text: "Your sign-in status"}})
}

// serveLogo serves UI.Logo (404 without one).
func (s *Service) serveLogo(w http.ResponseWriter, r *http.Request) {
	if len(s.cfg.UI.Logo) == 0 {
		s.notFound(w, r)
		return
	}
	w.Header().Set("Content-Type", s.cfg.UI.LogoType)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.ServeContent(w, r, "logo", time.Time{}, bytes.NewReader(s.cfg.UI.Logo))
}

// serveStyle serves style.css, the only asset (CSP style-src 'self').
func (s *Service) serveStyle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	http.ServeContent(w, r, "style.css", time.Time{}, strings.NewReader(string(s.h.style)))
}

// identify returns the primary identity or answers as SPEC §5 says for a
// request without one: API clients get 401 with a Bearer challenge,
// browsers asking with GET are sent to login_url with {rd} set to this
// page, others get a 401 page. api forces the API answer (the /api routes).
// Only a missing or invalid credential means "sign in"; any other failure
// (a JWKS outage) is a 503, so a broken identity provider does not loop
// the browser through the login page.
func (s *Service) identify(w http.ResponseWriter, r *http.Request, api bool) (identity.Identity, bool) {
	var id identity.Identity
	err := errors.New("no authenticator configured")
	if s.cfg.Authenticate != nil {
		id, err = s.cfg.Authenticate(r)
	}
	if err == nil && id.Subject != "" {
		return id, true
	}
	if err != nil && !errors.Is(err, identity.ErrNoCredential) && !errors.Is(err, identity.ErrInvalid) {
		e := &respond.HTTPError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Title: "Try again shortly",
			Msg: "Your sign-in could not be checked right now. Please try again in a moment.", APIMsg: "identity could not be checked; try again"}
		if errors.Is(err, identity.ErrBusy) {
			// Shed by the verification budget: counted in
			// stepgate_token_verifications_shed_total, not logged (a flood
			// would fill the log).
			e.Header = http.Header{"Retry-After": {"1"}}
		} else {
			// The cause is logged at warn, not as a failure of ours.
			s.h.log.Warn("identity unavailable", "err", err, "client", r.RemoteAddr)
		}
		if api {
			e.WriteJSON(w, s.h.log)
		} else {
			s.h.pages.Error(w, r, e)
		}
		return id, false
	}
	if api || respond.IsAPI(r) {
		(&respond.HTTPError{Status: http.StatusUnauthorized, Code: "unauthenticated", Msg: "sign in first",
			Header: http.Header{"Www-Authenticate": {`Bearer realm="stepgate"`}}}).WriteJSON(w, s.h.log)
		return id, false
	}
	if s.cfg.LoginURL != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		http.Redirect(w, r, s.loginURL(r), http.StatusFound)
		return id, false
	}
	var link *respond.Link
	if s.cfg.LoginURL != "" {
		link = &respond.Link{URL: s.loginURL(r), Text: "Sign in"}
	}
	s.h.pages.Render(w, http.StatusUnauthorized, "error", respond.PageData{
		Title: "Sign in first", Message: "You need to be signed in to continue.", Link: link,
	})
	return id, false
}

// loginURL is LoginURL with {rd} = this page's path and query (prefix
// included), query-escaped (SPEC §3 identity.login_url).
func (s *Service) loginURL(r *http.Request) string {
	back := s.cfg.Prefix + r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		back += "?" + r.URL.RawQuery
	}
	return strings.ReplaceAll(s.cfg.LoginURL, "{rd}", url.QueryEscape(respond.CleanRedirect(back)))
}

// meta is the audit context of r. The request id is the one the proxy set
// on the request it handed over (X-Request-Id, proxy.Gate.serveInternal);
// the client is the peer's address without its port, as the proxy logs it.
// Rule stays empty: pages under the prefix are not decided by a rule. The
// user agent is the client's, and Handler does not rely on being mounted
// behind the gate for the request id, so both are capped and stripped of
// control characters (respond.LogText), as every logged client value is.
func meta(r *http.Request) Meta {
	client := r.RemoteAddr
	if h, _, err := net.SplitHostPort(client); err == nil {
		client = h
	}
	return Meta{
		RequestID: respond.LogText(r.Header.Get("X-Request-Id"), respond.MaxLoggedRequestID),
		Client:    client,
		UserAgent: respond.LogText(r.UserAgent(), respond.MaxLoggedUserAgent),
	}
}
