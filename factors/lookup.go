package factors

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrDuplicate means another factor already holds the same Lookup: the
// credential (a passkey's credential id) is stored already. The stores'
// UNIQUE index makes the refusal atomic with the insert.
var ErrDuplicate = errors.New("another factor holds the same credential")

// Lookup returns the keyed hash under which the stores index ident, the
// value that must be unique among the stored factors of type typ (a
// passkey's credential id): HMAC-SHA256 with a key derived from the current
// encryption key by HKDF. The value itself is sealed at rest; the hash
// lets the database refuse a duplicate without learning it, and without
// the key nobody can tell which credential a row holds.
func (k *Keyring) Lookup(typ string, ident []byte) []byte {
	m := hmac.New(sha256.New, k.keys[0].lookup)
	b := make([]byte, 0, 32+len(typ))
	b = append(b, "stepgate factor lookup v1\x00"...)
	b = binary.AppendUvarint(b, uint64(len(typ)))
	b = append(b, typ...)
	m.Write(b)
	m.Write(ident)
	return m.Sum(nil)
}

// Identify returns the value that must be unique among the stored factors
// of f's type, from f and its opened secret: a passkey's credential id. nil
// means the factor has none (a TOTP seed need not be unique).
type Identify func(f Factor, secret []byte) ([]byte, error)

// ReindexResult counts what Reindex did.
type ReindexResult struct {
	Set     int // lookups written: missing (a row from before the column) or under another key
	Current int // already right, or the factor has none
	// Duplicates names each factor whose credential another factor holds
	// already (possible only for rows stored before the UNIQUE index): its
	// lookup is left as it was; remove one of the two.
	Duplicates []string
}

// Reindex computes every factor's Lookup under the current key and writes
// those that differ: rows stored before the lookup column existed, and all
// of them after the encryption key changed. Serve runs it at start (after
// CheckKeys) and `stepgate factors rekey` after sealing the secrets again.
// A lookup is never cleared. A secret that does not open stops it with an
// error naming the factor.
func Reindex(ctx context.Context, s Store, k *Keyring, identify Identify) (ReindexResult, error) {
	var r ReindexResult
	if identify == nil {
		return r, nil
	}
	all, err := s.All(ctx)
	if err != nil {
		return r, err
	}
	holder := map[string]string{} // lookup → factor id, as computed here
	for _, f := range all {
		pt, _, err := k.Open(f.User, f.ID, f.Secret)
		if err != nil {
			return r, fmt.Errorf("factor %s (%s of user %q): %w", f.ID, f.Type, f.User, err)
		}
		ident, err := identify(f, pt)
		clear(pt)
		if err != nil {
			return r, fmt.Errorf("factor %s (%s of user %q): %w", f.ID, f.Type, f.User, err)
		}
		if ident == nil {
			r.Current++
			continue
		}
		want := k.Lookup(f.Type, ident)
		if other, ok := holder[string(want)]; ok {
			r.Duplicates = append(r.Duplicates, fmt.Sprintf("%s (user %q, the same credential as factor %s)", f.ID, f.User, other))
			continue
		}
		holder[string(want)] = f.ID
		if hmac.Equal(want, f.Lookup) {
			r.Current++
			continue
		}
		switch err := s.SetLookup(ctx, f.User, f.ID, want); {
		case errors.Is(err, ErrNotFound): // removed meanwhile
		case errors.Is(err, ErrDuplicate): // a registration of the same credential meanwhile
			r.Duplicates = append(r.Duplicates, fmt.Sprintf("%s (user %q: another factor holds the same credential)", f.ID, f.User))
		case err != nil:
			return r, err
		default:
			r.Set++
		}
	}
	return r, nil
}
