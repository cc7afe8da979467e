package challenge

import (
	"net/http"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
)

// totpRequest is PUT /api/totp and PUT /api/factors/totp/{id}.
type totpRequest struct {
	Code string `json:"code"`
}

// nameRequest is POST /api/factors/totp.
type nameRequest struct {
	Name string `json:"name"`
}

// methodsFor is what id can use for the rule deciding rd ("" or no
// RuleMethods: every enabled method).
func (s *Service) methodsFor(r *http.Request, id identity.Identity, rd string) ([]string, error) {
	return s.AvailableMethods(r.Context(), id, s.allowedFor(r, rd))
}

// allowedFor is the methods of the rule deciding rd; nil means any
// enabled method.
func (s *Service) allowedFor(r *http.Request, rd string) []string {
	if rd == "" || s.cfg.RuleMethods == nil {
		return nil
	}
	return s.cfg.RuleMethods(r, respond.CleanRedirect(rd))
}

// apiTOTP is PUT /api/totp: like PUT /api/email-otp, with a code from an
// authenticator app (SPEC §11).
func (s *Service) apiTOTP(w http.ResponseWriter, r *http.Request) {
	var req totpRequest
	id, ok := s.apiUserBody(w, r, &req)
	if !ok {
		return
	}
	g, err := s.VerifyTOTP(r.Context(), id, req.Code, meta(r))
	if err != nil {
		errorFor(opTOTP, err).WriteJSON(w, s.h.log)
		return
	}
	s.writeGrant(w, g)
}

// fresh reports whether r holds a second factor of id no older than
// FreshFactor (any method).
func (s *Service) fresh(r *http.Request, id identity.Identity) bool {
	_, ok := s.cfg.Tokens.Check(r, id, FreshFactor)
	return ok
}

// apiFactors is GET /api/factors.
func (s *Service) apiFactors(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, true)
	if !ok {
		return
	}
	list, err := s.ListFactors(r.Context(), id)
	if err != nil {
		errorFor(opFactors, err).WriteJSON(w, s.h.log)
		return
	}
	respond.JSON(w, http.StatusOK, list)
}

// apiBeginTOTP is POST /api/factors/totp {"name"}: a pending factor and
// what the app needs; it needs a second factor ≤ 5 minutes old.
func (s *Service) apiBeginTOTP(w http.ResponseWriter, r *http.Request) {
	var req nameRequest
	id, ok := s.apiUserBody(w, r, &req)
	if !ok {
		return
	}
	if !s.fresh(r, id) {
		errorFor(opEnrol, errNotFresh).WriteJSON(w, s.h.log)
		return
	}
	e, err := s.BeginTOTP(r.Context(), id, req.Name, meta(r))
	if err != nil {
		errorFor(opEnrol, err).WriteJSON(w, s.h.log)
		return
	}
	respond.JSON(w, http.StatusCreated, e)
}

// apiConfirmTOTP is PUT /api/factors/totp/{id} {"code"}.
func (s *Service) apiConfirmTOTP(w http.ResponseWriter, r *http.Request) {
	var req totpRequest
	id, ok := s.apiUserBody(w, r, &req)
	if !ok {
		return
	}
	if err := s.ConfirmTOTP(r.Context(), id, r.PathValue("id"), req.Code, meta(r)); err != nil {
		errorFor(opEnrol, err).WriteJSON(w, s.h.log)
		return
	}
	respond.JSON(w, http.StatusOK, map[string]bool{"confirmed": true})
}

// apiRemoveFactor is DELETE /api/factors/{id}; it needs a second factor
// ≤ 5 minutes old, a passkey if the user has one (freshFor: else an email
// code could remove the user's passkey and then add an attacker's).
func (s *Service) apiRemoveFactor(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r, true)
	if !ok {
		return
	}
	if !s.freshFor(r, id) {
		errorFor(opRemove, errNotFresh).WriteJSON(w, s.h.log)
		return
	}
	if err := s.RemoveFactor(r.Context(), id, r.PathValue("id"), meta(r)); err != nil {
		errorFor(opRemove, err).WriteJSON(w, s.h.log)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// triggerMethods fills the SPEC §11 fields of GET /api/trigger.
func (s *Service) triggerMethods(r *http.Request, id identity.Identity, t *triggerResponse) error {
	methods, err := s.methodsFor(r, id, r.URL.Query().Get("rd"))
	if err != nil {
		return err
	}
	if methods == nil {
		methods = []string{}
	}
	t.Methods = methods
	fs, err := s.userFactors(r.Context(), id)
	if err != nil {
		return err
	}
	t.IsAuthenticatorVerified = hasTOTP(fs)
	if t.IsPasskeyVerified, err = s.HasPasskey(r.Context(), id); err != nil {
		return storeErr(err)
	}
	return nil
}
