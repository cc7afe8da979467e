// Package factors is the enrolled second factors beyond email (TOTP
// authenticator apps, passkeys): their model, the durable Store that keeps
// them, and the encryption of their secrets at rest.
//
// A factor belongs to one user (the identity's subject). Its secret (a TOTP
// seed, a passkey's private state) is sealed with AES-256-GCM by a Keyring
// before it reaches a Store, with the user and the factor id as associated
// data, so a sealed secret copied to another row or user does not open.
// Type-specific data that is not secret (TOTP digits and period, a passkey's
// credential id and public key) lives in Public, as JSON of the type's
// choosing.
//
// Drivers: factors/sqlitestore (the default, one file, pure Go) and
// factors/pgstore (PostgreSQL, shared by replicas). factors/storetest is the
// suite both pass.
package factors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Types of factor. The email method is not a stored factor: its addresses
// come from the identity.
const (
	TypeTOTP    = "totp"
	TypePasskey = "passkey"
)

// Factor is one enrolled (or, until Confirmed, pending) factor.
type Factor struct {
	// ID is the factor's random, globally unique id (NewID).
	ID string
	// User is the subject of the identity that owns the factor.
	User string
	// Type is TypeTOTP, TypePasskey, or a later type.
	Type string
	// Name is the user's label ("Work phone"); at most MaxNameLen bytes.
	Name string
	// CreatedAt is when enrolment began.
	CreatedAt time.Time
	// LastUsedAt is the last successful verification; zero for never.
	LastUsedAt time.Time
	// Confirmed is false while enrolment is pending (a TOTP factor before
	// its first valid code); a pending factor never satisfies a challenge.
	Confirmed bool
	// Counter only grows (Store.Advance): the last accepted TOTP time step,
	// or a passkey's signature counter. It is what makes replay refusal
	// atomic across replicas.
	Counter int64
	// Public is type-specific data that is not secret (JSON).
	Public []byte
	// Secret is the sealed secret (Keyring.Seal); never plaintext in a Store.
	Secret []byte
	// Lookup is the keyed hash (Keyring.Lookup) of what must be unique
	// among all stored factors, a passkey's credential id; nil for none (a
	// TOTP factor). The stores keep it in a UNIQUE column: Create or
	// SetLookup of a Lookup another factor holds is ErrDuplicate.
	Lookup []byte
}

// MaxNameLen bounds Factor.Name.
const MaxNameLen = 64

// NewID returns a fresh random factor id (32 hex digits).
func NewID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("factor id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Store keeps enrolled factors durably. Every method is safe for concurrent
// use, also by several processes sharing one database (PostgreSQL), and the
// methods that decide security (Advance, Confirm, ReplacePublic,
// ReplaceSecret) are single conditional statements, so no interleaving
// accepts a time step twice or loses a concurrent write.
//
// Methods address a factor by user and id together: a factor id of another
// user is ErrNotFound. An error other than ErrNotFound means the database
// failed (callers answer 503), never that a credential was wrong.
type Store interface {
	// Create stores f (pending or confirmed). f.ID must be new. A
	// non-nil f.Lookup that another factor holds is ErrDuplicate, in the
	// same statement as the insert: of concurrent Creates of one
	// credential exactly one succeeds.
	Create(ctx context.Context, f Factor) error

	// Get returns the user's factor id, or ErrNotFound.
	Get(ctx context.Context, user, id string) (Factor, error)

	// List returns the user's factors, pending ones included, oldest first.
	List(ctx context.Context, user string) ([]Factor, error)

	// All returns every factor of every user, by user then age (for
	// `stepgate factors list` and rekey).
	All(ctx context.Context) ([]Factor, error)

	// Confirm turns the user's pending factor id into a usable one, with
	// counter as its Counter and now as LastUsedAt. A factor that is
	// missing or already confirmed is ErrNotFound.
	Confirm(ctx context.Context, user, id string, counter int64, now time.Time) error

	// Advance atomically sets the confirmed factor's Counter to counter and
	// LastUsedAt to now if and only if its Counter is below counter. It
	// reports whether it did: false means the counter (a TOTP time step)
	// was already used, or the factor is gone or pending.
	Advance(ctx context.Context, user, id string, counter int64, now time.Time) (bool, error)

	// Touch sets the confirmed factor's LastUsedAt to now if and only if
	// its Counter is still 0: a passkey whose authenticator keeps no
	// signature counter (WebAuthn §6.1.1, both counters zero) is used
	// without Advance. It reports whether it did; false means the factor
	// has a counter (so a zero count is a regression), is gone or pending.
	Touch(ctx context.Context, user, id string, now time.Time) (bool, error)

	// ReplacePublic sets the factor's Public data to next if it is still
	// prev (compare and swap: a passkey's backup state, or its
	// possibly-cloned mark). It reports whether it did; false means the
	// data changed meanwhile (read it again) or the factor is gone. There
	// is no unconditional write of Public, so a writer that read the
	// factor before a concurrent change (a Cloned mark) cannot undo it.
	ReplacePublic(ctx context.Context, user, id string, prev, next []byte) (bool, error)

	// ReplaceSecret sets the factor's sealed secret to next if it is still
	// prev (compare and swap, for rekey). It reports whether it did.
	ReplaceSecret(ctx context.Context, user, id string, prev, next []byte) (bool, error)

	// SetLookup sets the factor's Lookup (Reindex: a row stored before the
	// column, or after the encryption key changed). A lookup another
	// factor holds is ErrDuplicate; a missing factor is ErrNotFound.
	SetLookup(ctx context.Context, user, id string, lookup []byte) error

	// Delete removes the user's factor id, or returns ErrNotFound.
	Delete(ctx context.Context, user, id string) error

	// Counts returns the number of confirmed factors per type.
	Counts(ctx context.Context) (map[string]int, error)

	// Ping reports whether the database answers (for /readyz).
	Ping(ctx context.Context) error

	// Close releases the database.
	Close() error
}

var (
	// ErrNotFound means no such factor for that user (or not in the state
	// the call needs).
	ErrNotFound = errors.New("no such factor")
	// ErrSchemaTooNew means the database was migrated by a newer stepgate
	// than this binary; it refuses to start rather than misread it.
	ErrSchemaTooNew = errors.New("factor database schema is newer than this stepgate knows")
)
