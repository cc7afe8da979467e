package passkey

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"
	"golang.org/x/net/publicsuffix"

	"github.com/stepgate/stepgate/factors"
)

// Credential is a stored passkey, opened.
type Credential struct {
	// Factor is the store's record (id, name, created, last used, sign
	// count in Counter). Its Public and Secret are the encoded forms of the
	// fields below.
	Factor factors.Factor
	// CredentialID and PublicKey (COSE) are sealed in Factor.Secret.
	CredentialID []byte
	PublicKey    []byte
	// AAGUID is the authenticator model the authenticator claims (proven
	// only with attestation direct and metadata).
	AAGUID uuid.UUID
	// Transports are the authenticator's hints (usb, nfc, ble, internal,
	// hybrid).
	Transports []string
	// BackupEligible: the passkey can be synced to other devices;
	// BackupState: it is (WebAuthn §6.1 BE/BS flags).
	BackupEligible bool
	BackupState    bool
	// AttestationType and AttestationFormat as verified at registration.
	AttestationType   string
	AttestationFormat string
	// UserVerified: the registration was user-verified.
	UserVerified bool
	// Cloned marks a credential whose signature counter went backwards;
	// it is refused from then on. ClonedAt is when that was seen.
	Cloned   bool
	ClonedAt time.Time
}

// public is the non-secret part, stored as Factor.Public.
type public struct {
	AAGUID            string   `json:"aaguid"`
	Transports        []string `json:"transports,omitempty"`
	BackupEligible    bool     `json:"backup_eligible"`
	BackupState       bool     `json:"backup_state"`
	AttestationType   string   `json:"attestation_type,omitempty"`
	AttestationFormat string   `json:"attestation_format,omitempty"`
	UserVerified      bool     `json:"user_verified"`
	Cloned            bool     `json:"cloned,omitempty"`
	ClonedAt          int64    `json:"cloned_at,omitempty"`
}

// secret is sealed with the factor keyring, as Factor.Secret.
type secret struct {
	CredentialID []byte `json:"id"`
	PublicKey    []byte `json:"pk"`
}

func (c Credential) public() []byte {
	p := public{
		AAGUID: c.AAGUID.String(), Transports: c.Transports,
		BackupEligible: c.BackupEligible, BackupState: c.BackupState,
		AttestationType: c.AttestationType, AttestationFormat: c.AttestationFormat,
		UserVerified: c.UserVerified, Cloned: c.Cloned,
	}
	if c.Cloned {
		p.ClonedAt = c.ClonedAt.Unix()
	}
	b, _ := json.Marshal(p) // plain struct: never fails
	return b
}

// factor encodes c into a store record, its secret sealed for the user
// and factor id.
func (c Credential) factor(k *factors.Keyring) (factors.Factor, error) {
	f := c.Factor
	f.Type = factors.TypePasskey
	f.Public = c.public()
	pt, err := json.Marshal(secret{CredentialID: c.CredentialID, PublicKey: c.PublicKey})
	if err != nil {
		return factors.Factor{}, err
	}
	f.Secret, err = k.Seal(f.User, f.ID, pt)
	clear(pt)
	if err != nil {
		return factors.Factor{}, err
	}
	f.Lookup = k.Lookup(factors.TypePasskey, c.CredentialID)
	return f, nil
}

// Identify is the factors.Identify of passkeys: a credential id must be
// unique among all stored passkeys (WebAuthn L2 §7.1 step 22), so it is
// what a passkey's Lookup hashes. Other types have none.
func Identify(f factors.Factor, sealedPlaintext []byte) ([]byte, error) {
	if f.Type != factors.TypePasskey {
		return nil, nil
	}
	var s secret
	if err := json.Unmarshal(sealedPlaintext, &s); err != nil {
		return nil, fmt.Errorf("passkey %s: sealed data: %w", f.ID, err)
	}
	if len(s.CredentialID) == 0 {
		return nil, fmt.Errorf("passkey %s: sealed data without a credential id", f.ID)
	}
	return s.CredentialID, nil
}

// Open decodes a passkey record from the store.
func Open(f factors.Factor, k *factors.Keyring) (Credential, error) {
	if f.Type != factors.TypePasskey {
		return Credential{}, fmt.Errorf("factor %s is a %s, not a passkey", f.ID, f.Type)
	}
	var p public
	if err := json.Unmarshal(f.Public, &p); err != nil {
		return Credential{}, fmt.Errorf("passkey %s: public data: %w", f.ID, err)
	}
	pt, _, err := k.Open(f.User, f.ID, f.Secret)
	if err != nil {
		return Credential{}, fmt.Errorf("passkey %s: %w", f.ID, err)
	}
	var s secret
	err = json.Unmarshal(pt, &s)
	clear(pt)
	if err != nil {
		return Credential{}, fmt.Errorf("passkey %s: sealed data: %w", f.ID, err)
	}
	aaguid, err := uuid.Parse(p.AAGUID)
	if err != nil {
		aaguid = uuid.Nil
	}
	c := Credential{
		Factor: f, CredentialID: s.CredentialID, PublicKey: s.PublicKey,
		AAGUID: aaguid, Transports: p.Transports,
		BackupEligible: p.BackupEligible, BackupState: p.BackupState,
		AttestationType: p.AttestationType, AttestationFormat: p.AttestationFormat,
		UserVerified: p.UserVerified, Cloned: p.Cloned,
	}
	if p.Cloned {
		c.ClonedAt = time.Unix(p.ClonedAt, 0)
	}
	return c, nil
}

// List returns the user's passkeys, oldest first. A record that does not
// open is an error (the keys are wrong; serve refuses to start on that).
func (rp *RP) List(ctx context.Context, subject string) ([]Credential, error) {
	fs, err := rp.store.List(ctx, subject)
	if err != nil {
		return nil, fmt.Errorf("passkey: list: %w", err)
	}
	var out []Credential
	for _, f := range fs {
		if f.Type != factors.TypePasskey {
			continue
		}
		c, err := Open(f, rp.keys)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// web is c in the library's form, for verification.
func (c Credential) web() webauthn.Credential {
	ts := make([]protocol.AuthenticatorTransport, len(c.Transports))
	for i, t := range c.Transports {
		ts[i] = protocol.AuthenticatorTransport(t)
	}
	return webauthn.Credential{
		ID:                c.CredentialID,
		PublicKey:         c.PublicKey,
		AttestationType:   c.AttestationType,
		AttestationFormat: c.AttestationFormat,
		Transport:         ts,
		Flags: webauthn.CredentialFlags{
			UserPresent: true, UserVerified: c.UserVerified,
			BackupEligible: c.BackupEligible, BackupState: c.BackupState,
		},
		Authenticator: webauthn.Authenticator{
			AAGUID:    c.AAGUID[:],
			SignCount: uint32(c.Factor.Counter),
		},
	}
}

func webCreds(cs []Credential) []webauthn.Credential {
	out := make([]webauthn.Credential, len(cs))
	for i, c := range cs {
		out[i] = c.web()
	}
	return out
}

// CheckRPID reports whether rpID may serve host (WebAuthn §5.1.4.1 via the
// HTML "registrable domain suffix" rule): it is host itself, or a parent
// domain of host that is not a public suffix (com, co.uk, github.io), so
// that a passkey is never scoped to domains other registrants control.
func CheckRPID(rpID, host string) error {
	rpID = strings.ToLower(strings.TrimSuffix(rpID, "."))
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if rpID == "" {
		return fmt.Errorf("factors.passkey.rp_id: empty")
	}
	if rpID == host {
		return nil
	}
	if !strings.HasSuffix(host, "."+rpID) {
		return fmt.Errorf("factors.passkey.rp_id %q is not %q nor a parent domain of it (server.public_url)", rpID, host)
	}
	if strings.Trim(host, "0123456789.") == "" || strings.Contains(host, ":") {
		return fmt.Errorf("factors.passkey.rp_id %q: server.public_url's host %q is an IP address, which has no parent domain", rpID, host)
	}
	suffix, icann := publicsuffix.PublicSuffix(rpID)
	if suffix == rpID && (icann || strings.Contains(rpID, ".")) || !strings.Contains(rpID, ".") {
		return fmt.Errorf("factors.passkey.rp_id %q is a public suffix, not a registrable domain: passkeys would be scoped to every site under it", rpID)
	}
	return nil
}
