package passkey

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/stepgate/stepgate/factors"
)

// BeginRegistration starts adding a passkey named name: options for
// navigator.credentials.create, with the user's existing credentials
// excluded and user verification required.
func (rp *RP) BeginRegistration(ctx context.Context, u User, name string) (*protocol.CredentialCreation, error) {
	name, err := CleanName(name)
	if err != nil {
		return nil, err
	}
	all, err := rp.List(ctx, u.Subject)
	if err != nil {
		return nil, err
	}
	exclude := make([]protocol.CredentialDescriptor, len(all))
	for i, c := range all {
		w := c.web()
		exclude[i] = w.Descriptor()
	}
	opts, sess, err := rp.wa.BeginRegistration(&waUser{u: u},
		webauthn.WithExclusions(exclude),
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementPreferred,
			UserVerification: protocol.VerificationRequired,
		}))
	if err != nil {
		return nil, fmt.Errorf("passkey: begin registration: %w", err)
	}
	if err := rp.put(ctx, "create", u, pending{Session: *sess, Name: name}); err != nil {
		return nil, err
	}
	return opts, nil
}

// ErrName is a name that cannot label a passkey.
var ErrName = errors.New("give the passkey a name of 1 to 64 characters")

// CleanName trims name and checks it fits factors.MaxNameLen and has no
// control characters.
func CleanName(name string) (string, error) {
	name = trimSpace(name)
	if name == "" || len(name) > factors.MaxNameLen {
		return "", ErrName
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' || r == 0xfffd {
			return "", ErrName
		}
	}
	return name, nil
}

func trimSpace(s string) string {
	return string(bytes.TrimSpace([]byte(s)))
}

// FinishRegistration verifies the answer of navigator.credentials.create
// and stores the passkey. Errors: ErrNoChallenge, ErrRefused,
// ErrNotAllowed, ErrDuplicate, or a technical failure.
func (rp *RP) FinishRegistration(ctx context.Context, u User, body []byte) (Credential, error) {
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		return Credential{}, &refused{describe(err)}
	}
	p, err := rp.take(ctx, "create", u, parsed.Response.CollectedClientData.Challenge)
	if err != nil {
		return Credential{}, err
	}
	wc, err := rp.wa.CreateCredential(&waUser{u: u}, p.Session, parsed)
	if err != nil {
		if errors.Is(err, protocol.ErrPolicyRestriction) || errors.Is(err, protocol.ErrMetadata) {
			return Credential{}, fmt.Errorf("%w: %w", ErrNotAllowed, describe(err))
		}
		return Credential{}, &refused{describe(err)}
	}
	aaguid, err := uuid.FromBytes(wc.Authenticator.AAGUID)
	if err != nil {
		aaguid = uuid.Nil
	}
	if len(rp.cfg.AAGUIDs) > 0 {
		// The library lets the zero AAGUID through an allow-list and
		// accepts self attestation; a hardware-only policy does not.
		if !slices.Contains(rp.cfg.AAGUIDs, aaguid) {
			return Credential{}, fmt.Errorf("%w: AAGUID %s is not in factors.passkey.aaguids", ErrNotAllowed, aaguid)
		}
		if wc.AttestationType == "none" || wc.AttestationType == "self" || wc.AttestationType == "" {
			return Credential{}, fmt.Errorf("%w: attestation %q does not prove the model", ErrNotAllowed, wc.AttestationType)
		}
	}
	id, err := factors.NewID()
	if err != nil {
		return Credential{}, err
	}
	now := rp.now()
	c := Credential{
		Factor: factors.Factor{
			ID: id, User: u.Subject, Type: factors.TypePasskey, Name: p.Name,
			CreatedAt: now, Confirmed: true, Counter: int64(wc.Authenticator.SignCount),
		},
		CredentialID:      wc.ID,
		PublicKey:         wc.PublicKey,
		AAGUID:            aaguid,
		Transports:        transports(wc.Transport),
		BackupEligible:    wc.Flags.BackupEligible,
		BackupState:       wc.Flags.BackupState,
		AttestationType:   wc.AttestationType,
		AttestationFormat: wc.AttestationFormat,
		UserVerified:      wc.Flags.UserVerified,
	}
	f, err := c.factor(rp.keys)
	if err != nil {
		return Credential{}, err
	}
	// One owner per credential id (WebAuthn L2 §7.1 step 22): the store's
	// UNIQUE lookup column refuses a credential id already stored, in the
	// same statement as the insert, so of concurrent registrations of one
	// credential exactly one is stored.
	if err := rp.store.Create(ctx, f); err != nil {
		if errors.Is(err, factors.ErrDuplicate) {
			return Credential{}, rp.duplicate(ctx, u.Subject, wc.ID)
		}
		return Credential{}, fmt.Errorf("passkey: store: %w", err)
	}
	c.Factor = f
	return c, nil
}

func transports(ts []protocol.AuthenticatorTransport) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, string(t))
	}
	return out
}

// duplicate says whose a credential id refused as a duplicate is: the
// user's own (ErrDuplicate) or another user's (ErrTaken, so that nobody
// can register a credential id someone else uses). Only the user's own
// passkeys are opened to tell.
func (rp *RP) duplicate(ctx context.Context, subject string, id []byte) error {
	own, err := rp.List(ctx, subject)
	if err != nil {
		return fmt.Errorf("%w (%w)", ErrDuplicate, err)
	}
	for _, c := range own {
		if subtle.ConstantTimeCompare(c.CredentialID, id) == 1 {
			return ErrDuplicate
		}
	}
	return ErrTaken
}
