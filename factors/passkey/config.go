package passkey

import (
	"errors"
	"fmt"
	"net/url"
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
	// RPName is the relying party's display name (options' rp.name), shown
	// by the browser while it asks for the passkey: ui.app_name; "" means
	// "stepgate".
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
