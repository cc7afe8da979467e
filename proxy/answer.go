package proxy

import (
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stepgate/stepgate/policy"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/secondfactor"
)

// The answers of SPEC §5 for requests that are not forwarded. Every one
// goes through respond, so each carries the safe headers and a browser gets
// a page while an API client gets JSON.

// reject answers 400 to a request upstreams might read differently from
// the policy (SPEC §4). why is logged, never shown.
func (g *Gate) reject(w http.ResponseWriter, r *http.Request, st *state, why string) {
	g.counters.incNone(outRejected)
	// The path is left out: it is what was found ambiguous, and may carry
	// anything. The rule is noRule, since no rule was consulted.
	g.audit(r, st, "request refused", "request_refused", Rejected, noRule, slog.String("reason", why))
	g.pages.Error(w, r, &respond.HTTPError{Status: http.StatusBadRequest, Code: "invalid_request", Title: "Bad request",
		Msg: "This address is ambiguous and was refused."})
}

// deny answers 403 (action deny).
func (g *Gate) deny(w http.ResponseWriter, r *http.Request, st *state) {
	g.audit(r, st, "denied", "denied", Denied, st.rule,
		slog.String("method", loggedMethod(r)), slog.String("path", loggedPath(st)))
	g.pages.Error(w, r, &respond.HTTPError{Status: http.StatusForbidden, Code: "access_denied", Title: "Access denied",
		Msg: "You are not allowed to access this page."})
}

// audit writes one audit record (SPEC §10): the event, the request id, the
// user (empty when unknown), the rule, the client address, the user agent
// and the outcome, plus extra. The query string, cookies and tokens are
// never logged: they may carry secrets. The user agent is the client's, so
// it is capped and stripped of control characters (respond.LogText); the
// request id is the gate's own or a trusted proxy's, validated.
func (g *Gate) audit(r *http.Request, st *state, msg, event, outcome, rule string, extra ...slog.Attr) {
	attrs := append([]slog.Attr{
		slog.String("event", event),
		slog.String("request_id", st.reqID),
		slog.String("user", st.id.Subject),
		slog.String("rule", rule),
		slog.String("client", peerAddr(r.RemoteAddr).String()),
		slog.String("user_agent", respond.LogText(r.UserAgent(), respond.MaxLoggedUserAgent)),
		slog.String("outcome", outcome),
	}, extra...)
	if st.via != "" {
		attrs = append(attrs, slog.String("via", st.via))
	}
	g.log.LogAttrs(r.Context(), slog.LevelInfo, msg, attrs...)
}

// loggedPath and loggedMethod are the request's canonical path and method
// as audit records carry them: chosen by the client, so capped and
// stripped of control characters (respond.LogText) like the user agent;
// the query string is never logged.
func loggedPath(st *state) string { return respond.LogText(st.target.Path, respond.MaxLoggedPath) }

func loggedMethod(r *http.Request) string { return respond.LogText(r.Method, respond.MaxLoggedMethod) }

// returnURL is the canonical path and query, the return address for the
// login and challenge pages.
func returnURL(t policy.Target) string {
	if t.RawQuery == "" {
		return t.Path
	}
	return t.Path + "?" + t.RawQuery
}

// unauthenticated answers a request without a valid primary identity:
// browsers go to the login page, API clients get RFC 6750 401.
func (g *Gate) unauthenticated(w http.ResponseWriter, r *http.Request, st *state) {
	g.log.Debug("unauthenticated", "request_id", st.reqID, "rule", st.rule)
	if respond.IsAPI(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="stepgate"`)
		respond.JSON(w, http.StatusUnauthorized, respond.APIError{
			Error: "unauthorized", Description: "Authentication is required"})
		return
	}
	if g.cfg.LoginURL == "" {
		g.pages.Error(w, r, &respond.HTTPError{Status: http.StatusUnauthorized, Code: "unauthorized", Title: "Sign in required",
			Msg: "Please sign in to the application first."})
		return
	}
	redirect(w, strings.ReplaceAll(g.cfg.LoginURL, "{rd}", url.QueryEscape(returnURL(st.target))))
}

// unavailable answers 503 with Retry-After to a request whose access
// token could not be checked in time: it needed a signature check and no
// verification slot came free within identity.jwt.verify_wait
// (identity.ErrBusy). Nothing is forwarded and nobody is sent to sign in:
// the token was not judged. Debug only: a flood would fill the log.
func (g *Gate) unavailable(w http.ResponseWriter, r *http.Request, st *state) {
	g.log.Debug("token verification shed", "request_id", st.reqID, "rule", st.rule)
	g.pages.Error(w, r, &respond.HTTPError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
		Title: "Try again shortly", Msg: "Your sign-in could not be checked right now. Please try again in a moment.",
		APIMsg: "identity could not be checked; try again", Header: http.Header{"Retry-After": {"1"}}})
}

// insufficient is the JSON body of an RFC 9470 challenge.
type insufficient struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	MaxAge      int64  `json:"max_age,omitempty"`
	ACRValues   string `json:"acr_values,omitempty"`
	Challenge   string `json:"challenge_url,omitempty"`
}

const insufficientDesc = "A second factor is required"

// whyChallenged are the step_up_required audit fields: the request, the
// rule's max_age as a duration string, and why no token counted
// (secondfactor.Reason: none, too old with its age, another user's or
// session's, a method the rule does not list, revoked, invalid).
func (g *Gate) whyChallenged(r *http.Request, st *state, d policy.Decision) []slog.Attr {
	attrs := []slog.Attr{slog.String("method", loggedMethod(r)), slog.String("path", loggedPath(st)),
		slog.String("max_age", d.MaxAge.String())}
	if g.cfg.SecondFactor == nil {
		return append(attrs, slog.String("reason", secondfactor.WhyNone))
	}
	why := g.cfg.SecondFactor.Why(r, st.id, d.MaxAge, d.Factors)
	attrs = append(attrs, slog.String("reason", why.Code))
	if why.Code == secondfactor.WhyTooOld {
		attrs = append(attrs, slog.String("age", why.Age.Round(time.Second).String()))
	}
	if d.Factors != "" {
		attrs = append(attrs, slog.String("factors", d.Factors))
	}
	return attrs
}

// challenge answers an identity without a fresh second factor (SPEC §5):
// browsers GET/HEAD go to the challenge page; other browser methods get a
// 401 page linking to it, since their body could not be replayed after the
// detour; API clients get the RFC 9470 §3 challenge.
func (g *Gate) challenge(w http.ResponseWriter, r *http.Request, st *state, d policy.Decision) {
	g.audit(r, st, "second factor required", "step_up_required", Challenged, st.rule, g.whyChallenged(r, st, d)...)
	var link string
	if g.cfg.Internal != nil {
		link = g.cfg.Prefix + "/challenge?rd=" + url.QueryEscape(returnURL(st.target))
	}
	maxAge := int64(d.MaxAge.Seconds())
	if respond.IsAPI(r) {
		var b strings.Builder
		b.WriteString(`Bearer error="insufficient_user_authentication", error_description="`)
		b.WriteString(insufficientDesc)
		b.WriteByte('"')
		if maxAge > 0 {
			b.WriteString(`, max_age="`)
			b.WriteString(strconv.FormatInt(maxAge, 10))
			b.WriteByte('"')
		}
		if d.ACR != "" {
			b.WriteString(`, acr_values="`)
			b.WriteString(quoteEscape(d.ACR))
			b.WriteByte('"')
		}
		w.Header().Set("WWW-Authenticate", b.String())
		respond.JSON(w, http.StatusUnauthorized, insufficient{
			Error: "insufficient_user_authentication", Description: insufficientDesc,
			MaxAge: maxAge, ACRValues: d.ACR, Challenge: link})
		return
	}
	if link != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead || st.redirectAny) {
		redirect(w, link)
		return
	}
	var l *respond.Link
	if link != "" {
		l = &respond.Link{URL: link, Text: "Verify it's you"}
	}
	g.pages.Error(w, r, &respond.HTTPError{Status: http.StatusUnauthorized, Code: "insufficient_user_authentication", Title: "Verification required",
		Msg: "This action needs a second factor. Verify it's you, then repeat the action.", Link: l})
}

// quoteEscape escapes s for an RFC 9110 §5.6.4 quoted-string.
func quoteEscape(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// redirect answers 302 without a body; the target is built by the gate
// from its config and the canonical path, never taken from the request.
func redirect(w http.ResponseWriter, location string) {
	respond.SecureHeaders(w.Header())
	w.Header().Set("Location", location)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusFound)
}
