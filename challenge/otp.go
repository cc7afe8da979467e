package challenge

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"strings"
	"time"

	"github.com/stepgate/stepgate/challenge/mailer"
	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/secondfactor"
)

// sendReleaser is a bounded store (MemoryStore), the only kind whose
// PutCode can refuse a code for lack of room after ThrottleSend took the
// send.
type sendReleaser interface {
	// releaseSend forgets the send ThrottleSend recorded for user at now.
	releaseSend(user string, now time.Time)
}

// Send issues a code to id.Emails[index]. Errors: *LimitError (throttled or
// locked), ErrMailUnavailable, ErrStoreUnavailable, ErrBadEmail.
//
// Order of work (SPEC §9): the address is validated before anything else;
// a locked-out user is refused before a send is counted; the throttle is
// taken before a code exists; the code's MAC is stored before the mail
// leaves, so that the code works the moment the user reads it. When the
// sender fails, the fresh code is killed (CheckCode with maxAttempts 1
// deletes it) so that a code the user was told was not sent can never be
// used, and ErrMailUnavailable is returned. The throttle stays taken: a
// failing mail server is not hammered by retries. A code the store has no
// room for (ErrStoreFull) is never sent, and its send is released.
func (s *Service) Send(ctx context.Context, id identity.Identity, index int, m Meta) (expiresIn time.Duration, err error) {
	if index < 0 || index >= len(id.Emails) || mailer.CheckAddress(id.Emails[index]) != nil {
		s.sendDone(ctx, sentBadEmail, id, m, slog.LevelWarn, nil)
		return 0, ErrBadEmail
	}
	addr := id.Emails[index]
	now := s.now()
	if left, err := s.cfg.Store.Locked(ctx, id.Subject, now); err != nil {
		s.sendDone(ctx, sentStoreError, id, m, slog.LevelError, err)
		return 0, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	} else if left > 0 {
		s.sendDone(ctx, sentLocked, id, m, slog.LevelWarn, nil, lockedUntil(now, left)...)
		return 0, &LimitError{RetryAfter: left, Err: ErrLocked}
	}
	o := s.cfg.OTP
	if err := s.cfg.Store.ThrottleSend(ctx, id.Subject, now, o.ResendAfter, o.MaxSendsPerHour); err != nil {
		var le *LimitError
		if errors.As(err, &le) {
			s.sendDone(ctx, sentThrottled, id, m, slog.LevelWarn, nil)
			return 0, le
		}
		s.sendDone(ctx, sentStoreError, id, m, slog.LevelError, err)
		return 0, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	code, err := newCode(o.Length)
	if err != nil {
		s.sendDone(ctx, sentStoreError, id, m, slog.LevelError, err)
		return 0, fmt.Errorf("%w: random: %w", ErrStoreUnavailable, err)
	}
	key := codeKey(id.Subject, id.Session)
	expires := now.Add(o.TTL)
	pending := Code{
		MAC:       codeMAC(s.otpKey, id.Subject, id.Session, addr, code),
		Email:     addr,
		ExpiresAt: expires,
	}
	if err := s.cfg.Store.PutCode(ctx, key, pending, o.TTL); err != nil {
		if r, ok := s.cfg.Store.(sendReleaser); ok && errors.Is(err, ErrStoreFull) {
			// Nothing was sent: the send must not count against the
			// user's throttle, or the retry would get 429.
			r.releaseSend(id.Subject, now)
		}
		s.sendDone(ctx, sentStoreError, id, m, slog.LevelError, err)
		return 0, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	msg := s.message(addr, code, expires)
	mctx, cancel := context.WithTimeout(ctx, s.mailTimeout)
	err = s.cfg.Sender.Send(mctx, msg)
	cancel()
	if err != nil {
		// Kill the code on a context that is not the (maybe cancelled)
		// request's, so the cleanup still runs.
		kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, kerr := s.cfg.Store.CheckCode(kctx, key, make([]byte, len(pending.MAC)), 1)
		kcancel()
		if kerr != nil && !errors.Is(kerr, ErrNoCode) {
			s.log.LogAttrs(ctx, slog.LevelError, "could not discard unsent code",
				slog.String("user", id.Subject), slog.String("error", kerr.Error()))
		}
		s.sendDone(ctx, sentMailError, id, m, slog.LevelError, err)
		return 0, fmt.Errorf("%w: %w", ErrMailUnavailable, err)
	}
	s.sendDone(ctx, sentOK, id, m, slog.LevelInfo, nil)
	return o.TTL, nil
}

// Verify consumes code and mints a Grant. Errors: *CodeError (wrong code,
// wrapping ErrInvalidCode), ErrNoCode (none pending: expired, dead, used),
// *LimitError (locked), ErrStoreUnavailable.
//
// A wrong code counts against the code (max_attempts) and against the user
// (max_failures_per_hour, across codes and sessions): the failure that
// reaches the hourly limit returns a *LimitError instead of a *CodeError,
// and from then on, until the lockout ends, every code, right or wrong,
// gets a *LimitError without being checked.
func (s *Service) Verify(ctx context.Context, id identity.Identity, code string, m Meta) (secondfactor.Grant, error) {
	now := s.now()
	o := s.cfg.OTP
	input, wellFormed := canonicalCode(code, o.Length)
	if left, err := s.cfg.Store.Locked(ctx, id.Subject, now); err != nil {
		s.verifyDone(ctx, verifyStoreError, id, m, slog.LevelError, err)
		return secondfactor.Grant{}, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	} else if left > 0 {
		s.verifyDone(ctx, verifyLocked, id, m, slog.LevelWarn, nil, lockedUntil(now, left)...)
		return secondfactor.Grant{}, &LimitError{RetryAfter: left, Err: ErrLocked}
	}
	key := codeKey(id.Subject, id.Session)
	pending, err := s.cfg.Store.PeekCode(ctx, key)
	if errors.Is(err, ErrNoCode) || (err == nil && !now.Before(pending.ExpiresAt)) {
		// The same MAC work as for a pending code, so that timing does
		// not tell whether a code is pending (STYLE 11).
		_ = codeMAC(s.otpKey, id.Subject, id.Session, "", input)
		s.verifyDone(ctx, verifyExpired, id, m, slog.LevelInfo, nil)
		return secondfactor.Grant{}, ErrNoCode
	}
	if err != nil {
		s.verifyDone(ctx, verifyStoreError, id, m, slog.LevelError, err)
		return secondfactor.Grant{}, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	mac := codeMAC(s.otpKey, id.Subject, id.Session, pending.Email, input)
	if !wellFormed {
		// Malformed input is a wrong code: it is still checked and
		// counted, with a MAC that cannot match.
		mac = make([]byte, len(mac))
	}
	// The check is admitted, and counted as a failure, before it is made,
	// so that concurrent checks, on any replica, never get more than
	// max_failures_per_hour wrong codes checked (SPEC §3: N means N).
	ticket, left, err := s.cfg.Store.BeginCheck(ctx, id.Subject, now, o.MaxFailuresPerHour, o.Lockout)
	if err != nil {
		s.verifyDone(ctx, verifyStoreError, id, m, slog.LevelError, err)
		return secondfactor.Grant{}, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if ticket == "" {
		s.verifyDone(ctx, verifyLocked, id, m, slog.LevelWarn, nil)
		return secondfactor.Grant{}, &LimitError{RetryAfter: max(left, time.Second), Err: ErrLocked}
	}
	res, err := s.cfg.Store.CheckCode(ctx, key, mac, o.MaxAttempts)
	if errors.Is(err, ErrNoCode) {
		// Consumed by a concurrent request, expired or dead meanwhile: no
		// code was checked, so no failure counts.
		s.endCheck(ctx, id, ticket, false, now)
		s.verifyDone(ctx, verifyExpired, id, m, slog.LevelInfo, nil)
		return secondfactor.Grant{}, ErrNoCode
	}
	if err != nil {
		// Unknown whether the code was checked: the failure stays counted.
		s.verifyDone(ctx, verifyStoreError, id, m, slog.LevelError, err)
		return secondfactor.Grant{}, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if res.OK {
		s.endCheck(ctx, id, ticket, false, now)
		g, err := s.cfg.Tokens.Mint(ctx, id)
		if err != nil {
			s.verifyDone(ctx, verifyStoreError, id, m, slog.LevelError, err)
			return secondfactor.Grant{}, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
		}
		s.verifyDone(ctx, verifyOK, id, m, slog.LevelInfo, nil)
		return g, nil
	}
	locked, err := s.cfg.Store.EndCheck(ctx, id.Subject, ticket, true, now, o.MaxFailuresPerHour, o.Lockout)
	if err != nil {
		s.verifyDone(ctx, verifyStoreError, id, m, slog.LevelError, err)
		return secondfactor.Grant{}, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if locked > 0 {
		s.verifyDone(ctx, verifyLocked, id, m, slog.LevelWarn, nil, lockedUntil(now, locked)...)
		return secondfactor.Grant{}, &LimitError{RetryAfter: locked, Err: ErrLocked}
	}
	s.verifyDone(ctx, verifyInvalid, id, m, slog.LevelWarn, nil)
	ce := &CodeError{AttemptsLeft: res.AttemptsLeft, FailuresLeft: -1}
	if n, oldest, err := s.cfg.Store.FailuresLeft(ctx, id.Subject, now, o.MaxFailuresPerHour); err != nil {
		// Only the warning is lost; the outcome stands.
		s.log.Warn("could not read the wrong codes left this hour", "user", id.Subject, "err", err)
	} else {
		// n more wrong codes now fill the hour; the lock they start
		// ends by LockEnd, the oldest counted failure leaving the hour.
		leaves := now.Add(time.Hour)
		if !oldest.IsZero() && n < o.MaxFailuresPerHour {
			leaves = oldest.Add(time.Hour)
		}
		ce.FailuresLeft, ce.LockedUntil = n, LockEnd(now, o.Lockout, leaves, time.Time{})
	}
	return secondfactor.Grant{}, ce
}

// endCheck withdraws a check's failure counted in advance. A store error
// leaves it counted (fail closed) and is logged; the outcome stands.
func (s *Service) endCheck(ctx context.Context, id identity.Identity, ticket string, failed bool, now time.Time) {
	o := s.cfg.OTP
	if _, err := s.cfg.Store.EndCheck(ctx, id.Subject, ticket, failed, now, o.MaxFailuresPerHour, o.Lockout); err != nil {
		s.log.Warn("could not settle a code check; it stays counted as a failure", "user", id.Subject, "err", err)
	}
}

// sendDone counts and audits one send (SPEC §10). Codes never appear.
func (s *Service) sendDone(ctx context.Context, result string, id identity.Identity, m Meta, lvl slog.Level, cause error, extra ...slog.Attr) {
	s.metrics.Sent.WithLabelValues(result).Inc()
	msg := "code sent"
	switch result {
	case sentOK:
	case sentLocked:
		msg = "code not sent: user locked out"
	default:
		msg = "code not sent"
	}
	s.audit(ctx, lvl, msg, "code_sent", result, id, m, cause, extra...)
}

// lockedUntil are the audit fields of a lockout: when it ends (RFC 3339,
// UTC) and how long is left, as a Go duration string.
func lockedUntil(now time.Time, left time.Duration) []slog.Attr {
	return []slog.Attr{
		slog.String("locked_until", now.Add(left).UTC().Format(time.RFC3339)),
		slog.String("retry_after", left.Round(time.Second).String()),
	}
}

// verifyDone counts and audits one verification (SPEC §10).
func (s *Service) verifyDone(ctx context.Context, result string, id identity.Identity, m Meta, lvl slog.Level, cause error, extra ...slog.Attr) {
	s.metrics.Verified.WithLabelValues(result).Inc()
	s.metrics.FactorVerified.WithLabelValues("email", result).Inc()
	var msg, event string
	switch result {
	case verifyOK:
		msg, event = "code verified", "code_verified"
	case verifyLocked:
		msg, event = "user locked out", "code_locked"
	default:
		msg, event = "code verification failed", "code_failed"
	}
	s.audit(ctx, lvl, msg, event, result, id, m, cause, extra...)
}

// mailHTML is the HTML part. It carries no link: the code is typed on the
// challenge page, so a mail can never sign anyone in (SPEC §9).
var mailHTML = template.Must(template.New("mail").Parse(`<!doctype html>
<html><body style="font-family:sans-serif">
<p>Your verification code for {{.For}} is:</p>
<p style="font-size:1.6em;font-weight:bold;letter-spacing:0.2em">{{.Code}}</p>
<p>It expires in {{.Minutes}}, at {{.At}}.</p>
<p>If you did not ask for this, ignore this message: nobody can use the code without also being signed in as you.</p>
</body></html>
`))

// message builds the mail for code (text and HTML parts).
func (s *Service) message(to, code string, expires time.Time) mailer.Message {
	d := struct{ For, Code, Minutes, At string }{
		For:     "signing in to a protected area",
		Code:    code,
		Minutes: humanDuration(s.cfg.OTP.TTL),
		At:      expires.In(s.cfg.zone()).Format("15:04 MST (2 Jan)"),
	}
	if s.cfg.UI.AppName != "" {
		d.For = s.cfg.UI.AppName
	}
	var text strings.Builder
	fmt.Fprintf(&text, "Your verification code for %s is:\n\n    %s\n\n", d.For, d.Code)
	fmt.Fprintf(&text, "It expires in %s, at %s.\n\n", d.Minutes, d.At)
	text.WriteString("If you did not ask for this, ignore this message: nobody can use the code without also being signed in as you.\n")
	var html strings.Builder
	if err := mailHTML.Execute(&html, d); err != nil {
		// The template is static and the data are plain strings; should
		// it ever fail, the text part alone still carries the message.
		html.Reset()
	}
	return mailer.Message{To: to, Subject: s.cfg.MailSubject, Text: text.String(), HTML: html.String()}
}
