package challenge

import (
	"context"
	"errors"
	"time"
)

// Store keeps the challenge state: pending codes, counters, throttles,
// lockouts and revoked token ids. Every method that decides security is
// atomic, even across processes sharing one backend (Redis), so that no
// interleaving allows more guesses or sends than configured. Every entry
// carries a TTL so nothing accumulates.
//
// user and key arguments are opaque strings chosen by the Service;
// implementations must not assume they are safe as raw backend keys.
type Store interface {
	// ThrottleSend records one code send for user if allowed: at most one
	// per resendAfter and at most maxPerHour in any rolling hour. When
	// refused it records nothing and returns a *LimitError wrapping
	// ErrThrottled with the time until a send would be allowed.
	ThrottleSend(ctx context.Context, user string, now time.Time, resendAfter time.Duration, maxPerHour int) error

	// PutCode stores code under key, replacing any pending code there, for ttl.
	// It returns ErrStoreFull when a bounded store holds too many codes.
	PutCode(ctx context.Context, key string, code Code, ttl time.Duration) error

	// PeekCode returns the pending code under key, or ErrNoCode.
	PeekCode(ctx context.Context, key string) (Code, error)

	// CheckCode atomically compares mac (in constant time) with the pending
	// code under key. Match: the code is deleted and CheckResult.OK is true;
	// of concurrent callers with the right mac exactly one gets OK. Mismatch:
	// the code's attempt count grows by one; when it reaches maxAttempts the
	// code is deleted (dead). No pending code: ErrNoCode.
	CheckCode(ctx context.Context, key string, mac []byte, maxAttempts int) (CheckResult, error)

	// AddFailure counts one failed verification for user in a rolling hour.
	// When the count reaches maxPerHour the user is locked (see LockEnd)
	// and the returned duration is the lock left (else 0): N means N.
	AddFailure(ctx context.Context, user string, now time.Time, maxPerHour int, lockout time.Duration) (time.Duration, error)

	// BeginCheck admits one code check for user under at most maxPerHour
	// wrong codes checked in any rolling hour (SPEC §3
	// otp.max_failures_per_hour), atomically, also across replicas sharing
	// the backend. A check is admitted only while no lock is running and
	// fewer than maxPerHour failures, checks in progress included, are
	// counted in the hour before now; it is then counted as a failure in
	// advance and a non-empty ticket for EndCheck is returned. Otherwise
	// the returned duration is the time until a check could be admitted:
	// the lock left, or (maxPerHour failures counted and no lock, which a
	// store may fix by locking) the time until the oldest counted failure
	// leaves the hour, or a short wait while checks in progress fill the
	// count. So no interleaving of concurrent checks, and no lockout shorter
	// than the hour, gets more than maxPerHour wrong codes checked in an
	// hour.
	BeginCheck(ctx context.Context, user string, now time.Time, maxPerHour int, lockout time.Duration) (ticket string, left time.Duration, err error)

	// EndCheck settles a check that BeginCheck admitted. failed=false (the
	// code was right, or no code was checked) withdraws the failure counted
	// in advance. failed=true keeps it; once maxPerHour failures are
	// counted the user is locked (see LockEnd), and the lock left is
	// returned (else 0).
	EndCheck(ctx context.Context, user, ticket string, failed bool, now time.Time, maxPerHour int, lockout time.Duration) (time.Duration, error)

	// FailuresLeft returns how many more wrong codes user may have checked
	// in the rolling hour before now: maxPerHour minus the failures
	// counted there (checks in progress included), never below 0, and the
	// time of the oldest of those (zero when none), from which LockEnd
	// tells when the lock those wrong codes would start ends. It is one
	// atomic read that changes nothing; it does not look at a running lock
	// (Locked does).
	FailuresLeft(ctx context.Context, user string, now time.Time, maxPerHour int) (left int, oldest time.Time, err error)

	// Locked returns the lockout left for user, 0 when not locked. A store
	// that detected the loss of its state (see Epoch) fails closed: every
	// user counts as locked out for a while, since the lockouts it lost are
	// unknown.
	Locked(ctx context.Context, user string, now time.Time) (time.Duration, error)

	// Revoke marks a token id revoked for ttl (until the token would expire).
	Revoke(ctx context.Context, jti string, ttl time.Duration) error

	// Epoch returns the store's state generation: an opaque random value
	// created with the store's state, which changes whenever that state is
	// lost (a Redis restarted empty or flushed, a new process for the
	// memory store). Every token names the epoch it was minted in, so that
	// a revocation lost with the state can never make a token valid again.
	Epoch(ctx context.Context) (string, error)

	// Revoked reports whether the token jti, minted in epoch, must be
	// refused: its id was revoked, or the store's epoch is no longer epoch
	// (its revocations were lost since the token was minted). It is on the
	// hot path.
	Revoked(ctx context.Context, jti, epoch string) (bool, error)

	// PutCeremony stores the server-side state of a pending ceremony (a
	// passkey challenge) under key for ttl. Keys are never reused: a new
	// ceremony gets a new key. It returns ErrStoreFull when a bounded store
	// holds too many.
	PutCeremony(ctx context.Context, key string, state []byte, ttl time.Duration) error

	// TakeCeremony atomically returns and deletes the state under key: of
	// concurrent callers exactly one gets it, the others ErrNoCeremony (as
	// after expiry), so one challenge is never used twice.
	TakeCeremony(ctx context.Context, key string) ([]byte, error)

	// Ping reports whether the backend is reachable (for /readyz).
	Ping(ctx context.Context) error

	// Close releases the backend.
	Close() error
}

// Code is a pending one-time code. Only a keyed hash of the code is kept.
type Code struct {
	MAC       []byte    // HMAC of the code bound to user, session and address
	Email     string    // the address the code was sent to
	Attempts  int       // wrong attempts so far
	ExpiresAt time.Time // when the code dies
}

// CheckResult is the outcome of Store.CheckCode.
type CheckResult struct {
	OK           bool // the mac matched and the code was consumed
	AttemptsLeft int  // after a mismatch: wrong tries left before the code dies (0 = dead)
	Code         Code // the code as it was before the check (Email for the grant)
}

var (
	// ErrNoCode means no pending code (never sent, expired, consumed or dead).
	ErrNoCode = errors.New("no pending code")
	// ErrNoCeremony means no pending ceremony under the key (never begun,
	// expired, or already taken).
	ErrNoCeremony = errors.New("no pending ceremony")
	// ErrStoreFull means a bounded store refused a new code.
	ErrStoreFull = errors.New("too many pending codes")
	// ErrThrottled is wrapped by a *LimitError when a send is refused.
	ErrThrottled = errors.New("too many codes sent")
	// ErrLocked is wrapped by a *LimitError while a user is locked out.
	ErrLocked = errors.New("too many failed attempts")
)

// LockEnd is when the lock that the failure settled at now starts ends
// (SPEC §3 otp.max_failures_per_hour, otp.lockout): the later of now+lockout
// and leaves, the moment the oldest of the maxPerHour failures counted in the
// hour leaves the rolling hour (its time plus one hour). So when the lockout
// is shorter than the hour, the lock lasts until a check may be admitted
// again without more than maxPerHour wrong codes checked in any rolling hour;
// a lock already running (until) is never shortened.
func LockEnd(now time.Time, lockout time.Duration, leaves, until time.Time) time.Time {
	end := now.Add(max(lockout, 0))
	if leaves.After(end) {
		end = leaves
	}
	if until.After(end) {
		end = until
	}
	return end
}

// LimitError is a refusal with the time after which trying again may work.
type LimitError struct {
	RetryAfter time.Duration
	Err        error // ErrThrottled or ErrLocked
}

func (e *LimitError) Error() string { return e.Err.Error() }
func (e *LimitError) Unwrap() error { return e.Err }
