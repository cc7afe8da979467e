// Package passkeytest is a software WebAuthn authenticator for tests: an
// ECDSA P-256 key whose authenticatorData, clientDataJSON, attestation
// object ("none") and signatures are built here byte by byte, with knobs to
// get each of them wrong (origin, RP ID, user verification, counter).
package passkeytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/big"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Flags of authenticatorData (WebAuthn §6.1).
const (
	FlagUP = 0x01
	FlagUV = 0x04
	FlagBE = 0x08
	FlagBS = 0x10
	FlagAT = 0x40
)

// Authenticator holds one credential.
type Authenticator struct {
	// Origin and RPID are what the "browser" puts in clientDataJSON and
	// what rpIdHash is computed from; tests change them to lie.
	Origin string
	RPID   string
	// Flags are set in every authenticatorData (AT is added on create).
	Flags byte
	// Counter is the signature counter; Get adds Step to it first.
	Counter uint32
	Step    uint32
	// AAGUID is the model claimed at registration.
	AAGUID [16]byte

	// Attestation, when set, makes Create answer with a "packed" full
	// attestation signed by its key and carrying its certificate (x5c);
	// nil means "none".
	Attestation *Attester

	ID         []byte
	key        *ecdsa.PrivateKey
	userHandle []byte
}

// New returns an authenticator for origin and rpID with user presence and
// verification, a counter that grows by one per use, and a fresh key.
func New(origin, rpID string) *Authenticator {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return &Authenticator{Origin: origin, RPID: rpID, Flags: FlagUP | FlagUV, Step: 1, ID: id, key: key}
}

var b64 = base64.RawURLEncoding

// options is the part of the creation or request options used here.
type options struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		User      struct {
			ID string `json:"id"`
		} `json:"user"`
	} `json:"publicKey"`
}

func parseOptions(opts any) (options, error) {
	var o options
	b, err := json.Marshal(opts)
	if err != nil {
		return o, err
	}
	err = json.Unmarshal(b, &o)
	if err == nil && o.PublicKey.Challenge == "" {
		err = fmt.Errorf("options without a challenge: %s", b)
	}
	return o, err
}

func (a *Authenticator) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": a.Origin, "crossOrigin": false})
	return b
}

func (a *Authenticator) authData(flags byte, counter uint32, attested []byte) []byte {
	h := sha256.Sum256([]byte(a.RPID))
	out := append([]byte{}, h[:]...)
	out = append(out, flags)
	out = binary.BigEndian.AppendUint32(out, counter)
	return append(out, attested...)
}

// coseKey is the credential public key as a COSE_Key (RFC 9053 EC2, ES256).
func (a *Authenticator) coseKey() []byte {
	pub, err := a.key.PublicKey.Bytes() // 0x04 | X | Y
	if err != nil {
		panic(err)
	}
	b, err := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: pub[1:33], -3: pub[33:65]})
	if err != nil {
		panic(err)
	}
	return b
}

// Create answers navigator.credentials.create(opts): the JSON a browser's
// PublicKeyCredential serialises to, with attestation "none".
func (a *Authenticator) Create(opts any) ([]byte, error) {
	o, err := parseOptions(opts)
	if err != nil {
		return nil, err
	}
	if a.userHandle, err = b64.DecodeString(o.PublicKey.User.ID); err != nil {
		return nil, fmt.Errorf("user id: %w", err)
	}
	attested := append([]byte{}, a.AAGUID[:]...)
	attested = binary.BigEndian.AppendUint16(attested, uint16(len(a.ID)))
	attested = append(attested, a.ID...)
	attested = append(attested, a.coseKey()...)
	ad := a.authData(a.Flags|FlagAT, a.Counter, attested)
	cd := a.clientData("webauthn.create", o.PublicKey.Challenge)
	stmt := map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": ad}
	if at := a.Attestation; at != nil {
		// WebAuthn §8.2: sig over authenticatorData || hash(clientDataJSON).
		cdh := sha256.Sum256(cd)
		digest := sha256.Sum256(append(append([]byte{}, ad...), cdh[:]...))
		sig, err := ecdsa.SignASN1(rand.Reader, at.Key, digest[:])
		if err != nil {
			return nil, err
		}
		stmt = map[string]any{"fmt": "packed", "attStmt": map[string]any{"alg": -7, "sig": sig, "x5c": [][]byte{at.Cert}}, "authData": ad}
	}
	att, err := cbor.Marshal(stmt)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.ID), "rawId": b64.EncodeToString(a.ID), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(cd),
			"attestationObject": b64.EncodeToString(att),
			"transports":        []string{"internal"},
		},
		"clientExtensionResults": map[string]any{},
	})
}

// Get answers navigator.credentials.get(opts) with a signed assertion,
// after adding Step to the counter.
func (a *Authenticator) Get(opts any) ([]byte, error) {
	o, err := parseOptions(opts)
	if err != nil {
		return nil, err
	}
	a.Counter += a.Step
	return a.Assert(o.PublicKey.Challenge, a.Counter)
}

// Assert signs an assertion for challenge with counter as given.
func (a *Authenticator) Assert(challenge string, counter uint32) ([]byte, error) {
	cd := a.clientData("webauthn.get", challenge)
	ad := a.authData(a.Flags, counter, nil)
	cdh := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, ad...), cdh[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, digest[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.ID), "rawId": b64.EncodeToString(a.ID), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(cd),
			"authenticatorData": b64.EncodeToString(ad),
			"signature":         b64.EncodeToString(sig),
			"userHandle":        b64.EncodeToString(a.userHandle),
		},
		"clientExtensionResults": map[string]any{},
	})
}

// Challenge returns the challenge of creation or request options.
func Challenge(opts any) string {
	o, _ := parseOptions(opts)
	return o.PublicKey.Challenge
}

// Attester is an authenticator model's attestation: a key and its
// certificate (DER) issued by Root, with the AAGUID extension.
type Attester struct {
	Key  *ecdsa.PrivateKey
	Cert []byte
	Root *x509.Certificate
}

// idFidoGenCeAAGUID is the certificate extension naming the AAGUID
// (WebAuthn §8.2.1).
var idFidoGenCeAAGUID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 45724, 1, 1, 4}

// NewAttester makes a root CA and an attestation certificate for aaguid
// meeting WebAuthn §8.2.1 (version 3, OU "Authenticator Attestation",
// not a CA, the AAGUID extension).
func NewAttester(aaguid [16]byte) (*Attester, error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "passkeytest root", Organization: []string{"passkeytest"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ext, err := asn1.Marshal(aaguid[:])
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject: pkix.Name{Country: []string{"US"}, Organization: []string{"passkeytest"},
			OrganizationalUnit: []string{"Authenticator Attestation"}, CommonName: "passkeytest key"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		BasicConstraintsValid: true, IsCA: false,
		ExtraExtensions: []pkix.Extension{{Id: idFidoGenCeAAGUID, Value: ext}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, &key.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	return &Attester{Key: key, Cert: der, Root: root}, nil
}
