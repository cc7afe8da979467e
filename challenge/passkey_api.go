package challenge

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
)

// readPasskeyJSON reads a passkey answer's body (the two finish calls):
// Content-Type application/json (the API's CSRF defence, see decodeJSON),
// at most maxPasskeyJSON bytes, one JSON value and nothing after it. The
// WebAuthn library parses the PublicKeyCredential itself; it is not
// decoded with unknown fields refused because browsers add members to it
// (authenticatorAttachment, clientExtensionResults, ...) that the library
// ignores. Bodies stepgate decodes itself go through decodeJSON. It
// answers and returns false on failure.
func readPasskeyJSON(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		apiError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send Content-Type: application/json")
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPasskeyJSON))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			apiError(w, http.StatusRequestEntityTooLarge, "too_large", "request body too large")
			return nil, false
		}
		apiError(w, http.StatusBadRequest, "invalid_request", "the body could not be read")
		return nil, false
	}
	if !json.Valid(b) {
		apiError(w, http.StatusBadRequest, "invalid_request", "the body must be JSON")
		return nil, false
	}
	return b, true
}

// apiUserPasskeyBody is how both finish calls start: the user is
// identified (a 401 before any look at the body), then the body read
// (readPasskeyJSON). It answers and returns false on failure.
func (s *Service) apiUserPasskeyBody(w http.ResponseWriter, r *http.Request) (identity.Identity, []byte, bool) {
	id, ok := s.identify(w, r, true)
	if !ok {
		return identity.Identity{}, nil, false
	}
	body, ok := readPasskeyJSON(w, r)
	if !ok {
		return identity.Identity{}, nil, false
	}
	return id, body, true
}

// writeOptions is the answer of both begin calls: the options for the
// browser, or the error as passkeyError maps it.
func (s *Service) writeOptions(w http.ResponseWriter, opts json.RawMessage, err error) {
	if err != nil {
		passkeyError(err).WriteJSON(w, s.h.log)
		return
	}
	writeRawJSON(w, http.StatusOK, opts)
}

// apiPasskeyBegin is POST /api/passkey/begin (body {}, strictly, like
// every body of the API): the options for navigator.credentials.get.
func (s *Service) apiPasskeyBegin(w http.ResponseWriter, r *http.Request) {
	id, ok := s.apiUserBody(w, r, &struct{}{})
	if !ok {
		return
	}
	opts, err := s.BeginPasskey(r.Context(), id)
	s.writeOptions(w, opts, err)
}

// apiPasskeyFinish is POST /api/passkey/finish (body: the
// PublicKeyCredential from navigator.credentials.get, as JSON): the same
// answer as PUT /api/email-otp, and the cookie.
func (s *Service) apiPasskeyFinish(w http.ResponseWriter, r *http.Request) {
	id, body, ok := s.apiUserPasskeyBody(w, r)
	if !ok {
		return
	}
	g, err := s.FinishPasskey(r.Context(), id, body, meta(r))
	if err != nil {
		passkeyError(err).WriteJSON(w, s.h.log)
		return
	}
	s.writeGrant(w, g)
}

// passkeyBeginRequest is POST /api/factors/passkey/begin.
type passkeyBeginRequest struct {
	Name string `json:"name"`
}

// PasskeyView is a registered passkey as the API shows it.
type PasskeyView struct {
	ID             string `json:"id"`
	Type           string `json:"type"`
	Name           string `json:"name"`
	CreatedAt      int64  `json:"created_at"`
	AAGUID         string `json:"aaguid"`
	BackupEligible bool   `json:"backup_eligible"`
	BackupState    bool   `json:"backup_state"`
}

// apiPasskeyRegisterBegin is POST /api/factors/passkey/begin {"name"}:
// the options for navigator.credentials.create. It needs a second factor
// no older than 5 minutes.
func (s *Service) apiPasskeyRegisterBegin(w http.ResponseWriter, r *http.Request) {
	var req passkeyBeginRequest
	id, ok := s.apiUserBody(w, r, &req)
	if !ok {
		return
	}
	if !s.freshFor(r, id) {
		passkeyError(errPasskeyNotFresh).WriteJSON(w, s.h.log)
		return
	}
	opts, err := s.BeginPasskeyRegistration(r.Context(), id, req.Name)
	s.writeOptions(w, opts, err)
}

// apiPasskeyRegisterFinish is POST /api/factors/passkey/finish (body: the
// PublicKeyCredential from navigator.credentials.create): 201 with the
// new passkey. Freshness is checked again: the begin may be 5 minutes old.
func (s *Service) apiPasskeyRegisterFinish(w http.ResponseWriter, r *http.Request) {
	id, body, ok := s.apiUserPasskeyBody(w, r)
	if !ok {
		return
	}
	if !s.freshFor(r, id) {
		passkeyError(errPasskeyNotFresh).WriteJSON(w, s.h.log)
		return
	}
	c, err := s.FinishPasskeyRegistration(r.Context(), id, body, meta(r))
	if err != nil {
		passkeyError(err).WriteJSON(w, s.h.log)
		return
	}
	respond.JSON(w, http.StatusCreated, PasskeyView{
		ID: c.Factor.ID, Type: c.Factor.Type, Name: c.Factor.Name, CreatedAt: c.Factor.CreatedAt.Unix(),
		AAGUID: c.AAGUID.String(), BackupEligible: c.BackupEligible, BackupState: c.BackupState,
	})
}

// writeRawJSON writes b (already JSON) with the API's headers.
func writeRawJSON(w http.ResponseWriter, status int, b []byte) {
	respond.SecureHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// passkeyRoutes are the passkey pages and API, below the prefix.
func (s *Service) passkeyRoutes() map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"GET /passkey":                     s.servePasskey,
		"GET /passkey.js":                  s.serveScript,
		"GET /factors/passkey":             s.serveAddPasskey,
		"POST /api/passkey/begin":          s.apiPasskeyBegin,
		"POST /api/passkey/finish":         s.apiPasskeyFinish,
		"POST /api/factors/passkey/begin":  s.apiPasskeyRegisterBegin,
		"POST /api/factors/passkey/finish": s.apiPasskeyRegisterFinish,
	}
}
