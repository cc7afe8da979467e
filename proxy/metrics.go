package proxy

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Decision labels for stepgate_requests_total (SPEC §10).
const (
	Forwarded       = "forwarded"
	Challenged      = "challenged"
	Unauthenticated = "unauthenticated"
	Denied          = "denied"
	Rejected        = "rejected"
	Audited         = "audited"
	// Unavailable: the identity could not be checked in time (a token
	// verification shed by identity.jwt.verify_concurrency), answered 503
	// with Retry-After.
	Unavailable = "unavailable"
)

// outcome indexes the decision labels so that per-rule counters can be
// cached in arrays instead of being looked up by label strings.
type outcome uint8

const (
	outForwarded outcome = iota
	outChallenged
	outUnauthenticated
	outDenied
	outRejected
	outAudited
	outUnavailable
	numOutcomes
)

var outcomeLabels = [numOutcomes]string{Forwarded, Challenged, Unauthenticated, Denied, Rejected, Audited, Unavailable}

func (o outcome) String() string { return outcomeLabels[o] }

// noRule is the rule label of requests refused before any rule was
// consulted (SPEC §10: the label never comes from the request).
const noRule = "none"

// Metrics are the gate's collectors.
type Metrics struct {
	Requests         *prometheus.CounterVec // rule, decision
	UpstreamDuration prometheus.Histogram
}

// NewMetrics creates the gate's collectors and registers them on reg (nil:
// not registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stepgate_requests_total",
			Help: "Requests seen by the gate, by the rule that decided and the outcome.",
		}, []string{"rule", "decision"}),
		UpstreamDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stepgate_upstream_duration_seconds",
			Help:    "Time from sending a request upstream to its response headers (or failure).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.UpstreamDuration)
	}
	return m
}

// counterBox lets an interface value live behind an atomic.Pointer.
type counterBox struct{ c prometheus.Counter }

// requestCounters caches the stepgate_requests_total children of one
// compiled policy, indexed by rule index (+1, so the default is slot 0) and
// outcome. WithLabelValues hashes its arguments on every call; the cache
// makes counting a load and an atomic add. The cache belongs to a Gate, and
// a Gate to one Policy, so an index always names the same rule.
type requestCounters struct {
	vec   *prometheus.CounterVec
	rules [][numOutcomes]atomic.Pointer[counterBox]
	none  [numOutcomes]atomic.Pointer[counterBox]
}

func newRequestCounters(vec *prometheus.CounterVec, rules int) *requestCounters {
	return &requestCounters{vec: vec, rules: make([][numOutcomes]atomic.Pointer[counterBox], rules+1)}
}

// inc counts one request decided by rule (at index, -1 for the default).
// A rule index outside the policy is counted without the cache.
func (rc *requestCounters) inc(index int, rule string, o outcome) {
	slot := index + 1
	if slot < 0 || slot >= len(rc.rules) {
		rc.vec.WithLabelValues(rule, o.String()).Inc()
		return
	}
	load(&rc.rules[slot][o], rc.vec, rule, o).Inc()
}

// incNone counts one request refused before the policy decided.
func (rc *requestCounters) incNone(o outcome) {
	load(&rc.none[o], rc.vec, noRule, o).Inc()
}

func load(p *atomic.Pointer[counterBox], vec *prometheus.CounterVec, rule string, o outcome) prometheus.Counter {
	if b := p.Load(); b != nil {
		return b.c
	}
	// Concurrent first uses may both store; WithLabelValues returns the
	// same child for the same labels, so either box is right.
	b := &counterBox{c: vec.WithLabelValues(rule, o.String())}
	p.Store(b)
	return b.c
}
