// Package passkey is the WebAuthn relying party of stepgate: the options of
// a registration or an assertion, their server-side challenge state, the
// verification of the authenticator's answer (github.com/go-webauthn/webauthn)
// and the passkey's record in the factor store.
//
// A challenge is random (the library's 32 bytes from crypto/rand), kept
// server-side in the short-lived challenge Store under a key that binds it to
// the user, the login session and the ceremony, lives at most Config.Timeout
// (5 minutes), and is taken atomically when the answer arrives: of two tabs
// or replicas finishing with one challenge, exactly one proceeds.
//
// Step-up always requires user verification (WebAuthn §5.8.6 "required"),
// so a passkey is both something the user has and something the user is or
// knows. The signature counter never goes backwards: a regression marks the
// credential possibly cloned (WebAuthn §6.1.1), and a credential so marked
// is refused until it is removed and registered again.
package passkey

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/stepgate/stepgate/factors"
)

// States keeps pending ceremonies (challenge.Store satisfies it): a put
// with a TTL, and a take that returns the state once and never again.
type States interface {
	PutCeremony(ctx context.Context, key string, state []byte, ttl time.Duration) error
	TakeCeremony(ctx context.Context, key string) ([]byte, error)
}

// RP is a relying party; safe for concurrent use.
type RP struct {
	cfg    Config
	wa     *webauthn.WebAuthn
	store  factors.Store
	keys   *factors.Keyring
	states States
	noCer  error // the States' "no such ceremony" error, or nil
	now    func() time.Time
}

// User is who registers or steps up: the identity's subject and login
// session, and the names the authenticator shows.
type User struct {
	Subject string
	Session string
	// Name is the account name shown by the authenticator (an email
	// address, else the subject).
	Name string
}

// Errors a caller branches on. Every other error is a technical failure
// (the database or the challenge store), answered 503.
var (
	// ErrNoPasskey: the user has no usable passkey (none registered, or
	// every one marked possibly cloned).
	ErrNoPasskey = errors.New("no passkey registered")
	// ErrNoChallenge: the answer names no pending challenge of this user
	// and session: never begun, expired, already used, or begun by another
	// user or session.
	ErrNoChallenge = errors.New("no pending passkey challenge (expired or already used)")
	// ErrRefused: the authenticator's answer does not verify (wrong
	// origin or relying party, user not verified, bad signature, a
	// credential that is not one of the user's).
	ErrRefused = errors.New("passkey not accepted")
	// ErrCloned: the signature counter went backwards; the credential is
	// now marked possibly cloned and refused.
	ErrCloned = errors.New("passkey signature counter went backwards: possibly cloned")
	// ErrNotAllowed: registration of an authenticator model that the
	// policy (factors.passkey.aaguids) does not list, or whose attestation
	// does not prove it.
	ErrNotAllowed = errors.New("this kind of security key is not allowed here")
	// ErrDuplicate: the credential is already registered.
	ErrDuplicate = errors.New("this passkey is already registered")
	// ErrTaken: the credential id is registered to another user (WebAuthn
	// L2 §7.1 step 22); it is also ErrDuplicate.
	ErrTaken = fmt.Errorf("%w to another account", ErrDuplicate)
)

// userHandle is the WebAuthn user id of a subject: a hash, so the
// authenticator never stores the subject itself (WebAuthn §14.6.1).
func userHandle(subject string) []byte {
	h := sha256.Sum256([]byte("stepgate passkey user v1\x00" + subject))
	return h[:]
}

// waUser adapts a User and their credentials to webauthn.User.
type waUser struct {
	u     User
	creds []webauthn.Credential
}

func (w *waUser) WebAuthnID() []byte { return userHandle(w.u.Subject) }
func (w *waUser) WebAuthnName() string {
	if w.u.Name != "" {
		return w.u.Name
	}
	return w.u.Subject
}
func (w *waUser) WebAuthnDisplayName() string                { return w.WebAuthnName() }
func (w *waUser) WebAuthnCredentials() []webauthn.Credential { return w.creds }

// stateKey binds a pending challenge to its ceremony, user and session.
// The challenge is part of it, so each tab has its own and a second begin
// does not cancel the first.
func stateKey(kind string, u User, challenge string) string {
	var b bytes.Buffer
	b.WriteString("passkey ")
	b.WriteString(kind)
	for _, s := range []string{u.Subject, u.Session, challenge} {
		b.WriteByte(0)
		fmt.Fprintf(&b, "%d:", len(s))
		b.WriteString(s)
	}
	return b.String()
}

// pending is what a ceremony keeps server-side between begin and finish.
type pending struct {
	Session webauthn.SessionData `json:"s"`
	// Name is the label the user chose (registration only).
	Name string `json:"n,omitempty"`
}

func (rp *RP) put(ctx context.Context, kind string, u User, p pending) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("passkey: %w", err)
	}
	if err := rp.states.PutCeremony(ctx, stateKey(kind, u, p.Session.Challenge), b, rp.cfg.Timeout); err != nil {
		return fmt.Errorf("passkey: keep challenge: %w", err)
	}
	return nil
}

// take consumes the pending ceremony named by the challenge the client
// signed. A challenge of another user, session or ceremony is not found.
func (rp *RP) take(ctx context.Context, kind string, u User, challenge string) (pending, error) {
	if challenge == "" || len(challenge) > 128 {
		return pending{}, ErrNoChallenge
	}
	b, err := rp.states.TakeCeremony(ctx, stateKey(kind, u, challenge))
	if err != nil {
		if rp.noCer != nil && errors.Is(err, rp.noCer) {
			return pending{}, ErrNoChallenge
		}
		return pending{}, fmt.Errorf("passkey: take challenge: %w", err)
	}
	var p pending
	if err := json.Unmarshal(b, &p); err != nil {
		return pending{}, fmt.Errorf("passkey: pending state: %w", err)
	}
	if !rp.now().Before(p.Session.Expires) {
		return pending{}, ErrNoChallenge
	}
	return p, nil
}

// refused wraps a verification failure: the library's detail goes to the
// log (Cause), the user sees ErrRefused.
type refused struct{ cause error }

func (e *refused) Error() string { return ErrRefused.Error() + ": " + e.cause.Error() }
func (e *refused) Unwrap() []error {
	return []error{ErrRefused, e.cause}
}

// describe returns the library error's developer detail, which is what an
// operator needs in the log (never key material: it names checks).
func describe(err error) error {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.DevInfo != "" {
		return fmt.Errorf("%s: %s", pe.Details, pe.DevInfo)
	}
	if errors.As(err, &pe) && pe.Details != "" {
		return errors.New(pe.Details)
	}
	return err
}
