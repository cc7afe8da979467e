package factors_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/sqlitestore"
)

var (
	keyA = []byte("0123456789abcdef0123456789abcdef-A")
	keyB = []byte("0123456789abcdef0123456789abcdef-B")
)

func ring(t *testing.T, cur []byte, prev ...[]byte) *factors.Keyring {
	t.Helper()
	k, err := factors.NewKeyring(cur, prev...)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := ring(t, keyA)
	secret := []byte("JBSWY3DPEHPK3PXP seed bytes")
	sealed, err := k.Seal("alice", "f1", secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatalf("sealed secret contains the plaintext")
	}
	again, _ := k.Seal("alice", "f1", secret)
	if bytes.Equal(sealed, again) {
		t.Fatalf("two seals of one secret are equal: the nonce is not fresh")
	}
	pt, current, err := k.Open("alice", "f1", sealed)
	if err != nil || !current || !bytes.Equal(pt, secret) {
		t.Fatalf("Open = %q, %v, %v; want the secret, current", pt, current, err)
	}

	// Associated data: another user or factor id does not open it.
	for _, c := range []struct{ user, id string }{{"bob", "f1"}, {"alice", "f2"}, {"alicef", "1"}, {"", "alicef1"}} {
		if _, _, err := k.Open(c.user, c.id, sealed); !errors.Is(err, factors.ErrDecrypt) {
			t.Errorf("Open(%q, %q): %v; want ErrDecrypt", c.user, c.id, err)
		}
	}
	// Any flipped byte is refused.
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		if _, _, err := k.Open("alice", "f1", bad); err == nil {
			t.Fatalf("Open with byte %d flipped: nil error", i)
		}
	}
	for _, bad := range [][]byte{nil, {1}, sealed[:20]} {
		if _, _, err := k.Open("alice", "f1", bad); err == nil {
			t.Fatalf("Open(%x): nil error", bad)
		}
	}
}

func TestRotation(t *testing.T) {
	old := ring(t, keyA)
	sealed, _ := old.Seal("alice", "f1", []byte("s"))

	// The new key alone does not know it: the error says which keys.
	if _, _, err := ring(t, keyB).Open("alice", "f1", sealed); !errors.Is(err, factors.ErrUnknownKey) {
		t.Fatalf("Open under another key: %v; want ErrUnknownKey", err)
	}
	// With the old key as a previous key it opens, not current.
	rot := ring(t, keyB, keyA)
	pt, current, err := rot.Open("alice", "f1", sealed)
	if err != nil || current || string(pt) != "s" {
		t.Fatalf("Open during rotation = %q, %v, %v; want s, not current", pt, current, err)
	}
}

func TestNewKeyringErrors(t *testing.T) {
	for _, c := range []struct {
		cur  []byte
		prev [][]byte
		want string
	}{
		{nil, nil, "factors.encryption_key: must be at least 32 bytes, got 0"},
		{[]byte("short"), nil, "factors.encryption_key: must be at least 32 bytes, got 5"},
		{keyA, [][]byte{keyB, []byte("x")}, "factors.previous_encryption_keys[1]: must be at least 32 bytes"},
		{keyA, [][]byte{keyA}, "factors.previous_encryption_keys[0]: the same key is listed twice"},
	} {
		_, err := factors.NewKeyring(c.cur, c.prev...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewKeyring: %v; want %q", err, c.want)
		}
	}
}

func openStore(t *testing.T) factors.Store {
	t.Helper()
	s, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "f.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t *testing.T, s factors.Store, k *factors.Keyring, user string, secret string) factors.Factor {
	t.Helper()
	id, _ := factors.NewID()
	sealed, err := k.Seal(user, id, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	f := factors.Factor{ID: id, User: user, Type: factors.TypeTOTP, Name: "p", CreatedAt: time.Now(), Confirmed: true, Secret: sealed}
	if err := s.Create(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestCheckKeysAndRekey(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	a := ring(t, keyA)
	f1 := put(t, s, a, "alice", "one")
	f2 := put(t, s, a, "bob", "two")

	if err := factors.CheckKeys(ctx, s, a); err != nil {
		t.Fatalf("CheckKeys with the right key: %v", err)
	}
	// A wrong key refuses to start and says which key.
	err := factors.CheckKeys(ctx, s, ring(t, keyB))
	if err == nil || !strings.Contains(err.Error(), "factors.encryption_key") || !strings.Contains(err.Error(), "2 of 2") {
		t.Fatalf("CheckKeys with a wrong key: %v; want an error naming factors.encryption_key and 2 of 2", err)
	}

	// Rotation: B current, A previous; rekey moves everything to B.
	rot := ring(t, keyB, keyA)
	if err := factors.CheckKeys(ctx, s, rot); err != nil {
		t.Fatalf("CheckKeys during rotation: %v", err)
	}
	r, err := factors.Rekey(ctx, s, rot, nil)
	if err != nil || r.Rekeyed != 2 || r.Current != 0 || r.Changed != 0 {
		t.Fatalf("Rekey = %+v, %v; want 2 rekeyed", r, err)
	}
	r, err = factors.Rekey(ctx, s, rot, nil)
	if err != nil || r.Rekeyed != 0 || r.Current != 2 {
		t.Fatalf("second Rekey = %+v, %v; want 2 current", r, err)
	}
	// Now B alone opens both, with their plaintexts intact.
	b := ring(t, keyB)
	if err := factors.CheckKeys(ctx, s, b); err != nil {
		t.Fatalf("CheckKeys with B alone after rekey: %v", err)
	}
	for _, f := range []factors.Factor{f1, f2} {
		got, err := s.Get(ctx, f.User, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		pt, current, err := b.Open(got.User, got.ID, got.Secret)
		want := map[string]string{"alice": "one", "bob": "two"}[f.User]
		if err != nil || !current || string(pt) != want {
			t.Fatalf("Open after rekey = %q, %v, %v; want %q", pt, current, err, want)
		}
	}
	// Rekey with a key that opens nothing stops and names the factor.
	if _, err := factors.Rekey(ctx, s, ring(t, keyA), nil); err == nil || !strings.Contains(err.Error(), f1.ID) && !strings.Contains(err.Error(), f2.ID) {
		t.Fatalf("Rekey with a wrong key: %v; want an error naming a factor", err)
	}
}

func TestLookup(t *testing.T) {
	a, b := ring(t, keyA), ring(t, keyB)
	id := []byte("credential")
	l := a.Lookup(factors.TypePasskey, id)
	if len(l) != 32 || !bytes.Equal(l, a.Lookup(factors.TypePasskey, id)) {
		t.Fatalf("Lookup = %x; want 32 bytes, the same each time", l)
	}
	if bytes.Contains(l, id) {
		t.Fatal("Lookup contains the credential id")
	}
	for name, other := range map[string][]byte{
		"another key":      b.Lookup(factors.TypePasskey, id),
		"another type":     a.Lookup(factors.TypeTOTP, id),
		"another id":       a.Lookup(factors.TypePasskey, []byte("credentiaL")),
		"type/id boundary": a.Lookup(factors.TypePasskey+"c", []byte("redential")),
	} {
		if bytes.Equal(l, other) {
			t.Errorf("%s: same lookup %x", name, l)
		}
	}
	// Only the current key counts: a previous one does not change it.
	if !bytes.Equal(ring(t, keyB, keyA).Lookup(factors.TypePasskey, id), b.Lookup(factors.TypePasskey, id)) {
		t.Error("Lookup during rotation is not the current key's")
	}
}
