package challenge

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the challenge's Prometheus collectors (SPEC §10).
type Metrics struct {
	// Sent counts send attempts by result: ok, throttled, locked,
	// mail_error, store_error, bad_email.
	Sent *prometheus.CounterVec
	// Verified counts verifications by result: ok, invalid, expired,
	// locked, store_error.
	Verified *prometheus.CounterVec
	// Passkey counts passkey ceremonies (stepgate_passkey_total) by
	// ceremony (assert: step-up; register: adding one) and result: ok,
	// invalid, expired, cloned, locked, not_allowed, store_error.
	Passkey *prometheus.CounterVec
	// FactorVerified counts verifications of every method by method and
	// result (stepgate_factor_verify_total): ok, invalid, replayed,
	// locked, no_factor, store_error.
	FactorVerified *prometheus.CounterVec
}

// Result label values of stepgate_otp_sent_total.
const (
	sentOK         = "ok"
	sentThrottled  = "throttled"
	sentLocked     = "locked"
	sentMailError  = "mail_error"
	sentStoreError = "store_error"
	sentBadEmail   = "bad_email"
)

// Result label values of stepgate_otp_verify_total.
const (
	verifyOK         = "ok"
	verifyInvalid    = "invalid"
	verifyExpired    = "expired"
	verifyLocked     = "locked"
	verifyStoreError = "store_error"
	verifyReplayed   = "replayed"  // totp: the time step was already used
	verifyNoFactor   = "no_factor" // totp: the user has none enrolled
)

// NewMetrics creates the collectors and registers them with reg. A nil reg
// creates them without registering (STYLE: no default registry).
// Every result label is initialised to zero so that dashboards and alerts
// see the series before the first event.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stepgate_otp_sent_total",
			Help: "One-time code sends by result.",
		}, []string{"result"}),
		Verified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stepgate_otp_verify_total",
			Help: "One-time code verifications by result.",
		}, []string{"result"}),
	}
	m.Passkey = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stepgate_passkey_total",
		Help: "Passkey ceremonies (assert = step-up, register = adding one) by result.",
	}, []string{"ceremony", "result"})
	for _, r := range []string{verifyOK, verifyInvalid, verifyExpired, passkeyCloned, verifyLocked, verifyStoreError} {
		m.Passkey.WithLabelValues("assert", r)
	}
	for _, r := range []string{verifyOK, verifyInvalid, verifyExpired, "not_allowed", verifyStoreError} {
		m.Passkey.WithLabelValues("register", r)
	}
	m.FactorVerified = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stepgate_factor_verify_total",
		Help: "Second-factor verifications by method (email, totp, passkey) and result.",
	}, []string{"method", "result"})
	for _, r := range []string{verifyOK, verifyInvalid, verifyExpired, verifyLocked, verifyStoreError} {
		m.FactorVerified.WithLabelValues("email", r)
	}
	for _, r := range []string{verifyOK, verifyInvalid, verifyReplayed, verifyLocked, verifyNoFactor, verifyStoreError} {
		m.FactorVerified.WithLabelValues("totp", r)
	}
	for _, r := range []string{verifyOK, verifyInvalid, verifyExpired, passkeyCloned, verifyLocked, verifyStoreError} {
		m.FactorVerified.WithLabelValues("passkey", r)
	}
	for _, r := range []string{sentOK, sentThrottled, sentLocked, sentMailError, sentStoreError, sentBadEmail} {
		m.Sent.WithLabelValues(r)
	}
	for _, r := range []string{verifyOK, verifyInvalid, verifyExpired, verifyLocked, verifyStoreError} {
		m.Verified.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Sent, m.Verified, m.Passkey, m.FactorVerified)
	}
	return m
}
