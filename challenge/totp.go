package challenge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/totp"
	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/secondfactor"
)

// This file is the TOTP ceremony (step-up with an authenticator app) and
// the enrolment of an authenticator app (pending until one valid code).

// VerifyTOTP checks code against id's TOTP factors and mints a TOTP grant.
// Errors: *CodeError (wrong code, counted against
// otp.max_failures_per_hour like a wrong email code), ErrReplayed (the
// time step was already used on that factor, on any replica),
// ErrNoFactor, *LimitError (locked), ErrStoreUnavailable,
// ErrFactorsUnavailable.
func (s *Service) VerifyTOTP(ctx context.Context, id identity.Identity, code string, m Meta) (secondfactor.Grant, error) {
	done := func(result string, lvl slog.Level, cause error) {
		s.metrics.FactorVerified.WithLabelValues(secondfactor.MethodTOTP, result).Inc()
		msg, event := "totp code failed", "totp_failed"
		switch result {
		case verifyOK:
			msg, event = "totp code verified", "totp_verified"
		case verifyLocked:
			msg, event = "user locked out", "totp_locked"
		}
		s.audit(ctx, lvl, msg, event, result, id, m, cause)
	}
	if !s.methodEnabled(secondfactor.MethodTOTP) || s.cfg.Factors == nil {
		done(verifyNoFactor, slog.LevelInfo, nil)
		return secondfactor.Grant{}, ErrNotEnabled
	}
	now := s.now()
	o := s.cfg.OTP
	if left, err := s.cfg.Store.Locked(ctx, id.Subject, now); err != nil {
		done(verifyStoreError, slog.LevelError, err)
		return secondfactor.Grant{}, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	} else if left > 0 {
		done(verifyLocked, slog.LevelWarn, nil)
		return secondfactor.Grant{}, &LimitError{RetryAfter: left, Err: ErrLocked}
	}
	fs, err := s.userFactors(ctx, id)
	if err != nil {
		done(verifyStoreError, slog.LevelError, err)
		return secondfactor.Grant{}, err
	}
	if !hasTOTP(fs) {
		done(verifyNoFactor, slog.LevelInfo, nil)
		return secondfactor.Grant{}, ErrNoFactor
	}
	// The check is admitted and counted as a failure before it is made,
	// as for email codes, so concurrent guesses on any replica never get
	// more than otp.max_failures_per_hour codes checked.
	ticket, left, err := s.cfg.Store.BeginCheck(ctx, id.Subject, now, o.MaxFailuresPerHour, o.Lockout)
	if err != nil {
		done(verifyStoreError, slog.LevelError, err)
		return secondfactor.Grant{}, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if ticket == "" {
		done(verifyLocked, slog.LevelWarn, nil)
		return secondfactor.Grant{}, &LimitError{RetryAfter: max(left, time.Second), Err: ErrLocked}
	}
	input, _ := canonicalCode(code, s.cfg.TOTP.Digits)
	matched := false
	for _, f := range fs {
		if f.Type != factors.TypeTOTP || !f.Confirmed {
			continue
		}
		step, ok, err := s.matchTOTP(f, input, now)
		if err != nil {
			s.endCheck(ctx, id, ticket, false, now)
			done(verifyStoreError, slog.LevelError, fmt.Errorf("factor %s: %w", f.ID, err))
			return secondfactor.Grant{}, storeErr(err)
		}
		if !ok {
			continue
		}
		matched = true
		fctx, cancel := s.factorCtx(ctx)
		won, err := s.cfg.Factors.Advance(fctx, f.User, f.ID, step, now)
		cancel()
		if err != nil {
			s.endCheck(ctx, id, ticket, false, now)
			done(verifyStoreError, slog.LevelError, err)
			return secondfactor.Grant{}, storeErr(err)
		}
		if !won {
			continue // replayed on this factor; another factor may still take it
		}
		s.endCheck(ctx, id, ticket, false, now)
		g, err := s.cfg.Tokens.MintMethod(ctx, id, secondfactor.MethodTOTP)
		if err != nil {
			done(verifyStoreError, slog.LevelError, err)
			return secondfactor.Grant{}, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
		}
		done(verifyOK, slog.LevelInfo, nil)
		return g, nil
	}
	if matched {
		// Right code, step already used: not counted as a failure (a
		// double submit), but never accepted twice.
		s.endCheck(ctx, id, ticket, false, now)
		done(verifyReplayed, slog.LevelWarn, nil)
		return secondfactor.Grant{}, ErrReplayed
	}
	locked, err := s.cfg.Store.EndCheck(ctx, id.Subject, ticket, true, now, o.MaxFailuresPerHour, o.Lockout)
	if err != nil {
		done(verifyStoreError, slog.LevelError, err)
		return secondfactor.Grant{}, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if locked > 0 {
		done(verifyLocked, slog.LevelWarn, nil)
		return secondfactor.Grant{}, &LimitError{RetryAfter: locked, Err: ErrLocked}
	}
	done(verifyInvalid, slog.LevelWarn, nil)
	return secondfactor.Grant{}, &CodeError{AttemptsLeft: -1, FailuresLeft: -1}
}

// matchTOTP opens f's secret and matches input (canonicalCode's output)
// against it; err means the secret or its parameters do not read (an
// operator problem: keys or data).
func (s *Service) matchTOTP(f factors.Factor, input string, now time.Time) (step int64, ok bool, err error) {
	secret, _, err := s.cfg.Keyring.Open(f.User, f.ID, f.Secret)
	if err != nil {
		return 0, false, err
	}
	defer clear(secret)
	p, err := totp.ParamsOf(f.Public, s.cfg.TOTP.Skew)
	if err != nil {
		return 0, false, err
	}
	step, ok = totp.Match(secret, input, now, p)
	return step, ok, nil
}

// Enrolment is a started TOTP enrolment: what the user's app needs.
type Enrolment struct {
	ID     string `json:"id"`
	Secret string `json:"secret"` // base32, for manual entry
	URI    string `json:"otpauth_uri"`
}

// BeginTOTP starts enrolling an authenticator app for id: a new secret,
// stored sealed as a pending factor, usable only after ConfirmTOTP. The
// caller has checked that id holds a second factor no older than
// FreshFactor. The user's abandoned pending TOTP enrolments are dropped.
func (s *Service) BeginTOTP(ctx context.Context, id identity.Identity, name string, m Meta) (Enrolment, error) {
	if !s.methodEnabled(secondfactor.MethodTOTP) || s.cfg.Factors == nil {
		return Enrolment{}, ErrNotEnabled
	}
	name, err := checkName(name, "Authenticator app")
	if err != nil {
		return Enrolment{}, err
	}
	fs, err := s.userFactors(ctx, id)
	if err != nil {
		return Enrolment{}, err
	}
	ctx, cancel := s.factorCtx(ctx)
	defer cancel()
	n := 0
	for _, f := range fs {
		if f.Type == factors.TypeTOTP && !f.Confirmed {
			if err := s.cfg.Factors.Delete(ctx, f.User, f.ID); err != nil && !errors.Is(err, factors.ErrNotFound) {
				return Enrolment{}, storeErr(err)
			}
			continue
		}
		n++
	}
	if n >= maxFactors {
		return Enrolment{}, ErrTooManyFactors
	}
	fid, err := factors.NewID()
	if err != nil {
		return Enrolment{}, storeErr(err)
	}
	secret, err := totp.NewSecret()
	if err != nil {
		return Enrolment{}, storeErr(err)
	}
	defer clear(secret)
	sealed, err := s.cfg.Keyring.Seal(id.Subject, fid, secret)
	if err != nil {
		return Enrolment{}, storeErr(err)
	}
	account := id.Subject
	if len(id.Emails) > 0 {
		account = id.Emails[0]
	}
	uri, err := totp.URI(s.cfg.TOTPIssuer, account, secret, s.cfg.TOTP)
	if err != nil {
		return Enrolment{}, storeErr(err)
	}
	f := factors.Factor{
		ID: fid, User: id.Subject, Type: factors.TypeTOTP, Name: name,
		CreatedAt: s.now(), Public: totp.PublicOf(s.cfg.TOTP), Secret: sealed,
	}
	if err := s.cfg.Factors.Create(ctx, f); err != nil {
		return Enrolment{}, storeErr(err)
	}
	s.audit(ctx, slog.LevelInfo, "totp enrolment started", "factor_enrolment_started", "ok", id, m, nil, slog.String("factor", fid))
	return Enrolment{ID: fid, Secret: totp.Base32(secret), URI: uri}, nil
}

// PendingTOTP returns the enrolment data of id's pending factor fid again
// (the setup page after a wrong code, its QR image), or ErrNoFactor.
func (s *Service) PendingTOTP(ctx context.Context, id identity.Identity, fid string) (Enrolment, FactorView, error) {
	f, err := s.pending(ctx, id, fid)
	if err != nil {
		return Enrolment{}, FactorView{}, err
	}
	secret, _, err := s.cfg.Keyring.Open(f.User, f.ID, f.Secret)
	if err != nil {
		return Enrolment{}, FactorView{}, storeErr(err)
	}
	defer clear(secret)
	account := id.Subject
	if len(id.Emails) > 0 {
		account = id.Emails[0]
	}
	p, err := totp.ParamsOf(f.Public, s.cfg.TOTP.Skew)
	if err != nil {
		return Enrolment{}, FactorView{}, storeErr(err)
	}
	uri, err := totp.URI(s.cfg.TOTPIssuer, account, secret, p)
	if err != nil {
		return Enrolment{}, FactorView{}, storeErr(err)
	}
	return Enrolment{ID: f.ID, Secret: totp.Base32(secret), URI: uri}, viewOf(f), nil
}

// pending returns id's pending TOTP factor fid still within pendingTTL.
func (s *Service) pending(ctx context.Context, id identity.Identity, fid string) (factors.Factor, error) {
	if s.cfg.Factors == nil {
		return factors.Factor{}, ErrNoFactor
	}
	ctx, cancel := s.factorCtx(ctx)
	defer cancel()
	f, err := s.cfg.Factors.Get(ctx, id.Subject, fid)
	if errors.Is(err, factors.ErrNotFound) {
		return factors.Factor{}, ErrNoFactor
	}
	if err != nil {
		return factors.Factor{}, storeErr(err)
	}
	if f.Type != factors.TypeTOTP || f.Confirmed || s.now().Sub(f.CreatedAt) > pendingTTL {
		return factors.Factor{}, ErrNoFactor
	}
	return f, nil
}

// ConfirmTOTP makes id's pending factor fid usable once code is right
// (RFC 6238 with the factor's parameters); the step used to confirm cannot
// be used again to step up. A wrong code counts against the user's hourly
// failures like any wrong code. Errors: *CodeError, ErrNoFactor (none
// pending, or expired), *LimitError, ErrStoreUnavailable,
// ErrFactorsUnavailable.
func (s *Service) ConfirmTOTP(ctx context.Context, id identity.Identity, fid, code string, m Meta) error {
	now := s.now()
	o := s.cfg.OTP
	if left, err := s.cfg.Store.Locked(ctx, id.Subject, now); err != nil {
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	} else if left > 0 {
		return &LimitError{RetryAfter: left, Err: ErrLocked}
	}
	f, err := s.pending(ctx, id, fid)
	if err != nil {
		return err
	}
	ticket, left, err := s.cfg.Store.BeginCheck(ctx, id.Subject, now, o.MaxFailuresPerHour, o.Lockout)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if ticket == "" {
		return &LimitError{RetryAfter: max(left, time.Second), Err: ErrLocked}
	}
	input, _ := canonicalCode(code, s.cfg.TOTP.Digits)
	step, ok, err := s.matchTOTP(f, input, now)
	if err != nil {
		s.endCheck(ctx, id, ticket, false, now)
		return storeErr(err)
	}
	if !ok {
		locked, err := s.cfg.Store.EndCheck(ctx, id.Subject, ticket, true, now, o.MaxFailuresPerHour, o.Lockout)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
		}
		s.audit(ctx, slog.LevelWarn, "totp enrolment code failed", "factor_enrolment_failed", verifyInvalid, id, m, nil, slog.String("factor", fid))
		if locked > 0 {
			return &LimitError{RetryAfter: locked, Err: ErrLocked}
		}
		return &CodeError{AttemptsLeft: -1, FailuresLeft: -1}
	}
	s.endCheck(ctx, id, ticket, false, now)
	fctx, cancel := s.factorCtx(ctx)
	defer cancel()
	if err := s.cfg.Factors.Confirm(fctx, f.User, f.ID, step, now); errors.Is(err, factors.ErrNotFound) {
		return ErrNoFactor
	} else if err != nil {
		return storeErr(err)
	}
	s.audit(ctx, slog.LevelInfo, "factor added", "factor_added", "ok", id, m, nil, slog.String("factor", fid), slog.String("type", f.Type))
	s.notify(ctx, id, "An authenticator app was added", fmt.Sprintf("An authenticator app (%q) was added as a second factor to your account at %s.", f.Name, now.UTC().Format(timeFormat)))
	return nil
}
