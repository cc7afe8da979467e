package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// keyFamily is the kind of key an algorithm verifies with.
type keyFamily int

const (
	familyHMAC keyFamily = iota + 1
	familyRSA
	familyECDSA
	familyEdDSA
)

// algInfo describes one supported JWS algorithm (RFC 7518 §3.1, RFC 8037 §3.1).
type algInfo struct {
	family keyFamily
	// curve is the only curve an ES* algorithm may use (RFC 7518 §3.4);
	// nil for other families.
	curve elliptic.Curve
}

// algorithms lists every algorithm stepgate accepts. "none" is absent on
// purpose (RFC 8725 §3.1), as are the RSASSA-PSS algorithms, which SPEC §3
// does not list.
var algorithms = map[string]algInfo{
	"HS256": {family: familyHMAC},
	"HS384": {family: familyHMAC},
	"HS512": {family: familyHMAC},
	"RS256": {family: familyRSA},
	"RS384": {family: familyRSA},
	"RS512": {family: familyRSA},
	"ES256": {family: familyECDSA, curve: elliptic.P256()},
	"ES384": {family: familyECDSA, curve: elliptic.P384()},
	"ES512": {family: familyECDSA, curve: elliptic.P521()},
	"EdDSA": {family: familyEdDSA},
}

// minRSABits is the smallest RSA modulus accepted, from a PEM file or a
// JWKS (RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used").
const minRSABits = 2048

// keyFits reports whether key may verify a token signed with alg. It is the
// guard against algorithm confusion (RFC 8725 §2.1, §3.1): an RSA public key
// is never handed to the HMAC verifier, an ES256 token is never checked
// against a P-384 key, and so on.
func keyFits(alg string, key any) bool {
	info, ok := algorithms[alg]
	if !ok {
		return false
	}
	switch k := key.(type) {
	case []byte:
		return info.family == familyHMAC
	case *rsa.PublicKey:
		return info.family == familyRSA && k.N.BitLen() >= minRSABits
	case *ecdsa.PublicKey:
		return info.family == familyECDSA && k.Curve == info.curve
	case ed25519.PublicKey:
		return info.family == familyEdDSA && len(k) == ed25519.PublicKeySize
	default:
		return false
	}
}

// parsePublicKeyPEM parses exactly one PEM block holding a public key
// ("PUBLIC KEY", "RSA PUBLIC KEY") or a certificate whose key is used. Private
// keys are refused: the proxy only verifies and must not hold signing keys.
func parsePublicKeyPEM(data []byte) (any, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, errors.New("more than one PEM block (want exactly one public key)")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(block.Bytes)
		if err == nil {
			key = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE") {
			return nil, fmt.Errorf("PEM block is a private key (%s); give the public key only", block.Type)
		}
		return nil, fmt.Errorf("unsupported PEM block type %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", strings.ToLower(block.Type), err)
	}
	switch key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return key, nil
	default:
		return nil, fmt.Errorf("unsupported public key type %T", key)
	}
}

// keyTypeName names a key for configuration errors.
func keyTypeName(key any) string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", key)
	}
}
