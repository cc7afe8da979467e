package challenge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/stepgate/stepgate/factors/passkey"
	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/secondfactor"
)

// This file is the passkey (WebAuthn) ceremonies on top of factors/passkey:
// step-up with a passkey, and adding one. The relying party does the
// cryptography and keeps the challenges; this layer adds the lockout, the
// audit records, the metrics, the grant and the notification mails.

// maxPasskeyJSON bounds a passkey answer's body: an attestation with a
// certificate chain is a few KiB, above maxJSONBytes; the handler's
// maxFormBytes (16 KiB) bounds every body already.
const maxPasskeyJSON = maxFormBytes

var (
	// errPasskeyNotEnabled: factors.enabled has no passkey (or no relying
	// party is configured).
	errPasskeyNotEnabled = errors.New("passkeys are not enabled")
	// errPasskeyNotFresh: adding a passkey without a second factor from
	// the last FreshFactor.
	errPasskeyNotFresh = errors.New("second factor not fresh enough to add a passkey")
)

// passkeyUser is the relying party's view of id.
func passkeyUser(id identity.Identity) passkey.User {
	u := passkey.User{Subject: id.Subject, Session: id.Session}
	if len(id.Emails) > 0 {
		u.Name = id.Emails[0]
	}
	return u
}

// passkeys returns the relying party, or errPasskeyNotEnabled.
func (s *Service) passkeys() (*passkey.RP, error) {
	if s.cfg.Passkeys == nil {
		return nil, errPasskeyNotEnabled
	}
	return s.cfg.Passkeys, nil
}

// HasPasskey reports whether id has a usable passkey (false when passkeys
// are off).
func (s *Service) HasPasskey(ctx context.Context, id identity.Identity) (bool, error) {
	rp, err := s.passkeys()
	if err != nil {
		return false, nil
	}
	ok, err := rp.HasPasskey(ctx, id.Subject)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errPasskeyStore, err)
	}
	return ok, nil
}

// errPasskeyStore wraps a failure of the factor store or the challenge
// store during a passkey ceremony: 503, nothing claimed.
var errPasskeyStore = errors.New("passkey data unavailable")

// BeginPasskey starts a passkey step-up for id: the options for
// navigator.credentials.get. Errors: passkey.ErrNoPasskey, *LimitError
// (locked out), errPasskeyNotEnabled, errPasskeyStore.
func (s *Service) BeginPasskey(ctx context.Context, id identity.Identity) (json.RawMessage, error) {
	rp, err := s.passkeys()
	if err != nil {
		return nil, err
	}
	if left, err := s.cfg.Store.Locked(ctx, id.Subject, s.now()); err != nil {
		return nil, fmt.Errorf("%w: %w", errPasskeyStore, err)
	} else if left > 0 {
		return nil, &LimitError{RetryAfter: left, Err: ErrLocked}
	}
	opts, err := rp.BeginLogin(ctx, passkeyUser(id))
	return beginAnswer(opts, err, passkey.ErrNoPasskey)
}

// beginAnswer is what both begin calls answer: the options for the
// browser as JSON; the error the caller maps to its own page (known)
// as it is; any other error as the store's (errPasskeyStore).
func beginAnswer(opts any, err, known error) (json.RawMessage, error) {
	if err != nil {
		if errors.Is(err, known) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errPasskeyStore, err)
	}
	return json.Marshal(opts)
}

// FinishPasskey verifies the browser's answer and mints a passkey grant.
// A refused answer counts against the user's hourly failures like a wrong
// code; a counter regression is audited at error level and the credential
// stays marked possibly cloned. Errors: passkey.ErrNoChallenge,
// passkey.ErrRefused, passkey.ErrCloned, *LimitError,
// errPasskeyNotEnabled, errPasskeyStore.
func (s *Service) FinishPasskey(ctx context.Context, id identity.Identity, body []byte, m Meta) (secondfactor.Grant, error) {
	rp, err := s.passkeys()
	if err != nil {
		return secondfactor.Grant{}, err
	}
	now := s.now()
	if left, err := s.cfg.Store.Locked(ctx, id.Subject, now); err != nil {
		s.passkeyDone(ctx, verifyStoreError, id, m, passkey.Credential{}, slog.LevelError, err)
		return secondfactor.Grant{}, fmt.Errorf("%w: %w", errPasskeyStore, err)
	} else if left > 0 {
		s.passkeyDone(ctx, verifyLocked, id, m, passkey.Credential{}, slog.LevelWarn, nil)
		return secondfactor.Grant{}, &LimitError{RetryAfter: left, Err: ErrLocked}
	}
	// The answer is admitted and counted as a failure before it is
	// checked, as for codes, so concurrent answers on any replica never get
	// more than otp.max_failures_per_hour refused ones checked.
	o := s.cfg.OTP
	ticket, left, err := s.cfg.Store.BeginCheck(ctx, id.Subject, now, o.MaxFailuresPerHour, o.Lockout)
	if err != nil {
		s.passkeyDone(ctx, verifyStoreError, id, m, passkey.Credential{}, slog.LevelError, err)
		return secondfactor.Grant{}, fmt.Errorf("%w: %w", errPasskeyStore, err)
	}
	if ticket == "" {
		s.passkeyDone(ctx, verifyLocked, id, m, passkey.Credential{}, slog.LevelWarn, nil)
		return secondfactor.Grant{}, &LimitError{RetryAfter: max(left, time.Second), Err: ErrLocked}
	}
	c, err := rp.FinishLogin(ctx, passkeyUser(id), body)
	switch {
	case err == nil:
		s.endCheck(ctx, id, ticket, false, now)
	case errors.Is(err, passkey.ErrNoChallenge):
		// Expired, reused or never begun: not the user's fault more than a
		// second click is; not counted as a failure.
		s.endCheck(ctx, id, ticket, false, now)
		s.passkeyDone(ctx, verifyExpired, id, m, c, slog.LevelWarn, err)
		return secondfactor.Grant{}, err
	case errors.Is(err, passkey.ErrRefused), errors.Is(err, passkey.ErrCloned):
		result, lvl := verifyInvalid, slog.LevelWarn
		if errors.Is(err, passkey.ErrCloned) {
			result, lvl = passkeyCloned, slog.LevelError
		}
		s.passkeyDone(ctx, result, id, m, c, lvl, err)
		if result == passkeyCloned {
			s.notify(ctx, id, "A passkey was blocked",
				fmt.Sprintf("The passkey %q on your account was blocked at %s: its signature counter went backwards, which can mean it was copied. Remove it and add it again; if you did not expect this, contact your administrator.", c.Factor.Name, now.UTC().Format(time.RFC1123)))
		}
		locked, ferr := s.cfg.Store.EndCheck(ctx, id.Subject, ticket, true, now, o.MaxFailuresPerHour, o.Lockout)
		if ferr != nil {
			return secondfactor.Grant{}, fmt.Errorf("%w: %w", errPasskeyStore, ferr)
		}
		if locked > 0 {
			return secondfactor.Grant{}, &LimitError{RetryAfter: locked, Err: ErrLocked}
		}
		return secondfactor.Grant{}, err
	default:
		// A store error: the answer was not judged, as for TOTP.
		s.endCheck(ctx, id, ticket, false, now)
		s.passkeyDone(ctx, verifyStoreError, id, m, c, slog.LevelError, err)
		return secondfactor.Grant{}, fmt.Errorf("%w: %w", errPasskeyStore, err)
	}
	g, err := s.cfg.Tokens.MintMethod(ctx, id, secondfactor.MethodPasskey)
	if err != nil {
		s.passkeyDone(ctx, verifyStoreError, id, m, c, slog.LevelError, err)
		return secondfactor.Grant{}, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	s.passkeyDone(ctx, verifyOK, id, m, c, slog.LevelInfo, nil)
	return g, nil
}

// passkeyCloned is the result of an assertion whose counter went back.
const passkeyCloned = "cloned"

// passkeyAttrs are the audit attributes of a credential: its factor id,
// name and AAGUID; never its id, public key or signature.
func passkeyAttrs(c passkey.Credential) []slog.Attr {
	if c.Factor.ID == "" {
		return nil
	}
	return []slog.Attr{
		slog.String("method", secondfactor.MethodPasskey),
		slog.String("factor", c.Factor.ID),
		slog.String("factor_name", c.Factor.Name),
		slog.String("aaguid", c.AAGUID.String()),
		slog.Bool("backup_eligible", c.BackupEligible),
		slog.Bool("backup_state", c.BackupState),
	}
}

// passkeyDone counts and audits one passkey assertion.
func (s *Service) passkeyDone(ctx context.Context, result string, id identity.Identity, m Meta, c passkey.Credential, lvl slog.Level, cause error) {
	s.metrics.Passkey.WithLabelValues("assert", result).Inc()
	s.metrics.FactorVerified.WithLabelValues(secondfactor.MethodPasskey, result).Inc()
	msg, event := "passkey refused", "passkey_failed"
	switch result {
	case verifyOK:
		msg, event = "passkey verified", "passkey_verified"
	case passkeyCloned:
		msg, event = "passkey signature counter went backwards: credential marked possibly cloned", "passkey_cloned"
	case verifyLocked:
		msg, event = "user locked out", "passkey_locked"
	}
	s.audit(ctx, lvl, msg, event, result, id, m, cause, passkeyAttrs(c)...)
}

// freshFor reports whether r carries a second factor of id no older than
// FreshFactor (the one freshness rule of every enrolment and removal, SPEC
// §11) that may add a passkey or remove a factor. The first passkey can be added
// after any method (an email code, usually); once the user has one, only
// a passkey may add another, so that a stolen session plus the user's
// mailbox cannot plant an attacker's passkey next to the user's (the
// help desk resets a user who lost every passkey: README "Passkeys").
func (s *Service) freshFor(r *http.Request, id identity.Identity) bool {
	has, err := s.HasPasskey(r.Context(), id)
	if err != nil {
		return false
	}
	methods := ""
	if has {
		methods = secondfactor.MethodPasskey
	}
	_, ok := s.cfg.Tokens.CheckMethods(r, id, FreshFactor, methods)
	return ok
}

// BeginPasskeyRegistration starts adding a passkey named name for id; the
// caller checked freshness. Errors: passkey.ErrName,
// errPasskeyNotEnabled, errPasskeyStore.
func (s *Service) BeginPasskeyRegistration(ctx context.Context, id identity.Identity, name string) (json.RawMessage, error) {
	rp, err := s.passkeys()
	if err != nil {
		return nil, err
	}
	opts, err := rp.BeginRegistration(ctx, passkeyUser(id), name)
	return beginAnswer(opts, err, passkey.ErrName)
}

// FinishPasskeyRegistration verifies the browser's answer, stores the
// passkey and mails the user. Errors: passkey.ErrNoChallenge,
// passkey.ErrRefused, passkey.ErrNotAllowed, passkey.ErrDuplicate,
// errPasskeyNotEnabled, errPasskeyStore.
func (s *Service) FinishPasskeyRegistration(ctx context.Context, id identity.Identity, body []byte, m Meta) (passkey.Credential, error) {
	rp, err := s.passkeys()
	if err != nil {
		return passkey.Credential{}, err
	}
	c, err := rp.FinishRegistration(ctx, passkeyUser(id), body)
	result, lvl := "ok", slog.LevelInfo
	switch {
	case err == nil:
	case errors.Is(err, passkey.ErrNoChallenge):
		result, lvl = verifyExpired, slog.LevelWarn
	case errors.Is(err, passkey.ErrRefused), errors.Is(err, passkey.ErrDuplicate):
		result, lvl = verifyInvalid, slog.LevelWarn
	case errors.Is(err, passkey.ErrNotAllowed):
		result, lvl = "not_allowed", slog.LevelWarn
	default:
		result, lvl = verifyStoreError, slog.LevelError
		err = fmt.Errorf("%w: %w", errPasskeyStore, err)
	}
	s.metrics.Passkey.WithLabelValues("register", result).Inc()
	msg := "passkey added"
	if err != nil {
		msg = "passkey not added"
	}
	s.audit(ctx, lvl, msg, "factor_added", result, id, m, err, passkeyAttrs(c)...)
	if err != nil {
		return passkey.Credential{}, err
	}
	s.notify(ctx, id, "A passkey was added",
		fmt.Sprintf("A passkey (%q) was added as a second factor to your account at %s.", c.Factor.Name, s.now().UTC().Format(time.RFC1123)))
	return c, nil
}

// passkeyErrorFor maps the passkey ceremonies' errors; nil means errorFor
// decides (limits, the challenge store).
func passkeyErrorFor(err error) *respond.HTTPError {
	switch {
	case errors.Is(err, errPasskeyNotEnabled):
		return &respond.HTTPError{Status: http.StatusNotFound, Code: "not_enabled", Title: "Not available",
			Msg: "Passkeys are not enabled here.", APIMsg: "passkeys are not enabled"}
	case errors.Is(err, passkey.ErrNoPasskey):
		return &respond.HTTPError{Status: http.StatusNotFound, Code: "no_passkey", Title: "No passkey",
			Msg: "You have no passkey on this account. Use another way, or add a passkey after signing in with one.", APIMsg: "no passkey registered for this user"}
	case errors.Is(err, passkey.ErrNoChallenge):
		return &respond.HTTPError{Status: http.StatusUnauthorized, Code: "expired_challenge", Title: "Try again",
			Msg: "That passkey request expired or was already used. Try again.", APIMsg: "no pending passkey challenge (expired or already used); begin again"}
	case errors.Is(err, passkey.ErrCloned):
		return &respond.HTTPError{Status: http.StatusUnauthorized, Code: "passkey_cloned", Title: "This passkey was blocked",
			Msg:    "This passkey's signature counter went backwards, which can mean it was copied, so it has been blocked. Remove it and add it again, and tell your administrator if you did not expect this.",
			APIMsg: "the passkey's signature counter went backwards; it is blocked as possibly cloned"}
	case errors.Is(err, passkey.ErrNotAllowed):
		return &respond.HTTPError{Status: http.StatusForbidden, Code: "authenticator_not_allowed", Title: "Security key not allowed",
			Msg: "This kind of security key is not allowed here. Use one of the models your organisation has approved.", APIMsg: "this authenticator model is not allowed by factors.passkey.aaguids"}
	case errors.Is(err, passkey.ErrDuplicate):
		return &respond.HTTPError{Status: http.StatusConflict, Code: "duplicate_passkey", Title: "Already added",
			Msg: "This passkey is already on your account.", APIMsg: "this passkey is already registered"}
	case errors.Is(err, passkey.ErrName):
		return &respond.HTTPError{Status: http.StatusBadRequest, Code: "invalid_name", Title: "Choose a name",
			Msg: "Give the passkey a name of 1 to 64 characters, such as \u201cWork laptop\u201d.", APIMsg: passkey.ErrName.Error()}
	case errors.Is(err, passkey.ErrRefused):
		return &respond.HTTPError{Status: http.StatusUnauthorized, Code: "invalid_passkey", Title: "Passkey not accepted",
			Msg: "That passkey was not accepted. Use a passkey you added to this account, on this site.", APIMsg: "the passkey answer did not verify",
			Op: "passkey", Err: err}
	case errors.Is(err, errPasskeyNotFresh):
		return &respond.HTTPError{Status: http.StatusUnauthorized, Code: "insufficient_user_authentication", Title: "Confirm it's you",
			Msg:    fmt.Sprintf("Adding a passkey needs a second factor from the last %d minutes.", freshMins()),
			APIMsg: fmt.Sprintf("a second factor no older than %d minutes is required", freshMins())}
	case errors.Is(err, errPasskeyStore):
		return &respond.HTTPError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Title: "Try again shortly",
			Msg: "Your passkey could not be checked right now. Please try again in a moment; nothing was changed.", APIMsg: "passkey data unavailable; try again later",
			Op: "passkey", Err: err}
	}
	return nil
}

// passkeyError is errorFor for the passkey steps.
func passkeyError(err error) *respond.HTTPError {
	if e := passkeyErrorFor(err); e != nil {
		return e
	}
	return errorFor(opVerify, err)
}
