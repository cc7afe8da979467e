// Package proxy is the gate: an http.Handler that canonicalises the request
// target, asks the policy, the identity and the second factor, then forwards
// with httputil.ReverseProxy{Rewrite}.
//
// API CONTRACT (frozen; main and tests build against it). Bodies are stubs
// until the proxy work lands.
package proxy

import (
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stepgate/stepgate/challenge"
	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/policy"
	"github.com/stepgate/stepgate/respond"
)

// Config configures a Gate. A Gate is rebuilt on every config reload; the
// Transport, Metrics and Store-backed Challenge are what outlive it.
type Config struct {
	Policy   *policy.Policy
	Upstream *url.URL
	// Transport carries requests upstream; build it once with NewTransport
	// so pooled connections survive reloads.
	Transport http.RoundTripper
	// UpstreamTimeout bounds a whole upstream exchange up to the response
	// headers (504 after it). Zero means no bound beyond the Transport's.
	UpstreamTimeout time.Duration
	Prefix          string         // reserved path, never forwarded
	TrustedProxies  []netip.Prefix // peers whose X-Forwarded-* are kept
	// Identity authenticates requests; nil means every authenticate and
	// step_up decision answers 401.
	Identity *identity.Authenticator
	// Challenge checks second factors and serves Prefix; nil means every
	// step_up decision answers 401 and Prefix answers 404.
	Challenge *challenge.Service
	LoginURL  string // identity.login_url with {rd}; "" => 401 page
	Pages     *respond.Pages
	Metrics   *Metrics
	Logger    *slog.Logger // nil => slog.Default()
}

// Gate is the proxy handler. It is immutable and safe for concurrent use.
type Gate struct{}

// New validates cfg and builds the ReverseProxy once.
func New(cfg Config) (*Gate, error) { panic("unimplemented") }

func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) { panic("unimplemented") }

// NewTransport returns the upstream transport: dial and response-header
// timeouts, and keep-alive pooling sized for a busy proxy.
func NewTransport(timeout time.Duration) *http.Transport { panic("unimplemented") }

// PolicyRequest builds what the policy matches for r, whose target was
// canonicalised to t: method, method overrides (X-HTTP-Method-Override,
// X-HTTP-Method, X-Method-Override, _method), host, match path. explain
// uses it too, so the CLI and the proxy decide alike.
func PolicyRequest(r *http.Request, t policy.Target) policy.Request { panic("unimplemented") }

// Decision labels for stepgate_requests_total (SPEC §10).
const (
	Forwarded       = "forwarded"
	Challenged      = "challenged"
	Unauthenticated = "unauthenticated"
	Denied          = "denied"
	Rejected        = "rejected"
	Audited         = "audited"
)

// Metrics are the gate's collectors.
type Metrics struct {
	Requests         *prometheus.CounterVec // rule, decision
	UpstreamDuration prometheus.Histogram
}

// NewMetrics creates the gate's collectors and registers them on reg (nil:
// not registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics { panic("unimplemented") }
