package factors

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// MinKeyLen is the shortest encryption key accepted (SPEC §11).
const MinKeyLen = 32

// sealVersion is the first byte of a sealed secret. A later format gets a
// new version, so old secrets stay readable.
const sealVersion = 1

// sealed layout: version (1) | key id (4) | nonce (12) | ciphertext+tag.
const (
	kidLen    = 4
	nonceLen  = 12
	headerLen = 1 + kidLen + nonceLen
)

var (
	// ErrUnknownKey means a secret was sealed under a key that is neither
	// the current nor a previous encryption key.
	ErrUnknownKey = errors.New("sealed under a key that is not configured (neither factors.encryption_key nor factors.previous_encryption_keys)")
	// ErrDecrypt means the sealed secret does not open under its key: it
	// was altered, or moved to another user or factor id.
	ErrDecrypt = errors.New("sealed secret does not decrypt (altered, or moved to another factor)")
)

// Keyring seals and opens factor secrets: AES-256-GCM under the current
// key, with previous keys accepted for opening during a rotation.
type Keyring struct {
	keys []ringKey // current first
}

type ringKey struct {
	id     [kidLen]byte
	aead   cipher.AEAD
	lookup []byte // HMAC-SHA256 key of Lookup
}

// NewKeyring builds a keyring from the current key and the previous ones.
// Each is key material of at least MinKeyLen bytes; the AES key and the key
// id are derived from it with HKDF-SHA256, so any high-entropy string works.
func NewKeyring(current []byte, previous ...[]byte) (*Keyring, error) {
	k := &Keyring{}
	for i, material := range append([][]byte{current}, previous...) {
		name := "factors.encryption_key"
		if i > 0 {
			name = fmt.Sprintf("factors.previous_encryption_keys[%d]", i-1)
		}
		if len(material) < MinKeyLen {
			return nil, fmt.Errorf("%s: must be at least %d bytes, got %d", name, MinKeyLen, len(material))
		}
		rk, err := deriveKey(material)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, other := range k.keys {
			if other.id == rk.id {
				return nil, fmt.Errorf("%s: the same key is listed twice", name)
			}
		}
		k.keys = append(k.keys, rk)
	}
	return k, nil
}

func deriveKey(material []byte) (ringKey, error) {
	aesKey, err := hkdf.Key(sha256.New, material, nil, "stepgate factors aes-256-gcm v1", 32)
	if err != nil {
		return ringKey{}, err
	}
	idBytes, err := hkdf.Key(sha256.New, material, nil, "stepgate factors key id v1", kidLen)
	if err != nil {
		return ringKey{}, err
	}
	lookupKey, err := hkdf.Key(sha256.New, material, nil, "stepgate factors lookup hmac-sha256 v1", 32)
	if err != nil {
		return ringKey{}, err
	}
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		return ringKey{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return ringKey{}, err
	}
	var rk ringKey
	copy(rk.id[:], idBytes)
	rk.aead = aead
	rk.lookup = lookupKey
	return rk, nil
}

// associatedData binds a sealed secret to its user and factor id, each
// length-prefixed so no two (user, id) pairs share an encoding.
func associatedData(user, id string) []byte {
	b := make([]byte, 0, 32+len(user)+len(id))
	b = append(b, "stepgate factor v1\x00"...)
	b = binary.AppendUvarint(b, uint64(len(user)))
	b = append(b, user...)
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	return b
}

// Seal encrypts plaintext for the factor id of user under the current key.
func (k *Keyring) Seal(user, id string, plaintext []byte) ([]byte, error) {
	cur := k.keys[0]
	out := make([]byte, headerLen, headerLen+len(plaintext)+cur.aead.Overhead())
	out[0] = sealVersion
	copy(out[1:], cur.id[:])
	nonce := out[1+kidLen : headerLen]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return cur.aead.Seal(out, nonce, plaintext, associatedData(user, id)), nil
}

// Open decrypts a sealed secret of the factor id of user. current reports
// whether it was sealed under the current key (false: rekey it).
func (k *Keyring) Open(user, id string, sealed []byte) (plaintext []byte, current bool, err error) {
	if len(sealed) < headerLen || sealed[0] != sealVersion {
		return nil, false, ErrDecrypt
	}
	kid := sealed[1 : 1+kidLen]
	for i, rk := range k.keys {
		if !bytes.Equal(rk.id[:], kid) {
			continue
		}
		pt, err := rk.aead.Open(nil, sealed[1+kidLen:headerLen], sealed[headerLen:], associatedData(user, id))
		if err != nil {
			return nil, false, ErrDecrypt
		}
		return pt, i == 0, nil
	}
	return nil, false, ErrUnknownKey
}

// CheckKeys opens every stored secret and returns an error naming the
// first factor that does not open: the configured keys are wrong or a
// previous key was dropped before `stepgate factors rekey` ran. Serve calls
// it at start and refuses to run on an error.
func CheckKeys(ctx context.Context, s Store, k *Keyring) error {
	all, err := s.All(ctx)
	if err != nil {
		return err
	}
	bad := 0
	var first error
	for _, f := range all {
		if _, _, err := k.Open(f.User, f.ID, f.Secret); err != nil {
			bad++
			if first == nil {
				first = fmt.Errorf("factor %s (%s of user %q): %w", f.ID, f.Type, f.User, err)
			}
		}
	}
	if bad > 0 {
		return fmt.Errorf("factors.encryption_key: %d of %d stored factors do not decrypt; first: %w", bad, len(all), first)
	}
	return nil
}

// RekeyResult counts what Rekey did.
type RekeyResult struct {
	Rekeyed int // sealed again under the current key
	Current int // already under the current key
	Changed int // changed or deleted by someone else meanwhile; run again
	// Lookups is what Reindex did afterwards: the credential lookups
	// computed again under the current key.
	Lookups ReindexResult
}

// Rekey seals every secret that is under a previous key again under the
// current one, then recomputes every factor's Lookup under it (Reindex with
// identify), so the uniqueness of credentials holds under the new key. A
// secret that does not open stops it with an error naming the factor
// (nothing is lost: the others stay as they were). Once it reports no
// Changed, the previous keys can be removed from the config.
func Rekey(ctx context.Context, s Store, k *Keyring, identify Identify) (RekeyResult, error) {
	var r RekeyResult
	all, err := s.All(ctx)
	if err != nil {
		return r, err
	}
	for _, f := range all {
		pt, current, err := k.Open(f.User, f.ID, f.Secret)
		if err != nil {
			return r, fmt.Errorf("factor %s (%s of user %q): %w", f.ID, f.Type, f.User, err)
		}
		if current {
			r.Current++
			continue
		}
		next, err := k.Seal(f.User, f.ID, pt)
		clear(pt)
		if err != nil {
			return r, err
		}
		ok, err := s.ReplaceSecret(ctx, f.User, f.ID, f.Secret, next)
		if err != nil {
			return r, err
		}
		if ok {
			r.Rekeyed++
		} else {
			r.Changed++
		}
	}
	r.Lookups, err = Reindex(ctx, s, k, identify)
	return r, err
}
