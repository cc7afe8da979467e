package challenge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/respond"
	"github.com/stepgate/stepgate/secondfactor"
)

// This file is the enrolment of factors: the limits and errors, list,
// remove, with a notification mail for each change. The TOTP ceremony and
// adding an authenticator app are in totp.go.

// Enrolment limits.
const (
	// FreshFactor is how old a second factor may be to add or remove one
	// (SPEC §11).
	FreshFactor = 5 * time.Minute
	// pendingTTL is how long a started TOTP enrolment can be confirmed.
	pendingTTL = 10 * time.Minute
	// maxFactors bounds a user's factors, pending ones included.
	maxFactors = 10
	// factorTimeout bounds one factor-store call, so a database that
	// hangs answers 503 instead of holding the request.
	factorTimeout = 5 * time.Second
)

var (
	// ErrReplayed means the TOTP code's time step was already accepted.
	ErrReplayed = errors.New("code already used")
	// ErrNoFactor means the user has no factor of that method (or no such
	// factor id).
	ErrNoFactor = errors.New("no such factor")
	// ErrFactorsUnavailable means the factor store failed: ceremonies
	// that need it answer 503 and never claim success.
	ErrFactorsUnavailable = errors.New("factor store unavailable")
	// ErrNotEnabled means the method is not in factors.enabled.
	ErrNotEnabled = errors.New("method not enabled")
	// ErrBadName means a factor name that is empty, too long or not text.
	ErrBadName = errors.New("invalid factor name")
	// ErrTooManyFactors means the user has maxFactors already.
	ErrTooManyFactors = errors.New("too many factors")
)

// methodEnabled reports whether m is in Config.Methods (nil: email only).
func (s *Service) methodEnabled(m string) bool {
	if s.cfg.Methods == nil {
		return m == secondfactor.MethodEmail
	}
	return slices.Contains(s.cfg.Methods, m)
}

func (s *Service) factorCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, factorTimeout)
}

func storeErr(err error) error { return fmt.Errorf("%w: %w", ErrFactorsUnavailable, err) }

// userFactors lists id's factors; nil store (totp off) lists none.
func (s *Service) userFactors(ctx context.Context, id identity.Identity) ([]factors.Factor, error) {
	if s.cfg.Factors == nil {
		return nil, nil
	}
	ctx, cancel := s.factorCtx(ctx)
	defer cancel()
	fs, err := s.cfg.Factors.List(ctx, id.Subject)
	if err != nil {
		return nil, storeErr(err)
	}
	return fs, nil
}

// hasTOTP reports whether fs holds a confirmed TOTP factor.
func hasTOTP(fs []factors.Factor) bool {
	for _, f := range fs {
		if f.Type == factors.TypeTOTP && f.Confirmed {
			return true
		}
	}
	return false
}

// AvailableMethods is what id can use among allowed (nil: every enabled
// method), strongest first, email last (SPEC §11 chooser).
func (s *Service) AvailableMethods(ctx context.Context, id identity.Identity, allowed []string) ([]string, error) {
	var out []string
	ok := func(m string) bool {
		return s.methodEnabled(m) && (allowed == nil || slices.Contains(allowed, m))
	}
	if ok(secondfactor.MethodPasskey) {
		has, err := s.HasPasskey(ctx, id)
		if err != nil {
			return nil, storeErr(err)
		}
		if has {
			out = append(out, secondfactor.MethodPasskey)
		}
	}
	if ok(secondfactor.MethodTOTP) {
		fs, err := s.userFactors(ctx, id)
		if err != nil {
			return nil, err
		}
		if hasTOTP(fs) {
			out = append(out, secondfactor.MethodTOTP)
		}
	}
	if ok(secondfactor.MethodEmail) && len(id.Emails) > 0 {
		out = append(out, secondfactor.MethodEmail)
	}
	return out, nil
}

// FactorView is a factor as the user sees it (GET /api/factors).
type FactorView struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Name       string `json:"name"`
	CreatedAt  int64  `json:"created_at"`             // unix seconds
	LastUsedAt int64  `json:"last_used_at,omitempty"` // unix seconds; absent for never
	Pending    bool   `json:"pending,omitempty"`      // enrolment not confirmed yet
}

func viewOf(f factors.Factor) FactorView {
	v := FactorView{ID: f.ID, Type: f.Type, Name: f.Name, CreatedAt: f.CreatedAt.Unix(), Pending: !f.Confirmed}
	if !f.LastUsedAt.IsZero() {
		v.LastUsedAt = f.LastUsedAt.Unix()
	}
	return v
}

// ListFactors returns id's factors (pending ones whose enrolment can
// still be confirmed included), oldest first.
func (s *Service) ListFactors(ctx context.Context, id identity.Identity) ([]FactorView, error) {
	fs, err := s.userFactors(ctx, id)
	if err != nil {
		return nil, err
	}
	out := []FactorView{}
	for _, f := range fs {
		if !f.Confirmed && s.now().Sub(f.CreatedAt) > pendingTTL {
			continue
		}
		out = append(out, viewOf(f))
	}
	return out, nil
}

// checkName trims and validates a factor name; "" becomes def.
func checkName(name, def string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		name = def
	}
	if len(name) > factors.MaxNameLen || !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", ErrBadName
	}
	return name, nil
}

// RemoveFactor deletes id's factor fid (the caller checked the second
// factor's freshness) and mails the user. Errors: ErrNoFactor,
// ErrFactorsUnavailable.
func (s *Service) RemoveFactor(ctx context.Context, id identity.Identity, fid string, m Meta) error {
	if s.cfg.Factors == nil {
		return ErrNoFactor
	}
	fctx, cancel := s.factorCtx(ctx)
	defer cancel()
	f, err := s.cfg.Factors.Get(fctx, id.Subject, fid)
	if errors.Is(err, factors.ErrNotFound) {
		return ErrNoFactor
	}
	if err != nil {
		return storeErr(err)
	}
	if err := s.cfg.Factors.Delete(fctx, id.Subject, fid); errors.Is(err, factors.ErrNotFound) {
		return ErrNoFactor
	} else if err != nil {
		return storeErr(err)
	}
	s.audit(ctx, slog.LevelInfo, "factor removed", "factor_removed", "ok", id, m, nil, slog.String("factor", fid), slog.String("type", f.Type))
	if f.Confirmed {
		s.notify(ctx, id, "A second factor was removed", fmt.Sprintf("The %s factor %q was removed from your account at %s.", typeLabel(f.Type), f.Name, s.now().UTC().Format(timeFormat)))
	}
	return nil
}

func typeLabel(t string) string {
	if t == factors.TypeTOTP {
		return "authenticator app"
	}
	return t
}

// factorErrorFor is errorFor's part for the factor ceremonies and the
// factor store's errors; nil means errorFor decides.
func factorErrorFor(o op, err error) *respond.HTTPError {
	if errors.Is(err, ErrFactorsUnavailable) {
		return &respond.HTTPError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Title: "Try again shortly",
			Msg:    "Your second factors could not be read right now. Please try again in a moment; nothing was changed.",
			APIMsg: "the factor store is unavailable; nothing was changed", Op: "factor store", Err: err}
	}
	if o != opTOTP && o != opEnrol && o != opRemove && o != opFactors {
		return nil
	}
	switch {
	case errors.Is(err, ErrReplayed):
		return &respond.HTTPError{Status: http.StatusUnauthorized, Code: "replayed_otp", Title: "Enter your code",
			Msg: "That code was already used. Wait for the next code in your app.", APIMsg: "that time step was already used"}
	case errors.Is(err, ErrInvalidCode):
		return &respond.HTTPError{Status: http.StatusUnauthorized, Code: "invalid_otp", Title: "Enter your code",
			Msg: "That code is not right. Check your app and try again.", APIMsg: "wrong code"}
	case errors.Is(err, ErrNoFactor):
		return &respond.HTTPError{Status: http.StatusNotFound, Code: "no_factor", Title: "No such factor",
			Msg: "There is no such second factor on your account (an enrolment must be confirmed within 10 minutes).", APIMsg: "no such factor"}
	case errors.Is(err, ErrNotEnabled):
		return &respond.HTTPError{Status: http.StatusNotFound, Code: "not_enabled", Title: "Not available",
			Msg: "Authenticator apps are not enabled here.", APIMsg: "that method is not enabled"}
	case errors.Is(err, ErrBadName):
		return &respond.HTTPError{Status: http.StatusBadRequest, Code: "invalid_name", Title: "Choose another name",
			Msg: fmt.Sprintf("A name must be text of at most %d bytes.", factors.MaxNameLen), APIMsg: "invalid name"}
	case errors.Is(err, ErrTooManyFactors):
		return &respond.HTTPError{Status: http.StatusConflict, Code: "too_many_factors", Title: "Too many factors",
			Msg: fmt.Sprintf("You can have at most %d second factors. Remove one first.", maxFactors), APIMsg: "too many factors"}
	case errors.Is(err, errNotFresh):
		return &respond.HTTPError{Status: http.StatusUnauthorized, Code: "insufficient_user_authentication", Title: "Confirm it's you",
			Msg:    fmt.Sprintf("Changing your second factors needs a second factor from the last %d minutes.", freshMins()),
			APIMsg: fmt.Sprintf("a second factor no older than %d minutes is required", freshMins())}
	case errors.Is(err, ErrStoreUnavailable):
		return &respond.HTTPError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Title: "Try again shortly",
			Msg: "Your code could not be checked right now. Please try again in a moment.", APIMsg: "the code could not be checked; try again later",
			Op: "verify totp", Err: err}
	}
	return nil
}

// freshMins is FreshFactor in whole minutes, as the pages say it.
func freshMins() int { return int(FreshFactor / time.Minute) }

// errNotFresh means the request holds no second factor from the last
// FreshFactor, which adding and removing factors need.
var errNotFresh = errors.New("second factor not fresh")
