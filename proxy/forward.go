package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"

	"github.com/stepgate/stepgate/policy"
	"github.com/stepgate/stepgate/respond"
)

// NewTransport returns the upstream transport: dial and response-header
// timeouts, and keep-alive pooling sized for a busy proxy. timeout bounds
// the wait for response headers once the request is written (0: none); it
// never cuts a response body, so streams and downloads may run longer.
// Dialing and the TLS handshake are bounded by 5s each, or by timeout when
// it is shorter, so that a Gate on this Transport can leave the whole
// bound of a body-less request to it (see timedTransport).
// Environment proxies are ignored: the upstream is addressed directly.
func NewTransport(timeout time.Duration) *http.Transport {
	phase := 5 * time.Second
	if timeout > 0 && timeout < phase {
		phase = timeout
	}
	d := &net.Dialer{Timeout: phase, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:            d.DialContext,
		TLSHandshakeTimeout:    phase,
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		// Upstreams are legacy HTTP/1.1 apps; HTTP/2 would also change
		// how upgrades are carried.
		ForceAttemptHTTP2: false,
	}
}

// bufferPool recycles the 32 KiB copy buffers of the ReverseProxy.
type bufferPool struct{ p sync.Pool }

const bufferSize = 32 << 10

var _ httputil.BufferPool = (*bufferPool)(nil)

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, bufferSize); return &b }}}
}

func (bp *bufferPool) Get() []byte { return *bp.p.Get().(*[]byte) }

func (bp *bufferPool) Put(b []byte) {
	if cap(b) != bufferSize {
		return
	}
	b = b[:bufferSize]
	bp.p.Put(&b)
}

// ErrBodyTimeout is what a request body's Read returns when the server
// cut a client that stopped sending (server.read_idle_timeout or
// server.read_timeout, applied by package main). The exchange is answered
// 408, never blamed on the upstream.
var ErrBodyTimeout = errors.New("request body timed out")

// errUpstreamTimeout is the cause of an upstream exchange cut by
// Config.UpstreamTimeout.
var errUpstreamTimeout = errors.New("upstream timeout awaiting response headers")

// timedTransport observes stepgate_upstream_duration_seconds and applies
// Config.UpstreamTimeout, which bounds the upstream's slowness and never the
// client's (SPEC §13): each stretch of time in which the exchange waits on
// the upstream — dialing and writing the headers, each write of a piece of
// the request body (an upstream that stops reading), and the wait for the
// response headers once the body is sent — must end within the timeout.
// While the body is being read from the client the timer is stopped: a
// slow but steady upload may take as long as the server's read timeouts
// allow. The timer stops for good when the headers arrive, so a streaming
// response body is never cut; a response body that stalls is bounded by the
// client going away instead.
//
// The common request has no body, and the Transport that NewTransport
// builds bounds each phase of it already: dial and TLS handshake (at most
// the timeout), writing a few KiB of headers (which fit the socket buffer)
// and ResponseHeaderTimeout. For such a request on such a Transport, a
// second timer would only cost a context, a timer and a copy of the request
// every time, so it is skipped; the bound is then per phase, at most about
// three times the timeout when dialing and the handshake both stall, and
// still answered 504 (the Transport's errors are net.Error timeouts). A
// request with a body, whose upload an upstream could stall, or any other
// RoundTripper, keeps the timer over the whole exchange.
type timedTransport struct {
	base    http.RoundTripper
	timeout time.Duration
	hist    interface{ Observe(float64) }
}

// bounded reports whether the base Transport bounds a body-less exchange
// by itself within t.timeout (see timedTransport): an *http.Transport
// whose response-header and TLS handshake timeouts are set and no longer.
// Its dialer cannot be inspected; it is trusted to have a timeout, as
// NewTransport's has (Config.Transport says to build it with NewTransport).
func (t *timedTransport) bounded(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody {
		return false
	}
	tr, ok := t.base.(*http.Transport)
	return ok && tr.ResponseHeaderTimeout > 0 && tr.ResponseHeaderTimeout <= t.timeout &&
		tr.TLSHandshakeTimeout > 0 && tr.TLSHandshakeTimeout <= t.timeout
}

func (t *timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	if t.timeout <= 0 || t.bounded(r) {
		res, err := t.base.RoundTrip(r)
		t.hist.Observe(time.Since(start).Seconds())
		return res, err
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	timer := time.AfterFunc(t.timeout, func() { cancel(errUpstreamTimeout) })
	out := r.WithContext(ctx)
	var body *clientBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &clientBody{rc: r.Body, timer: timer, timeout: t.timeout}
		out.Body = body
	}
	res, err := t.base.RoundTrip(out)
	fired := !timer.Stop()
	if body != nil {
		// The Transport may still be sending the body (an upstream that
		// answered early); from now on its reads must not rearm the timer.
		body.finish()
	}
	t.hist.Observe(time.Since(start).Seconds())
	if fired {
		// The headers may have won the race against the timer, but the
		// body's context is cancelled already: answer 504 rather than
		// forward a body that will break off.
		if res != nil {
			res.Body.Close()
		}
		return nil, errUpstreamTimeout
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	// The body is read under ctx; it is released with the inbound request's
	// context when the handler returns.
	return res, nil
}

// clientBody is the request body as the Transport reads it. The upstream
// timer runs while the Transport is busy with the upstream and is stopped
// while a Read waits for the client: between two Reads the Transport writes
// what the last one returned, and an upstream that does not take it within
// the timeout is slow; a client that sends slowly is bounded by the
// server's read deadlines instead. After EOF the timer runs until the
// response headers (RoundTrip stops it).
type clientBody struct {
	rc      io.ReadCloser
	timeout time.Duration

	mu    sync.Mutex
	timer *time.Timer
	done  bool // RoundTrip returned; the timer is no longer ours to arm
}

func (b *clientBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	// Stop reports false when the timer already fired: the exchange is
	// cancelled and the Transport will see it; the Read is harmless.
	running := !b.done && b.timer.Stop()
	b.mu.Unlock()
	n, err := b.rc.Read(p)
	b.mu.Lock()
	if running && !b.done {
		b.timer.Reset(b.timeout)
	}
	b.mu.Unlock()
	return n, err
}

func (b *clientBody) Close() error { return b.rc.Close() }

// finish stops the body from rearming the timer.
func (b *clientBody) finish() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
}

// rewrite builds the outgoing request (SPEC §7). It runs after the
// ReverseProxy removed hop-by-hop headers, so nothing a client lists in
// Connection can remove what is set here.
func (g *Gate) rewrite(pr *httputil.ProxyRequest) {
	st, _ := pr.In.Context().Value(stateKey{}).(*state)
	out := pr.Out
	if st == nil {
		// Only ServeHTTP calls the ReverseProxy; a request without state
		// would be a bug, and forwarding it unchecked would bypass the
		// policy. Point it nowhere so the ErrorHandler answers 502.
		out.URL.Host = ""
		out.URL.Scheme = "stepgate-invalid"
		return
	}

	idTrusted := len(g.idHeaders) > 0 && g.cfg.Identity.Trusted(pr.In.RemoteAddr)
	// The clone is sized for the incoming headers; when the ones set below
	// would grow it past Go's small-map size (8), which costs a rehash on
	// every request, one map of the final size is cheaper.
	added := 5 // X-Forwarded-For, -Proto, -Host, X-Request-Id, X-Stepup-Rule
	if st.hasID {
		added += 2
	}
	if st.hasGrant {
		added += 2 // X-Stepup-Auth-Time, -Method
		if g.cfg.ForwardToken {
			added++
		}
	}
	if n := len(out.Header); n > 0 && n+added > 8 {
		h := make(http.Header, n+added)
		for k, v := range out.Header {
			h[k] = v
		}
		out.Header = h
	}
	for name := range out.Header {
		if g.strip(name, st.peerTrusted, idTrusted) {
			delete(out.Header, name)
		}
	}
	if g.cfg.SecondFactor != nil {
		// SPEC §7: the token is the client's credential towards stepgate;
		// the upstream gets X-Stepup-Auth-Time instead (and the token only
		// with ForwardToken).
		g.cfg.SecondFactor.StripCookie(out.Header)
	}

	out.URL.Path = st.path
	out.URL.RawPath = st.target.Path
	out.URL.RawQuery = st.target.RawQuery
	pr.SetURL(g.cfg.Upstream)
	if g.opaque(st.target.Path) {
		// url.URL would re-escape a RawPath with bytes it considers
		// invalid; send exactly the canonical path the policy saw.
		out.URL.Opaque = g.basePath + st.target.Path
	}

	if st.peerTrusted {
		// A trusted proxy's chain is kept (SetXForwarded appends the
		// peer); the ReverseProxy removed it from Out before Rewrite.
		in := pr.In.Header
		if v := in["X-Forwarded-For"]; len(v) > 0 {
			out.Header["X-Forwarded-For"] = v
		}
		pr.SetXForwarded()
		if v := in["X-Forwarded-Proto"]; len(v) > 0 {
			out.Header["X-Forwarded-Proto"] = v
		}
		// X-Forwarded-Host is the host the policy decided, which
		// SetXForwarded set from the Host: never the trusted proxy's
		// value, which nginx passes through from the client as sent, and
		// which Rails, Symfony, Django, Express and ASP.NET prefer over
		// the Host (SPEC §7). Forwarded keeps its for= and proto= chain,
		// with every host= replaced likewise; a Forwarded that does not
		// parse is dropped rather than passed on half-understood.
		if v := in["Forwarded"]; len(v) > 0 {
			if fv, ok := forwardedWithHost(v, pr.In.Host); ok {
				out.Header["Forwarded"] = fv
			}
		}
	} else {
		pr.SetXForwarded()
	}

	st.setHeaders(out.Header, g.cfg.ForwardToken)
}

// setHeaders sets the headers of SPEC §7 that say what was decided and
// for whom, on the request to the upstream (rewrite) or on a forward-auth
// answer for the outer proxy to copy upstream (forwardauth.go).
func (st *state) setHeaders(h http.Header, forwardToken bool) {
	// Header values point into st's array so that setting them does not
	// allocate; the three-index slices keep an Add from overwriting a
	// neighbour.
	st.hv[hvRequestID] = st.reqID
	h["X-Request-Id"] = st.hv[hvRequestID : hvRequestID+1 : hvRequestID+1]
	st.hv[hvRule] = st.rule
	h["X-Stepup-Rule"] = st.hv[hvRule : hvRule+1 : hvRule+1]
	if st.hasID {
		st.hv[hvUser] = st.id.Subject
		h["X-Stepup-User"] = st.hv[hvUser : hvUser+1 : hvUser+1]
		if len(st.id.Emails) > 0 {
			st.hv[hvEmail] = st.id.Emails[0]
			h["X-Stepup-Email"] = st.hv[hvEmail : hvEmail+1 : hvEmail+1]
		}
	}
	if st.hasGrant {
		st.hv[hvAuthTime] = strconv.FormatInt(st.grant.AuthTime.Unix(), 10)
		h["X-Stepup-Auth-Time"] = st.hv[hvAuthTime : hvAuthTime+1 : hvAuthTime+1]
		st.hv[hvMethod] = st.grant.Method
		h["X-Stepup-Method"] = st.hv[hvMethod : hvMethod+1 : hvMethod+1]
		if forwardToken {
			st.hv[hvToken] = st.grant.Token
			h["X-Stepup-Token"] = st.hv[hvToken : hvToken+1 : hvToken+1]
		}
	}
}

// strip reports whether an incoming header must not reach the upstream
// (SPEC §7). Names compare case-insensitively with '_' read as '-'.
func (g *Gate) strip(name string, peerTrusted, idTrusted bool) bool {
	// Identity headers first: their default names (X-Forwarded-User) also
	// look like forwarding headers, which a trusted proxy may set.
	if !idTrusted {
		for _, h := range g.idHeaders {
			if headerIs(name, h) {
				return true
			}
		}
	}
	switch {
	case g.sfHeader != "" && headerIs(name, g.sfHeader):
		// SPEC §7: the client's second-factor header is never forwarded.
		return true
	case headerHasPrefix(name, "x-stepup-"),
		headerIs(name, "x-original-url"),
		headerIs(name, "x-rewrite-url"),
		headerIs(name, "x-request-id"): // set below from the gate's own id
		return true
	case headerIs(name, "forwarded"),
		headerHasPrefix(name, "x-forwarded-"),
		headerIs(name, "x-real-ip"):
		// Forwarding headers are believed only from trusted proxies, and
		// never in an underscore spelling, which no proxy sends but CGI
		// servers would merge with the real one.
		return !peerTrusted || containsUnderscore(name)
	}
	return false
}

func containsUnderscore(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '_' {
			return true
		}
	}
	return false
}

// opaque reports whether p holds a byte that net/url does not accept in a
// RawPath (it would then re-escape the decoded Path instead).
func (g *Gate) opaque(p string) bool {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '/' || c == '%':
		case c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' || c == '+' || c == ',' || c == ';' || c == '=' || c == ':' || c == '@' || c == '[' || c == ']':
		default:
			return true
		}
	}
	return false
}

// modifyResponse keeps the gate's request id the only one the client sees.
// A response to a request decided authenticate or step_up is for one user:
// without a Cache-Control of its own, a shared cache in front of stepgate
// could store it (RFC 9111 §3 lets caches store heuristically cacheable
// responses) and serve it to anyone, without identity or second factor. It
// gets Cache-Control: private; an explicit upstream value is left alone.
func (g *Gate) modifyResponse(res *http.Response) error {
	delete(res.Header, "X-Request-Id")
	if st, ok := res.Request.Context().Value(stateKey{}).(*state); ok &&
		(st.action == policy.Authenticate || st.action == policy.StepUp) {
		if _, set := res.Header["Cache-Control"]; !set {
			res.Header["Cache-Control"] = cachePrivate
		}
	}
	return nil
}

// cachePrivate is the Cache-Control added to per-user responses. Never
// modified.
var cachePrivate = []string{"private"}

// errorHandler answers when the upstream exchange failed (SPEC §5): 502
// when refused or unreachable, 504 on a timeout, nothing when the client is
// gone. The cause (with the upstream address) is logged, never shown.
func (g *Gate) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	var reqID string
	if st, ok := r.Context().Value(stateKey{}).(*state); ok {
		reqID = st.reqID
	}
	var ne net.Error
	switch {
	case errors.Is(err, ErrBodyTimeout):
		g.log.Info("request body timed out", "request_id", reqID, "status", http.StatusRequestTimeout)
		g.pages.Error(w, r, &respond.HTTPError{Status: http.StatusRequestTimeout, Code: "request_timeout", Title: "The upload stalled",
			Msg: "Your browser stopped sending the request. Please try again.", Header: http.Header{"Connection": {"close"}}})
	case errors.Is(err, errUpstreamTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		g.log.Warn("upstream timeout", "request_id", reqID, "status", http.StatusGatewayTimeout, "err", err)
		g.pages.Error(w, r, &respond.HTTPError{Status: http.StatusGatewayTimeout, Code: "gateway_timeout", Title: "The application is not responding",
			Msg: "The application behind this gateway did not answer in time. Please try again."})
	case r.Context().Err() != nil:
		// The client went away; nobody is left to answer. 499 is the
		// conventional label for this in proxy logs.
		g.log.Debug("client closed request", "request_id", reqID, "status", 499, "err", err)
	default:
		g.log.Warn("upstream unavailable", "request_id", reqID, "status", http.StatusBadGateway, "err", err)
		g.pages.Error(w, r, &respond.HTTPError{Status: http.StatusBadGateway, Code: "bad_gateway", Title: "The application is unavailable",
			Msg: "The application behind this gateway could not be reached. Please try again later."})
	}
}
