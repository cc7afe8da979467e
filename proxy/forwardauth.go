package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/stepgate/stepgate/policy"
	"github.com/stepgate/stepgate/respond"
)

// Forward-auth (SPEC §12): stepgate as the decision service of another
// proxy. The outer proxy (nginx auth_request, ingress-nginx auth-url,
// Traefik ForwardAuth, Caddy forward_auth, Envoy ext_authz) asks "may this
// request pass?" and forwards the original request itself. The decision is
// the gate's own: the original target goes through policy.ParseTarget and
// setTarget, and then decide, exactly as a proxied request does, so that
// every target proxy mode refuses is refused here too (the outer proxy will
// forward the raw target; deciding on a normalised form of it is the
// mistake behind Authelia's CVE-2021-32637).
//
// Two things differ because stepgate does not forward the request:
//   - The raw target is what the upstream gets, not the canonical one, so
//     a target whose canonical form merges empty segments ("//") is refused:
//     the policy would decide on a path the upstream is never sent.
//     Percent-encoded unreserved characters, hex case and ;params are left
//     as they are: every upstream decodes them the way the policy does.
//   - The body is never sent to the endpoints, so a `_method` in it cannot
//     be read: bodyUnseen decides such a request as any method.

// endpoint is one of the forward-auth endpoints under {Prefix}/authz/.
type endpoint struct {
	name string // the path after {Prefix}/authz/, in audit records as "via"
	// original reads the request the outer proxy asks about.
	original func(g *Gate, r *http.Request) (original, error)
	// nginx answers as nginx auth_request needs: it takes only 2xx, 401
	// and 403 from the auth service (anything else becomes its 500), so
	// a redirect is sent as 401 with an absolute Location, for an
	// error_page to turn into the 302 (deploy/nginx).
	nginx bool
}

var (
	authRequestEndpoint = &endpoint{name: "auth-request", original: (*Gate).authRequestOriginal, nginx: true}
	forwardAuthEndpoint = &endpoint{name: "forward-auth", original: (*Gate).forwardAuthOriginal}
	extAuthzEndpoint    = &endpoint{name: "ext-authz", original: (*Gate).extAuthzOriginal}
)

const extAuthzPath = "/authz/ext-authz"

// authzEndpoint returns the forward-auth endpoint at the canonical match
// path p, which internal reported to be under Prefix, or nil when there is
// none or ForwardAuth is off. Like internal, it ignores case.
func (g *Gate) authzEndpoint(p string) *endpoint {
	if !g.cfg.ForwardAuth {
		return nil
	}
	rest := p[len(g.cfg.Prefix):]
	switch {
	case strings.EqualFold(rest, "/authz/auth-request"):
		return authRequestEndpoint
	case strings.EqualFold(rest, "/authz/forward-auth"):
		return forwardAuthEndpoint
	case len(rest) >= len(extAuthzPath) && strings.EqualFold(rest[:len(extAuthzPath)], extAuthzPath) &&
		(len(rest) == len(extAuthzPath) || rest[len(extAuthzPath)] == '/'):
		return extAuthzEndpoint
	}
	return nil
}

// original is the request a forward-auth call asks about.
type original struct {
	method string
	scheme string // "http" or "https"; "" when the endpoint is not told
	host   string // authority as the client sent it
	target string // the raw request target, which the outer proxy forwards
}

// serveAuthz answers a forward-auth call r with the gate's decision for the
// original request it describes (SPEC §12): 200 with the SPEC §7 headers
// for the outer proxy to copy upstream; for browsers, 302 to the challenge
// or the login page (absolute when the scheme is known; 401 with Location
// for nginx); the RFC 9470 401 for API clients; 403 for deny; 400 for what
// cannot be decided unambiguously.
func (g *Gate) serveAuthz(w http.ResponseWriter, r *http.Request, st *state, ep *endpoint) {
	st.via = ep.name
	if !st.peerTrusted {
		// Anyone else could ask about any request, and an answer with
		// identity headers is only safe in the hands of the proxy.
		g.counters.incNone(outDenied)
		g.audit(r, st, "forward-auth call refused", "forward_auth_refused", Denied, noRule,
			slog.String("reason", "peer not in server.trusted_proxies"))
		respond.JSON(w, http.StatusForbidden, respond.APIError{Error: "access_denied",
			Description: "The forward-auth endpoints answer only server.trusted_proxies."})
		return
	}
	o, err := ep.original(g, r)
	if err != nil {
		g.reject(w, r, st, err.Error())
		return
	}
	orig, err := originalRequest(r, st, o)
	if err != nil {
		g.reject(w, r, st, err.Error())
		return
	}
	d, out, err := g.decide(orig, st, false)
	if err != nil {
		g.reject(w, orig, st, err.Error())
		return
	}
	if ep.nginx || o.scheme != "" {
		aw := &answerWriter{ResponseWriter: w, as401: ep.nginx}
		if o.scheme != "" {
			aw.origin = o.scheme + "://" + o.host
		}
		st.redirectAny = ep.nginx
		w = aw
	}
	switch out {
	case outForwarded:
		allow(w, st, g.cfg.ForwardToken)
	case outDenied:
		g.deny(w, orig, st)
	case outUnauthenticated:
		g.unauthenticated(w, orig, st)
	case outChallenged:
		g.challenge(w, orig, st, d)
	case outUnavailable:
		g.unavailable(w, orig, st)
	default: // deny on doubt: an outcome this switch does not know
		g.deny(w, orig, st)
	}
}

// allow answers a forward-auth call whose original request may pass: 200
// with the headers the upstream would get from the gate (SPEC §7), which
// the outer proxy copies onto the forwarded request. The answer is
// per-user and per-moment, so no cache may keep it.
func allow(w http.ResponseWriter, st *state, forwardToken bool) {
	h := w.Header()
	st.setHeaders(h, forwardToken)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// originalRequest parses o as ServeHTTP parses a request, records its
// canonical target in st, and returns a request to decide: r (the call,
// whose headers, cookies and peer are the original's, as every outer proxy
// sends them) with the original method, host and target, and no body.
func originalRequest(r *http.Request, st *state, o original) (*http.Request, error) {
	if !isToken(o.method) {
		return nil, errors.New("original method is not a method name")
	}
	if o.method == http.MethodConnect {
		return nil, errors.New("CONNECT")
	}
	if o.host == "" {
		// setTarget refuses any other Host that is not one authority
		// (policy.ParseHost), as for a proxied request.
		return nil, errors.New("no original host")
	}
	t, err := policy.ParseTarget(o.target)
	if err != nil {
		return nil, err
	}
	if path, _, _ := strings.Cut(o.target, "?"); strings.Contains(path, "//") {
		return nil, fmt.Errorf("%w: an empty path segment (//) would reach the upstream as sent, unlike the merged path the policy decides", policy.ErrRejected)
	}
	orig := r.WithContext(r.Context())
	orig.Method = o.method
	orig.Host = o.host
	orig.RequestURI = o.target
	orig.URL = &url.URL{RawPath: t.Path, RawQuery: t.RawQuery}
	orig.Body = http.NoBody
	if err := setTarget(orig, st, t); err != nil {
		return nil, err
	}
	orig.URL.Path = st.path
	return orig, nil
}

// bodyUnseen reports whether r, an original request whose body the
// forward-auth endpoints never see, may carry a method override in its
// body: a POST (in any case, as formOverrides) whose body a framework
// parses as a form (classifyBody, which counts a POST without Content-Type
// as one, as Rack does) or as JSON (Laravel reads `_method` from JSON
// input). decide then decides it as every method the rules name, and the
// strictest decision wins: deny on doubt (SPEC §4).
func bodyUnseen(r *http.Request) bool {
	if !strings.EqualFold(r.Method, http.MethodPost) {
		return false
	}
	if k := classifyBody(r.Header); k.form != notForm || k.json {
		return true
	}
	for _, ct := range r.Header["Content-Type"] {
		if containsFold(ct, "json") {
			return true
		}
	}
	return false
}

// authRequestOriginal reads nginx's and ingress-nginx's description of the
// original request: X-Original-Method, and X-Original-URL as
// $scheme://$http_host$request_uri.
func (g *Gate) authRequestOriginal(r *http.Request) (original, error) {
	m, err := single(r.Header, "X-Original-Method")
	if err != nil {
		return original{}, err
	}
	u, err := single(r.Header, "X-Original-Url")
	if err != nil {
		return original{}, err
	}
	var o original
	var rest string
	switch {
	case len(u) > len("https://") && strings.EqualFold(u[:len("https://")], "https://"):
		o.scheme, rest = "https", u[len("https://"):]
	case len(u) > len("http://") && strings.EqualFold(u[:len("http://")], "http://"):
		o.scheme, rest = "http", u[len("http://"):]
	default:
		return original{}, errors.New("X-Original-URL is not an http(s) URL")
	}
	i := strings.IndexAny(rest, "/?#")
	if i < 0 || rest[i] != '/' {
		return original{}, errors.New("X-Original-URL has no path after its host")
	}
	o.method, o.host, o.target = m, rest[:i], rest[i:]
	return o, nil
}

// forwardAuthOriginal reads Traefik's and Caddy's description of the
// original request: X-Forwarded-Method, -Proto, -Host and -Uri.
func (g *Gate) forwardAuthOriginal(r *http.Request) (original, error) {
	var o original
	var err error
	if o.method, err = single(r.Header, "X-Forwarded-Method"); err != nil {
		return original{}, err
	}
	if o.host, err = single(r.Header, "X-Forwarded-Host"); err != nil {
		return original{}, err
	}
	if o.target, err = single(r.Header, "X-Forwarded-Uri"); err != nil {
		return original{}, err
	}
	if _, ok := r.Header["X-Forwarded-Proto"]; ok {
		p, err := single(r.Header, "X-Forwarded-Proto")
		if err != nil {
			return original{}, err
		}
		if o.scheme = strings.ToLower(p); o.scheme != "http" && o.scheme != "https" {
			return original{}, errors.New("X-Forwarded-Proto is neither http nor https")
		}
	}
	return o, nil
}

// extAuthzOriginal reads Envoy's HTTP ext_authz check: the original
// request itself, with the original method and Host, and its raw target
// appended to the endpoint's path (http_service.path_prefix). The endpoint
// must be spelt exactly as configured, so that the raw target can be cut
// from it byte for byte.
func (g *Gate) extAuthzOriginal(r *http.Request) (original, error) {
	rest, ok := strings.CutPrefix(r.RequestURI, g.cfg.Prefix+extAuthzPath)
	if !ok || !strings.HasPrefix(rest, "/") {
		return original{}, fmt.Errorf("ext-authz target is not %s followed by the original path", g.cfg.Prefix+extAuthzPath)
	}
	return original{method: r.Method, host: r.Host, target: rest}, nil
}

// single returns the only value of header key (canonical form), or an
// error when it is missing or sent more than once: two values could be
// read either way.
func single(h http.Header, key string) (string, error) {
	switch vs := h[key]; len(vs) {
	case 1:
		return vs[0], nil
	case 0:
		return "", fmt.Errorf("no %s header", key)
	default:
		return "", fmt.Errorf("%d %s headers; want one", len(vs), key)
	}
}

// isToken reports whether s is an RFC 9110 §5.6.2 token, as a method is.
func isToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// answerWriter adapts the gate's redirects to the outer proxy. With an
// origin, a Location that is a path is made absolute on it: Traefik
// resolves a relative Location against the decision endpoint's own URL
// (http.Response.Location), which would send browsers to stepgate's
// internal address, and nginx's error_page takes a path for an internal
// redirect rather than one to send. With as401, the redirect itself is
// sent as 401 with that Location, which is what nginx auth_request can
// pass on (deploy/nginx turns it into the 302).
type answerWriter struct {
	http.ResponseWriter
	origin string // scheme://host of the original request; "" when unknown
	as401  bool
}

func (w *answerWriter) WriteHeader(code int) {
	if code == http.StatusFound {
		h := w.Header()
		if loc := h.Get("Location"); w.origin != "" && strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") {
			h.Set("Location", w.origin+loc)
		}
		if w.as401 {
			code = http.StatusUnauthorized
		}
	}
	w.ResponseWriter.WriteHeader(code)
}
