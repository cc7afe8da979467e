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
	"net/url"
	"slices"
	"time"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/stepgate/stepgate/factors"
)

// MaxTimeout bounds Config.Timeout: a challenge is short-lived (≤ 5 min).
const MaxTimeout = 5 * time.Minute

// Attestation conveyance preferences accepted by Config.Attestation.
const (
	AttestationNone   = "none"
	AttestationDirect = "direct"
)

// Config configures a relying party. Zero values are documented per field.
type Config struct {
	// Origin is the origin browsers use (scheme://host[:port] of
	// server.public_url); required. It is the only origin accepted.
	Origin string
	// RPID is the relying party id: "" means the host of Origin. It may be
	// a parent domain of that host (factors.passkey.rp_id); CheckRPID tells
	// whether it is allowed.
	RPID string
	// RPName is shown by the browser while it asks for the passkey; ""
	// means "stepgate".
	RPName string
	// Attestation is AttestationNone (the default for "") or
	// AttestationDirect.
	Attestation string
	// AAGUIDs, when non-empty, are the only authenticator models that may
	// register; it needs Attestation direct and Metadata, so the model is
	// proven by the authenticator's attestation, not only claimed.
	AAGUIDs []uuid.UUID
	// Metadata is the FIDO metadata the attestation of a registration is
	// verified against (factors.passkey.metadata_file); nil means none.
	Metadata metadata.Provider
	// Timeout is how long a ceremony's challenge lives; 0 means MaxTimeout.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

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
)

// New builds a relying party. noCeremony is the error States returns for a
// missing key (challenge.ErrNoCeremony); the package does not import the
// challenge package, which imports it.
func New(cfg Config, store factors.Store, keys *factors.Keyring, states States, noCeremony error) (*RP, error) {
	if store == nil || keys == nil || states == nil {
		return nil, errors.New("passkey: store, keyring and ceremony states are required")
	}
	u, err := url.Parse(cfg.Origin)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("passkey: origin %q must be scheme://host[:port]", cfg.Origin)
	}
	origin := u.Scheme + "://" + u.Host
	if cfg.RPID == "" {
		cfg.RPID = u.Hostname()
	}
	if err := CheckRPID(cfg.RPID, u.Hostname()); err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 || cfg.Timeout > MaxTimeout {
		cfg.Timeout = MaxTimeout
	}
	if cfg.RPName == "" {
		cfg.RPName = "stepgate"
	}
	var pref protocol.ConveyancePreference
	switch cfg.Attestation {
	case "", AttestationNone:
		cfg.Attestation = AttestationNone
		pref = protocol.PreferNoAttestation
	case AttestationDirect:
		pref = protocol.PreferDirectAttestation
	default:
		return nil, fmt.Errorf("passkey: attestation %q must be none or direct", cfg.Attestation)
	}
	if len(cfg.AAGUIDs) > 0 && (cfg.Attestation != AttestationDirect || cfg.Metadata == nil) {
		return nil, errors.New("passkey: aaguids need attestation: direct and a metadata_file (without them an AAGUID is only claimed by the authenticator)")
	}
	wcfg := &webauthn.Config{
		RPID:                  cfg.RPID,
		RPDisplayName:         cfg.RPName,
		RPOrigins:             []string{origin},
		AttestationPreference: pref,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementPreferred,
			UserVerification: protocol.VerificationRequired,
		},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: cfg.Timeout, TimeoutUVD: cfg.Timeout},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: cfg.Timeout, TimeoutUVD: cfg.Timeout},
		},
		MDS: cfg.Metadata,
	}
	wa, err := webauthn.New(wcfg)
	if err != nil {
		return nil, fmt.Errorf("passkey: %w", err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	cfg.Origin = origin
	return &RP{cfg: cfg, wa: wa, store: store, keys: keys, states: states, noCer: noCeremony, now: now}, nil
}

// RPID returns the relying party id in use.
func (rp *RP) RPID() string { return rp.cfg.RPID }

// Origin returns the one origin accepted.
func (rp *RP) Origin() string { return rp.cfg.Origin }

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
		if err := rp.store.SetPublic(ctx, u.Subject, c.Factor.ID, c.public()); err != nil && !errors.Is(err, factors.ErrNotFound) {
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
		_ = rp.store.SetPublic(ctx, u.Subject, c.Factor.ID, c.public())
	}
	return c, nil
}

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
	all, err := rp.List(ctx, u.Subject)
	if err != nil {
		return Credential{}, err
	}
	for _, c := range all {
		if bytes.Equal(c.CredentialID, wc.ID) {
			return Credential{}, ErrDuplicate
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
	if err := rp.store.Create(ctx, f); err != nil {
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
