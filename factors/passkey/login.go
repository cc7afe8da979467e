package passkey

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/stepgate/stepgate/factors"
)

// usable returns the user's passkeys that may step up (confirmed, not
// marked cloned) and their library form.
func (rp *RP) usable(ctx context.Context, subject string) ([]Credential, error) {
	all, err := rp.List(ctx, subject)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, c := range all {
		if c.Factor.Confirmed && !c.Cloned {
			out = append(out, c)
		}
	}
	return out, nil
}

// HasPasskey reports whether the user has a usable passkey.
func (rp *RP) HasPasskey(ctx context.Context, subject string) (bool, error) {
	c, err := rp.usable(ctx, subject)
	return len(c) > 0, err
}

// BeginLogin starts a step-up: options for navigator.credentials.get with
// the user's credentials in allowCredentials and user verification
// required. ErrNoPasskey when the user has none.
func (rp *RP) BeginLogin(ctx context.Context, u User) (*protocol.CredentialAssertion, error) {
	creds, err := rp.usable(ctx, u.Subject)
	if err != nil {
		return nil, err
	}
	if len(creds) == 0 {
		return nil, ErrNoPasskey
	}
	allow := make([]protocol.CredentialDescriptor, len(creds))
	for i, c := range creds {
		w := c.web()
		allow[i] = w.Descriptor()
	}
	opts, sess, err := rp.wa.BeginLogin(&waUser{u: u, creds: webCreds(creds)},
		webauthn.WithAllowedCredentials(allow),
		webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, fmt.Errorf("passkey: begin login: %w", err)
	}
	if err := rp.put(ctx, "get", u, pending{Session: *sess}); err != nil {
		return nil, err
	}
	return opts, nil
}

// FinishLogin verifies the answer of navigator.credentials.get (the
// PublicKeyCredential as JSON) and records the use. It returns the
// credential used. Errors: ErrNoChallenge, ErrRefused (wrapped with the
// reason), ErrCloned, or a technical failure.
func (rp *RP) FinishLogin(ctx context.Context, u User, body []byte) (Credential, error) {
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return Credential{}, &refused{describe(err)}
	}
	p, err := rp.take(ctx, "get", u, parsed.Response.CollectedClientData.Challenge)
	if err != nil {
		return Credential{}, err
	}
	creds, err := rp.usable(ctx, u.Subject)
	if err != nil {
		return Credential{}, err
	}
	// The challenge was issued for the credentials usable then; one marked
	// cloned or removed since is gone from creds and so refused.
	p.Session.AllowedCredentialIDs = slices.DeleteFunc(p.Session.AllowedCredentialIDs, func(id []byte) bool {
		return !slices.ContainsFunc(creds, func(c Credential) bool { return bytes.Equal(c.CredentialID, id) })
	})
	if len(p.Session.AllowedCredentialIDs) == 0 {
		return Credential{}, &refused{errors.New("no allowed credential left")}
	}
	if _, err := rp.wa.ValidateLogin(&waUser{u: u, creds: webCreds(creds)}, p.Session, parsed); err != nil {
		return Credential{}, &refused{describe(err)}
	}
	i := slices.IndexFunc(creds, func(c Credential) bool { return bytes.Equal(c.CredentialID, parsed.RawID) })
	if i < 0 {
		return Credential{}, &refused{errors.New("credential not found after verification")}
	}
	c := creds[i]
	now := rp.now()
	got := int64(parsed.Response.AuthenticatorData.Counter)
	// WebAuthn §7.2 step 21: unless both counters are zero (an
	// authenticator without one), the new count must be greater. The
	// store's conditional update makes the comparison atomic with any
	// concurrent use of the same credential.
	var ok bool
	if got == 0 {
		ok, err = rp.store.Touch(ctx, u.Subject, c.Factor.ID, now)
	} else {
		ok, err = rp.store.Advance(ctx, u.Subject, c.Factor.ID, got, now)
	}
	if err != nil {
		return Credential{}, fmt.Errorf("passkey: record use: %w", err)
	}
	if !ok {
		c.Cloned = true
		c.ClonedAt = now
		err := rp.updatePublic(ctx, u.Subject, c.Factor.ID, func(p *public) bool {
			if p.Cloned {
				return false // marked already (by a concurrent use): keep the first time
			}
			p.Cloned, p.ClonedAt = true, now.Unix()
			return true
		})
		if err != nil && !errors.Is(err, factors.ErrNotFound) {
			return c, fmt.Errorf("passkey: mark cloned: %w (%w)", err, ErrCloned)
		}
		return c, fmt.Errorf("%w (counter %d, stored %d)", ErrCloned, got, c.Factor.Counter)
	}
	c.Factor.Counter = max(got, c.Factor.Counter)
	c.Factor.LastUsedAt = now
	if bs := parsed.Response.AuthenticatorData.Flags.HasBackupState(); bs != c.BackupState {
		// The backup state may change (a passkey synced later); record it
		// so the factors page shows it. Failing to is not a reason to
		// refuse a verified assertion.
		c.BackupState = bs
		_ = rp.updatePublic(ctx, u.Subject, c.Factor.ID, func(p *public) bool {
			if p.BackupState == bs {
				return false
			}
			p.BackupState = bs
			return true
		})
	}
	return c, nil
}

// publicRetries bounds updatePublic's compare and swap: only other writes
// of the same credential's public data make it lose, and those are rare
// (a backup state change, a clone mark).
const publicRetries = 5

// updatePublic applies change to the credential's public data as stored
// now and writes the result with a compare and swap (Store.ReplacePublic),
// reading again when it lost a race. A write is thus always derived from
// the data it replaces: a login that read the credential before a
// concurrent one marked it possibly cloned cannot write back a copy
// without the mark (which would make a cloned authenticator usable
// again). change reports whether there is anything to write; it never
// clears Cloned. A removed credential is factors.ErrNotFound.
func (rp *RP) updatePublic(ctx context.Context, subject, id string, change func(*public) bool) error {
	for range publicRetries {
		f, err := rp.store.Get(ctx, subject, id)
		if err != nil {
			return err
		}
		var p public
		if err := json.Unmarshal(f.Public, &p); err != nil {
			return fmt.Errorf("passkey %s: public data: %w", id, err)
		}
		if !change(&p) {
			return nil
		}
		next, err := json.Marshal(p)
		if err != nil {
			return err
		}
		ok, err := rp.store.ReplacePublic(ctx, subject, id, f.Public, next)
		if err != nil || ok {
			return err
		}
	}
	return fmt.Errorf("passkey %s: public data changed concurrently %d times", id, publicRetries)
}
