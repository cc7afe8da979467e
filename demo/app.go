// Package demo is what `stepgate demo` puts around the proxy (SPEC §2): a
// sample "legacy app" upstream with a demo login, and a dev inbox that
// receives the verification mails instead of an SMTP server. Nothing here
// is used by `stepgate serve`.
package demo

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stepgate/stepgate/respond"
)

// The demo user. Two addresses show the challenge page's address choice.
const (
	User         = "demo"
	PrimaryEmail = "demo@example.com"
	BackupEmail  = "demo.backup@example.org"
)

// AppConfig configures the sample app.
type AppConfig struct {
	// HMACSecret signs the HS256 access tokens the demo login issues; the
	// proxy verifies them with the same key. Required, at least 32 bytes.
	HMACSecret []byte
	// Cookie is the access-token cookie. "" means access_token.
	Cookie string
	// Prefix is stepgate's reserved path, for links to its pages. "" means
	// /.stepup.
	Prefix string
	// TokenTTL is how long a demo login lasts. 0 means 8 hours.
	TokenTTL time.Duration
	// Logger receives template errors. Nil means slog.Default().
	Logger *slog.Logger
}

// App is the sample legacy app: it knows nothing about step-up and only
// shows what it received, so people see what stepgate hands an upstream
// (SPEC §7).
type App struct {
	cfg   AppConfig
	pages map[string]*template.Template
	css   []byte
	mux   *http.ServeMux
}

var _ http.Handler = (*App)(nil)

// maxFormBytes bounds the sample app's form bodies.
const maxFormBytes = 16 << 10

// NewApp checks c and parses the pages.
func NewApp(c AppConfig) (*App, error) {
	if len(c.HMACSecret) < 32 {
		return nil, errors.New("demo app: HMAC secret must be at least 32 bytes")
	}
	if c.Cookie == "" {
		c.Cookie = "access_token"
	}
	if c.Prefix == "" {
		c.Prefix = "/.stepup"
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = 8 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	a := &App{cfg: c, pages: map[string]*template.Template{}}
	for _, n := range []string{"home", "area", "payments", "login"} {
		t, err := template.ParseFS(files, "templates/app_layout.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("demo app: parse %s: %w", n, err)
		}
		a.pages[n] = t
	}
	css, err := files.ReadFile("templates/app.css")
	if err != nil {
		return nil, fmt.Errorf("demo app: %w", err)
	}
	a.css = css

	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", a.home)
	m.HandleFunc("GET /assets/app.css", a.style)
	m.HandleFunc("GET /login", a.loginPage)
	m.HandleFunc("POST /login", a.login)
	m.HandleFunc("POST /logout", a.logout)
	m.HandleFunc("GET /public", a.area("Public area", "Anyone may read this page; stepgate forwards it without asking who you are (action allow)."))
	m.HandleFunc("GET /account", a.area("Your account", "Only signed-in users reach this page (action authenticate). No second factor is needed."))
	m.HandleFunc("GET /admin/", a.area("Admin area", "This page needs a second factor no older than 10 minutes (action step_up, max_age 10m)."))
	m.HandleFunc("GET /admin", a.area("Admin area", "This page needs a second factor no older than 10 minutes (action step_up, max_age 10m)."))
	m.HandleFunc("GET /vault", a.area("Vault", "This page accepts only an authenticator app (factors: [totp]): an email code does not open it. X-Stepup-Method tells the app which factor was used."))
	m.HandleFunc("GET /payments", a.payments)
	m.HandleFunc("POST /payments", a.payments)
	a.mux = m
	return a, nil
}

// ServeHTTP serves the sample app.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	respond.SecureHeaders(w.Header())
	a.mux.ServeHTTP(w, r)
}

// received is one request header as the upstream got it.
type received struct {
	Name, Value string
}

// pageData is what every app page renders.
type pageData struct {
	Title    string
	Message  string
	Prefix   string
	User     string // X-Stepup-User, "" when stepgate forwarded no identity
	Headers  []received
	Path     string
	RD       string
	Payment  *payment
	FormErr  string
	Accounts []string
}

// payment is a submitted payment form.
type payment struct {
	To, Amount string
}

// shownHeaders are the request headers each page lists: stepgate's own
// (SPEC §7) and the forwarding headers.
var shownHeaders = []string{
	"X-Stepup-User", "X-Stepup-Email", "X-Stepup-Rule", "X-Stepup-Auth-Time", "X-Stepup-Method",
	"X-Stepup-Token", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
}

func (a *App) data(r *http.Request, title, msg string) pageData {
	d := pageData{Title: title, Message: msg, Prefix: a.cfg.Prefix, User: r.Header.Get("X-Stepup-User"), Path: r.URL.Path}
	for _, n := range shownHeaders {
		v := r.Header.Get(n)
		if v == "" {
			continue
		}
		switch n {
		case "X-Stepup-Token":
			// The token is a bearer credential: the page shows that it
			// arrived, not enough of it to reuse.
			if len(v) > 16 {
				v = v[:16] + "… (" + fmt.Sprint(len(v)) + " characters)"
			}
		case "X-Stepup-Auth-Time":
			var sec int64
			if _, err := fmt.Sscan(v, &sec); err == nil {
				v += " (" + time.Unix(sec, 0).UTC().Format(time.RFC1123) + ")"
			}
		}
		d.Headers = append(d.Headers, received{Name: n, Value: v})
	}
	return d
}

func (a *App) render(w http.ResponseWriter, status int, name string, d pageData) {
	var buf bytes.Buffer
	if err := a.pages[name].ExecuteTemplate(&buf, "layout", d); err != nil {
		a.cfg.Logger.Error("demo app: render", "page", name, "err", err)
		http.Error(w, "page error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (a *App) home(w http.ResponseWriter, r *http.Request) {
	a.render(w, http.StatusOK, "home", a.data(r, "Welcome", ""))
}

func (a *App) style(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	http.ServeContent(w, r, "app.css", time.Time{}, bytes.NewReader(a.css))
}

func (a *App) area(title, msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.render(w, http.StatusOK, "area", a.data(r, title, msg))
	}
}

func (a *App) payments(w http.ResponseWriter, r *http.Request) {
	d := a.data(r, "Payments", "Sending money needs a second factor no older than 2 minutes (action step_up, max_age 2m), for GET and POST.")
	d.Accounts = []string{"Alice Supplies Ltd", "Bob's Hardware", "Carol Consulting"}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		p := &payment{To: r.PostForm.Get("to"), Amount: strings.TrimSpace(r.PostForm.Get("amount"))}
		switch {
		case !slices.Contains(d.Accounts, p.To):
			d.FormErr = "Pick a payee from the list."
		case !validAmount(p.Amount):
			d.FormErr = "Enter an amount such as 25 or 19.99."
		default:
			d.Payment = p
		}
	}
	a.render(w, http.StatusOK, "payments", d)
}

// validAmount accepts 1 to 7 digits and up to two decimals.
func validAmount(s string) bool {
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || len(whole) > 7 || (dot && (frac == "" || len(frac) > 2)) {
		return false
	}
	for _, r := range whole + frac {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func (a *App) loginPage(w http.ResponseWriter, r *http.Request) {
	d := a.data(r, "Sign in", "")
	d.RD = respond.CleanRedirect(r.URL.Query().Get("rd"))
	a.render(w, http.StatusOK, "login", d)
}

// login signs the demo user in: an HS256 access token with the user's two
// addresses and a fresh session id, in the access-token cookie, then back
// to rd. It stands in for a real identity provider.
func (a *App) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		// A cross-site form must not sign the browser in (login CSRF).
		http.Error(w, "cross-site sign-in refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	tok, exp, err := a.AccessToken(time.Now())
	if err != nil {
		a.cfg.Logger.Error("demo app: sign access token", "err", err)
		http.Error(w, "could not sign in", http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: a.cfg.Cookie, Value: tok, Path: "/", Expires: exp,
		HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, respond.CleanRedirect(r.PostForm.Get("rd")), http.StatusSeeOther)
}

// logout drops the access token. The second-factor cookie stays: it is
// bound to the session id, so a new login will not accept it.
func (a *App) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site sign-out refused", http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: a.cfg.Cookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// sameOrigin refuses requests a browser marks as coming from another site
// (Fetch Metadata, then Origin). Clients that send neither, like curl and
// the tests, are allowed: they cannot be led by another site.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	// Behind stepgate, Host is the upstream's address; the browser's
	// origin is the proxy's, which stepgate passes in X-Forwarded-Host.
	host := r.Header.Get("X-Forwarded-Host")
	if host == "" {
		host = r.Host
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, host)
}

// AccessToken signs a demo access token valid from now, with a new sid.
func (a *App) AccessToken(now time.Time) (string, time.Time, error) {
	sid := make([]byte, 16)
	rand.Read(sid)
	exp := now.Add(a.cfg.TokenTTL)
	claims := jwt.MapClaims{
		"sub":   User,
		"email": []string{PrimaryEmail, BackupEmail},
		"sid":   hex.EncodeToString(sid),
		"iat":   now.Unix(),
		"exp":   exp.Unix(),
		"name":  "Demo User",
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.cfg.HMACSecret)
	return s, exp, err
}
