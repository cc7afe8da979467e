package challenge

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/secondfactor"
)

// triggerResponse is GET /api/trigger (SPEC §6 field names).
type triggerResponse struct {
	IsEmailOtpAuthenticatorVerified bool
	Emails                          []string
	// IsAuthenticatorVerified: a TOTP app is enrolled (SPEC §11).
	IsAuthenticatorVerified bool
	// IsPasskeyVerified: a usable passkey is registered.
	IsPasskeyVerified bool
	// Methods the user can use for the rule deciding ?rd=, strongest first.
	Methods []string
}

// sendRequest is POST /api/email-otp: an address of the user's, or an
// index into the trigger's list; exactly one of them.
type sendRequest struct {
	Email *string `json:"email"`
	Index *int    `json:"index"`
}

type sendResponse struct {
	IsPosted  bool
	ExpiresIn int // seconds
}

// verifyRequest is PUT /api/email-otp.
type verifyRequest struct {
	OTP string `json:"otp"`
}

type verifyResponse struct {
	SecondFactorAuthenticationToken string
	ExpiresIn                       int // seconds
}

// otpError is an API error that also says how many tries are left.
type otpError struct {
	Error        string `json:"error"`
	Description  string `json:"error_description,omitempty"`
	AttemptsLeft *int   `json:"attempts_left,omitempty"`
	// FailuresLeft is, after a wrong code, how many more wrong codes the
	// user may have checked this rolling hour before the lockout.
	FailuresLeft *int `json:"failures_left,omitempty"`
}

type validateResponse struct {
	Valid     bool   `json:"valid"`
	Subject   string `json:"sub,omitempty"`
	AuthTime  int64  `json:"auth_time,omitempty"`
	ExpiresAt int64  `json:"expires_at,omitempty"`
	// Method is the factor that granted the token (email, totp, passkey).
	Method string `json:"method,omitempty"`
	Error  string `json:"error,omitempty"`
}

func apiError(w http.ResponseWriter, status int, code, desc string) {
	respond.JSON(w, status, respond.APIError{Error: code, Description: desc})
}

// decodeJSON reads one JSON object into v, strictly: unknown fields and
// trailing data are refused (400), bodies over 4 KiB too (413). It also
// requires Content-Type: application/json (else 415): a cross-site HTML
// form can only send urlencoded, multipart or text/plain bodies, and a
// cross-site script sending JSON needs a CORS preflight that stepgate
// never grants, so this is what makes the cookie-authenticated API safe
// from CSRF without a token. It answers and returns false on failure.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		apiError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send Content-Type: application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBytes))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if dec.Decode(&struct{}{}) != io.EOF {
			err = errors.New("trailing data")
		}
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			apiError(w, http.StatusRequestEntityTooLarge, "too_large", "request body too large")
			return false
		}
		apiError(w, http.StatusBadRequest, "invalid_request", "the body must be one JSON object with the documented fields")
		return false
	}
	return true
}

// apiUserBody is how every API call with a body that stepgate decodes
// starts: the user is identified (a 401 before any look at the body),
// then the body is decoded strictly into v (decodeJSON). It answers and
// returns false on failure.
func (s *Service) apiUserBody(w http.ResponseWriter, r *http.Request, v any) (identity.Identity, bool) {
	id, ok := s.identify(w, r, true)
	if !ok || !decodeJSON(w, r, v) {
		return identity.Identity{}, false
	}
	return id, true
}

// writeGrant is the answer of every step-up the API grants (PUT
// /api/email-otp, PUT /api/totp, POST /api/passkey/finish): the cookie,
// and the token with its lifetime in seconds (SPEC §6 field names).
func (s *Service) writeGrant(w http.ResponseWriter, g secondfactor.Grant) {
	s.cfg.Tokens.SetCookie(w, g)
	respond.JSON(w, http.StatusOK, verifyResponse{
		SecondFactorAuthenticationToken: g.Token,
		ExpiresIn:                       max(0, int(g.ExpiresAt.Sub(s.h.now())/time.Second)),
	})
}

// apiTrigger is GET /api/trigger.
func (s *Service) apiTrigger(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, true)
	if !ok {
		return
	}
	t := triggerResponse{
		IsEmailOtpAuthenticatorVerified: len(id.Emails) > 0 && s.methodEnabled("email"),
		Emails:                          maskEmails(id.Emails),
	}
	if err := s.triggerMethods(r, id, &t); err != nil {
		errorFor(opFactors, err).WriteJSON(w, s.h.log)
		return
	}
	respond.JSON(w, http.StatusOK, t)
}

// apiSend is POST /api/email-otp.
func (s *Service) apiSend(w http.ResponseWriter, r *http.Request) {
	var req sendRequest
	id, ok := s.apiUserBody(w, r, &req)
	if !ok {
		return
	}
	idx := -1
	switch {
	case (req.Email == nil) == (req.Index == nil):
		apiError(w, http.StatusBadRequest, "invalid_request", `give exactly one of "email" and "index"`)
		return
	case req.Index != nil:
		idx = *req.Index
	default:
		for i, e := range id.Emails {
			// Domains are case-insensitive and providers treat local
			// parts alike; the code still goes to the stored address.
			if strings.EqualFold(e, *req.Email) {
				idx = i
				break
			}
		}
	}
	if idx < 0 || idx >= len(id.Emails) {
		apiError(w, http.StatusBadRequest, "invalid_email", "not one of your addresses")
		return
	}
	expiresIn, err := s.Send(r.Context(), id, idx, meta(r))
	if err != nil {
		errorFor(opSend, err).WriteJSON(w, s.h.log)
		return
	}
	respond.JSON(w, http.StatusOK, sendResponse{IsPosted: true, ExpiresIn: int(expiresIn / time.Second)})
}

// apiVerify is PUT /api/email-otp.
func (s *Service) apiVerify(w http.ResponseWriter, r *http.Request) {
	var req verifyRequest
	id, ok := s.apiUserBody(w, r, &req)
	if !ok {
		return
	}
	g, err := s.Verify(r.Context(), id, req.OTP, meta(r))
	if err != nil {
		e := errorFor(opVerify, err)
		if n := attemptsLeft(err); n != nil {
			oe := otpError{Error: e.Code, Description: e.APIDescription(), AttemptsLeft: n}
			if ce, ok := errors.AsType[*CodeError](err); ok && ce.FailuresLeft >= 0 {
				oe.FailuresLeft = &ce.FailuresLeft
			}
			respond.JSON(w, e.Status, oe)
			return
		}
		e.WriteJSON(w, s.h.log)
		return
	}
	s.writeGrant(w, g)
}

// apiValidate is GET /api/validate: a back end presents the user's access
// token and the second-factor token (second_factor.header) and learns whether
// the token is valid for that user and session.
func (s *Service) apiValidate(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, true)
	if !ok {
		return
	}
	tok := r.Header.Get(s.cfg.Tokens.HeaderName())
	if tok == "" {
		respond.JSON(w, http.StatusUnauthorized, validateResponse{Error: "missing_token"})
		return
	}
	g, err := s.cfg.Tokens.Validate(r.Context(), tok, id)
	if err != nil {
		// The validate answer has its own shape (SPEC §6): the error code
		// only, never a description.
		e := errorFor(opValidate, err)
		e.LogCause(s.h.log)
		respond.JSON(w, e.Status, validateResponse{Error: e.Code})
		return
	}
	respond.JSON(w, http.StatusOK, validateResponse{Valid: true, Subject: g.Subject,
		AuthTime: g.AuthTime.Unix(), ExpiresAt: g.ExpiresAt.Unix(), Method: g.Method})
}
