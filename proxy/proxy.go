// Package proxy is the gate: an http.Handler that canonicalises the request
// target, asks the policy, the identity and the second factor, then forwards
// with httputil.ReverseProxy{Rewrite}.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/policy"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/secondfactor"
	"github.com/stepgate/stepgate/templates"
)

// Config configures a Gate. A Gate is rebuilt on every config reload; the
// Transport, Metrics and the Store behind SecondFactor and Internal are
// what outlive it.
type Config struct {
	Policy   *policy.Policy // required
	Upstream *url.URL       // required: scheme http or https and a host; a path is a base prefix
	// Transport carries requests upstream; build it once with NewTransport
	// so pooled connections survive reloads. Nil means a NewTransport of
	// UpstreamTimeout built for this Gate alone.
	Transport http.RoundTripper
	// UpstreamTimeout bounds a whole upstream exchange up to the response
	// headers (504 after it). Zero means no bound beyond the Transport's.
	// It never bounds the response body, so streams are not cut.
	UpstreamTimeout time.Duration
	Prefix          string         // reserved path, never forwarded; "" means "/.stepup"
	TrustedProxies  []netip.Prefix // peers whose X-Forwarded-* and X-Request-Id are kept; nil: none
	// ForwardAuth answers the decision endpoints {Prefix}/authz/* of SPEC
	// §12 (forwardauth.go) to TrustedProxies, and 403 to anyone else.
	// False: those paths are Prefix's like any other (404).
	ForwardAuth bool
	// Identity authenticates requests; nil means every authenticate and
	// step_up decision answers 401.
	Identity *identity.Authenticator
	// SecondFactor finds a request's second-factor token; nil means every
	// step_up decision answers 401. Its cookie and header are never
	// forwarded (SPEC §7).
	SecondFactor *secondfactor.Tokens
	// ForwardToken sends a valid second-factor token upstream in
	// X-Stepup-Token (upstream.forward_token), for back ends that validate
	// it themselves. False (the default) sends only X-Stepup-Auth-Time.
	ForwardToken bool
	// Internal serves Prefix (the challenge pages and API, whose
	// challenge page step_up answers link to); nil means Prefix answers
	// 404 and step_up answers carry no link.
	Internal http.Handler
	LoginURL string // identity.login_url with {rd}; "" => 401 page
	// Pages renders error pages; nil means the embedded templates.
	Pages *respond.Pages
	// Metrics counts requests and upstream latency; nil means unregistered
	// metrics of this Gate alone.
	Metrics *Metrics
	Logger  *slog.Logger // nil => slog.Default()
}

// Gate is the proxy handler. It is immutable and safe for concurrent use.
type Gate struct {
	cfg       Config
	rp        *httputil.ReverseProxy
	pages     *respond.Pages
	log       *slog.Logger
	counters  *requestCounters
	idHeaders []string // lower-case identity header names, stripped from untrusted peers
	sfHeader  string   // lower-case second-factor header name, never forwarded; "" without SecondFactor
	basePath  string   // Upstream's escaped path without a trailing '/'
}

// New validates cfg and builds the ReverseProxy once.
func New(cfg Config) (*Gate, error) {
	var errs []error
	if cfg.Policy == nil {
		errs = append(errs, errors.New("proxy: no policy"))
	}
	if u := cfg.Upstream; u == nil {
		errs = append(errs, errors.New("proxy: no upstream"))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Opaque != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("proxy: upstream %q: want http(s)://host[:port][/path]", u.Redacted()))
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/.stepup"
	}
	if !strings.HasPrefix(cfg.Prefix, "/") || strings.HasSuffix(cfg.Prefix, "/") || cfg.Prefix == "/" {
		errs = append(errs, fmt.Errorf("proxy: prefix %q: want /name without a trailing slash", cfg.Prefix))
	}
	if cfg.UpstreamTimeout < 0 {
		errs = append(errs, errors.New("proxy: negative upstream timeout"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Transport == nil {
		cfg.Transport = NewTransport(cfg.UpstreamTimeout)
	}
	if cfg.Pages == nil {
		p, err := respond.ParsePages(templates.FS, cfg.Prefix, cfg.Logger)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		cfg.Pages = p
	}
	g := &Gate{
		cfg:      cfg,
		pages:    cfg.Pages,
		log:      cfg.Logger,
		counters: newRequestCounters(cfg.Metrics.Requests, cfg.Policy.Len()),
		basePath: strings.TrimSuffix(cfg.Upstream.EscapedPath(), "/"),
	}
	if cfg.Identity != nil {
		for _, h := range cfg.Identity.IdentityHeaders() {
			g.idHeaders = append(g.idHeaders, strings.ReplaceAll(strings.ToLower(h), "_", "-"))
		}
	}
	if cfg.SecondFactor != nil {
		g.sfHeader = strings.ReplaceAll(strings.ToLower(cfg.SecondFactor.HeaderName()), "_", "-")
	}
	g.rp = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      &timedTransport{base: cfg.Transport, timeout: cfg.UpstreamTimeout, hist: cfg.Metrics.UpstreamDuration},
		BufferPool:     newBufferPool(),
		ErrorHandler:   g.errorHandler,
		ModifyResponse: g.modifyResponse,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return g, nil
}

// connClose is the Connection header value that makes net/http close the
// connection after the response. Never modified.
var connClose = []string{"close"}

// stateKey is the context key of the per-request state.
type stateKey struct{}

// Indexes into state.hv, the values of the headers set upstream.
const (
	hvRequestID = iota
	hvRule
	hvUser
	hvEmail
	hvAuthTime
	hvToken
	hvMethod
	numHV
)

// state is what ServeHTTP decided, handed to rewrite and errorHandler
// through the request context.
type state struct {
	reqID       string
	peerTrusted bool
	target      policy.Target
	path        string        // target.Path decoded: out.URL.Path
	rule        string        // deciding rule, "default" when none
	action      policy.Action // what the deciding rule requires
	id          identity.Identity
	hasID       bool
	grant       secondfactor.Grant
	hasGrant    bool
	// via names the forward-auth endpoint that asked (audit records say
	// it); "" in proxy mode.
	via string
	// redirectAny sends browsers of every method to the challenge, not
	// only GET and HEAD: nginx can pass on a redirect but not the 401 page.
	redirectAny bool
	hv          [numHV]string
	idv         [1]string // response X-Request-Id value
}

// gateCtx carries state with the request context in one allocation.
type gateCtx struct {
	context.Context
	st state
}

func (c *gateCtx) Value(key any) any {
	if key == (stateKey{}) {
		return &c.st
	}
	return c.Context.Value(key)
}

// anyAge accepts a second factor of any age that is still valid; used to
// report X-Stepup-Auth-Time on authenticate decisions (SPEC §7), where the
// token's own expiry is the only bound.
const anyAge = time.Duration(math.MaxInt64)

func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	gc := &gateCtx{Context: r.Context()}
	st := &gc.st
	peer := peerAddr(r.RemoteAddr)
	st.peerTrusted = containsAddr(g.cfg.TrustedProxies, peer)

	// Request id: a trusted proxy's is kept so that logs join up.
	if v := r.Header["X-Request-Id"]; st.peerTrusted && len(v) == 1 && validRequestID(v[0]) {
		st.reqID = v[0]
	} else {
		st.reqID = newRequestID()
	}
	st.idv[0] = st.reqID
	w.Header()["X-Request-Id"] = st.idv[:1:1]
	// RFC 9112 §6.1: a request framed by chunked encoding (Go drops a
	// Content-Length sent with it, §6.3) closes the connection after the
	// response, so a front end that framed it by Content-Length cannot
	// have a second request, smuggled in what it took for the body, served
	// on this connection. net/http closes it when the handler sets
	// Connection: close; the ReverseProxy adds the upstream's headers to
	// this one and drops the upstream's Connection.
	if len(r.TransferEncoding) > 0 {
		w.Header()["Connection"] = connClose
	}

	// SPEC §4: only origin-form targets; CONNECT is refused even with a
	// path-like target.
	if r.Method == http.MethodConnect {
		g.reject(w, r, st, "CONNECT")
		return
	}
	t, err := policy.ParseTarget(r.RequestURI)
	if err != nil {
		g.reject(w, r, st, err.Error())
		return
	}
	if err := setTarget(r, st, t); err != nil {
		g.reject(w, r, st, err.Error())
		return
	}
	if g.internal(t.MatchPath) {
		if ep := g.authzEndpoint(t.MatchPath); ep != nil {
			g.serveAuthz(w, r, st, ep)
			return
		}
		g.serveInternal(w, r, st)
		return
	}

	d, out, err := g.decide(r, st, true)
	if err != nil {
		g.reject(w, r, st, err.Error())
		return
	}
	switch out {
	case outForwarded:
		g.forward(w, r, gc)
	case outDenied:
		g.deny(w, r, st)
	case outUnauthenticated:
		g.unauthenticated(w, r, st)
	case outChallenged:
		g.challenge(w, r, st, d)
	case outUnavailable:
		g.unavailable(w, r, st)
	default: // deny on doubt: an outcome this switch does not know
		g.deny(w, r, st)
	}
}

// setTarget records the canonical target t of r in st, and refuses what
// SPEC §4 refuses beyond the target itself: a Host that is not one
// authority, a canonical path that does not decode, and upgrades other
// than websocket (which pass only once the
// policy allowed them; the ReverseProxy forwards them). Proxy mode and the
// forward-auth endpoints both call it.
func setTarget(r *http.Request, st *state, t policy.Target) error {
	// SPEC §4: the Host must be one authority before anything matches it.
	if _, err := policy.ParseHost(r.Host); err != nil {
		return err
	}
	st.target = t
	var err error
	if st.path, err = url.PathUnescape(t.Path); err != nil {
		return errors.New("canonical path does not decode")
	}
	if up := r.Header["Upgrade"]; len(up) > 0 && (len(up) != 1 || !strings.EqualFold(strings.TrimSpace(up[0]), "websocket")) {
		return errors.New("upgrade other than websocket")
	}
	return nil
}

// decide is the decision of SPEC §4, made by the same code for a proxied
// request and for the original request that a forward-auth endpoint
// describes (SPEC §12): r is the request to decide (its method, host and
// headers), st.target its canonical target (setTarget). It builds the
// policy request, matches it, checks identity and second factor, and counts
// the outcome. With readBody, `_method` is read from a form body
// (buildRequest); without, a body nobody can read is assumed to override
// the method when it may (bodyUnseen, forwardauth.go). An audit-mode rule
// is counted and logged as audited, and its outcome is outForwarded. An
// error means refuse with 400: the request cannot be decided unambiguously.
func (g *Gate) decide(r *http.Request, st *state, readBody bool) (policy.Decision, outcome, error) {
	p := g.cfg.Policy
	var pr policy.Request
	var err error
	if readBody {
		pr, err = buildRequest(r, st.target, p)
	} else {
		pr, err = buildRequest(r, st.target, nil)
		pr.AnyMethod = p.MethodSensitive() && bodyUnseen(r)
	}
	if err != nil {
		return policy.Decision{}, outRejected, err
	}
	d := p.Match(pr)
	st.rule = d.Rule
	st.action = d.Action
	if st.rule == "" {
		st.rule = "default"
	}

	out := g.evaluate(r, st, d)
	if d.Mode == policy.Audit {
		// SPEC §3 mode audit: decide, log and count, but forward.
		g.counters.inc(d.Index, st.rule, outAudited)
		g.audit(r, st, "audit", "audited", Audited, st.rule, slog.String("action", d.Action.String()),
			slog.String("would", out.String()), slog.String("method", loggedMethod(r)), slog.String("path", loggedPath(st)))
		return d, outForwarded, nil
	}
	g.counters.inc(d.Index, st.rule, out)
	return d, out, nil
}

// evaluate computes what the decision requires of r: identity for
// authenticate and step_up, a fresh second factor for step_up. It fills
// st's identity and grant with whatever is valid.
func (g *Gate) evaluate(r *http.Request, st *state, d policy.Decision) outcome {
	switch d.Action {
	case policy.Allow:
		return outForwarded
	case policy.Authenticate, policy.StepUp:
	default: // Deny, and any action this package does not know (deny on doubt).
		return outDenied
	}
	if g.cfg.Identity == nil {
		return outUnauthenticated
	}
	id, err := g.cfg.Identity.Authenticate(r)
	if errors.Is(err, identity.ErrBusy) {
		// The token was not judged: neither "sign in" nor forwarded.
		return outUnavailable
	}
	if err != nil {
		if !errors.Is(err, identity.ErrNoCredential) && !errors.Is(err, identity.ErrInvalid) {
			g.log.Warn("identity unavailable", "request_id", st.reqID, "err", err)
		} else if errors.Is(err, identity.ErrInvalid) {
			g.log.Debug("invalid credential", "request_id", st.reqID, "err", err)
		}
		return outUnauthenticated
	}
	st.id, st.hasID = id, true
	if g.cfg.SecondFactor == nil {
		if d.Action == policy.StepUp {
			return outChallenged
		}
		return outForwarded
	}
	maxAge, methods := anyAge, ""
	if d.Action == policy.StepUp {
		// SPEC §11: a token from a method the rule does not list does not
		// satisfy it; the challenge then offers only the listed methods.
		maxAge, methods = d.MaxAge, d.Factors
	}
	st.grant, st.hasGrant = g.cfg.SecondFactor.CheckMethods(r, id, maxAge, methods)
	if d.Action == policy.StepUp && !st.hasGrant {
		return outChallenged
	}
	return outForwarded
}

// forward hands r to the ReverseProxy with the state in its context.
func (g *Gate) forward(w http.ResponseWriter, r *http.Request, gc *gateCtx) {
	g.rp.ServeHTTP(w, r.WithContext(gc))
}

// internal reports whether the canonical match path is under Prefix. It
// compares case-insensitively so that no spelling of the prefix reaches an
// upstream that ignores case.
func (g *Gate) internal(p string) bool {
	pre := g.cfg.Prefix
	return len(p) >= len(pre) && strings.EqualFold(p[:len(pre)], pre) && (len(p) == len(pre) || p[len(pre)] == '/')
}

// serveInternal hands a request under Prefix to the challenge handler with
// the canonical path, so it routes on what the policy would have seen.
func (g *Gate) serveInternal(w http.ResponseWriter, r *http.Request, st *state) {
	if g.cfg.Internal == nil {
		g.pages.Error(w, r, &respond.HTTPError{Status: http.StatusNotFound, Code: "not_found", Title: "Not found",
			Msg: "There is nothing here."})
		return
	}
	r2 := r.WithContext(r.Context())
	mp, err := url.PathUnescape(st.target.MatchPath)
	if err != nil {
		g.reject(w, r, st, "canonical path does not decode")
		return
	}
	u := *r.URL
	u.Path, u.RawPath, u.RawQuery = mp, st.target.MatchPath, st.target.RawQuery
	r2.URL = &u
	r2.Header = r.Header.Clone()
	r2.Header.Set("X-Request-Id", st.reqID)
	g.cfg.Internal.ServeHTTP(w, r2)
}
