package passkey_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge"
	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/passkey"
	"github.com/stepgate/stepgate/factors/passkey/passkeytest"
	"github.com/stepgate/stepgate/factors/pgstore"
	"github.com/stepgate/stepgate/factors/pgstore/pgtest"
	"github.com/stepgate/stepgate/factors/sqlitestore"
)

const (
	key1 = "0123456789abcdef0123456789abcdef"
	key2 = "fedcba9876543210fedcba9876543210"
)

// opener returns another connection (pool) to one database, as replicas
// would have.
type opener func(t *testing.T) factors.Store

// drivers returns, per driver, a function that makes a fresh database
// (on one PostgreSQL server per test) and returns its opener.
func drivers() map[string]func(t *testing.T) func(t *testing.T) opener {
	return map[string]func(t *testing.T) func(t *testing.T) opener{
		"sqlite": func(t *testing.T) func(t *testing.T) opener {
			return func(t *testing.T) opener {
				path := filepath.Join(t.TempDir(), "f.db")
				return func(t *testing.T) factors.Store {
					s, err := sqlitestore.Open(t.Context(), path)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					return s
				}
			}
		},
		"postgres": func(t *testing.T) func(t *testing.T) opener {
			srv := pgtest.Start(t)
			return func(t *testing.T) opener {
				dsn := srv.NewDatabase(t)
				return func(t *testing.T) factors.Store {
					s, err := pgstore.Open(t.Context(), pgstore.Options{DSN: dsn})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					return s
				}
			}
		},
	}
}

func ring(t *testing.T, keys ...string) *factors.Keyring {
	t.Helper()
	var prev [][]byte
	for _, k := range keys[1:] {
		prev = append(prev, []byte(k))
	}
	k, err := factors.NewKeyring([]byte(keys[0]), prev...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newRP(t *testing.T, st factors.Store, keys *factors.Keyring, states *challenge.MemoryStore) *passkey.RP {
	t.Helper()
	rp, err := passkey.New(passkey.Config{Origin: origin}, st, keys, states, challenge.ErrNoCeremony)
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

// barrierStore holds every Create until release is closed, after
// telling arrived: two registrations are both past any check before either
// inserts.
type barrierStore struct {
	factors.Store
	arrived chan struct{}
	release chan struct{}
}

func (b *barrierStore) Create(ctx context.Context, f factors.Factor) error {
	b.arrived <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.Store.Create(ctx, f)
}

// storedCopies counts the passkeys of any user holding the credential id.
func storedCopies(t *testing.T, st factors.Store, keys *factors.Keyring, id []byte) int {
	t.Helper()
	all, err := st.All(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range all {
		c, err := passkey.Open(f, keys)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(c.CredentialID, id) {
			n++
		}
	}
	return n
}

// TestCredentialUniqueness: a credential id is stored once, whoever
// registers it and however concurrently, on both drivers; rekey and the
// fill at start keep that true for rows under an old key or from before
// the lookup column.
func TestCredentialUniqueness(t *testing.T) {
	for name, driver := range drivers() {
		t.Run(name, func(t *testing.T) {
			fresh := driver(t)
			t.Run("Concurrent", func(t *testing.T) { testConcurrentRegistrations(t, fresh) })
			t.Run("Rekey", func(t *testing.T) { testRekeyKeepsUnique(t, fresh(t)(t)) })
			t.Run("Reindex", func(t *testing.T) { testReindexFills(t, fresh(t)(t)) })
		})
	}
}

// testConcurrentRegistrations: two registrations of one credential id,
// each on its own store connection (replicas), both held at the insert
// until both have passed every check: exactly one is stored, the other is
// refused as a duplicate (ErrTaken when the users differ).
func testConcurrentRegistrations(t *testing.T, fresh func(t *testing.T) opener) {
	for _, tt := range []struct {
		name  string
		users [2]passkey.User
		want  error
	}{
		{"same user", [2]passkey.User{alice, {Subject: "alice", Session: "s9"}}, passkey.ErrDuplicate},
		{"two users", [2]passkey.User{alice, bob}, passkey.ErrTaken},
	} {
		t.Run(tt.name, func(t *testing.T) {
			open := fresh(t)
			keys := ring(t, key1)
			states := challenge.NewMemoryStore(0)
			t.Cleanup(func() { states.Close() })
			b := &barrierStore{arrived: make(chan struct{}, 2), release: make(chan struct{})}
			a := passkeytest.New(origin, rpID)
			var rps [2]*passkey.RP
			var bodies [2][]byte
			for i, u := range tt.users {
				st := open(t)
				rps[i] = newRP(t, &barrierStore{Store: st, arrived: b.arrived, release: b.release}, keys, states)
				opts, err := rps[i].BeginRegistration(t.Context(), u, "Key")
				if err != nil {
					t.Fatal(err)
				}
				if bodies[i], err = a.Create(opts); err != nil {
					t.Fatal(err)
				}
			}
			errs := make(chan error, 2)
			for i, u := range tt.users {
				go func() {
					_, err := rps[i].FinishRegistration(context.Background(), u, bodies[i])
					errs <- err
				}()
			}
			deadline := time.After(20 * time.Second)
			for range 2 {
				select {
				case <-b.arrived:
				case err := <-errs:
					t.Fatalf("a registration ended before the insert: %v", err)
				case <-deadline:
					t.Fatal("the registrations did not both reach the insert")
				}
			}
			close(b.release)
			var ok int
			for range 2 {
				switch err := <-errs; {
				case err == nil:
					ok++
				case !errors.Is(err, tt.want) || !errors.Is(err, passkey.ErrDuplicate):
					t.Errorf("the refused registration: %v; want %v (an ErrDuplicate)", err, tt.want)
				}
			}
			if ok != 1 {
				t.Fatalf("%d of 2 concurrent registrations of one credential succeeded; want exactly 1", ok)
			}
			if n := storedCopies(t, open(t), keys, a.ID); n != 1 {
				t.Fatalf("the credential is stored %d times; want 1", n)
			}
		})
	}
}

// testRekeyKeepsUnique: after the encryption key changes and rekey runs,
// the lookups are under the new key, so a registration of the same
// credential id is still refused (it would be stored if rekey left the
// old key's lookups: the new key hashes the id differently).
func testRekeyKeepsUnique(t *testing.T, st factors.Store) {
	ctx := t.Context()
	states := challenge.NewMemoryStore(0)
	t.Cleanup(func() { states.Close() })
	a := passkeytest.New(origin, rpID)
	old := newRP(t, st, ring(t, key1), states)
	u := passkey.User{Subject: "rekey " + t.Name(), Session: "s"}
	opts, _ := old.BeginRegistration(ctx, u, "Key")
	body, _ := a.Create(opts)
	c, err := old.FinishRegistration(ctx, u, body)
	if err != nil {
		t.Fatal(err)
	}

	rot := ring(t, key2, key1)
	r, err := factors.Rekey(ctx, st, rot, passkey.Identify)
	if err != nil || r.Rekeyed != 1 || r.Lookups.Set != 1 || len(r.Lookups.Duplicates) != 0 {
		t.Fatalf("Rekey = %+v, %v; want 1 rekeyed, 1 lookup set", r, err)
	}
	f, err := st.Get(ctx, u.Subject, c.Factor.ID)
	if err != nil || !bytes.Equal(f.Lookup, ring(t, key2).Lookup(factors.TypePasskey, a.ID)) {
		t.Fatalf("after rekey the lookup is %x (%v); want the new key's", f.Lookup, err)
	}
	// The new key alone (previous keys removed, as rekey allows).
	rp := newRP(t, st, ring(t, key2), states)
	// The passkey still signs in under the new key.
	opts2, err := rp.BeginLogin(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = a.Get(opts2)
	if _, err := rp.FinishLogin(ctx, u, body); err != nil {
		t.Fatalf("login after rekey: %v", err)
	}
	for _, tt := range []struct {
		u    passkey.User
		want error
	}{
		{u, passkey.ErrDuplicate},
		{passkey.User{Subject: "other " + t.Name(), Session: "s"}, passkey.ErrTaken},
	} {
		opts, _ := rp.BeginRegistration(ctx, tt.u, "Again")
		body, _ := a.Create(opts)
		if _, err := rp.FinishRegistration(ctx, tt.u, body); !errors.Is(err, tt.want) {
			t.Fatalf("registration of the credential for %s after rekey: %v; want %v", tt.u.Subject, err, tt.want)
		}
	}
}

// testReindexFills: rows without a lookup (stored before the column
// existed) get one from Reindex (what serve runs at start), after which
// the credential is unique again; a credential already stored twice is
// reported, not hidden.
func testReindexFills(t *testing.T, st factors.Store) {
	ctx := t.Context()
	keys := ring(t, key1)
	states := challenge.NewMemoryStore(0)
	t.Cleanup(func() { states.Close() })
	rp := newRP(t, st, keys, states)
	a := passkeytest.New(origin, rpID)
	u1 := passkey.User{Subject: "one " + t.Name(), Session: "s"}
	u2 := passkey.User{Subject: "two " + t.Name(), Session: "s"}
	u3 := passkey.User{Subject: "three " + t.Name(), Session: "s"}
	reg := func(u passkey.User) (passkey.Credential, error) {
		opts, _ := rp.BeginRegistration(ctx, u, "Key")
		body, _ := a.Create(opts)
		return rp.FinishRegistration(ctx, u, body)
	}
	c1, err := reg(u1)
	if err != nil {
		t.Fatal(err)
	}
	// As a row from before migration 0002: no lookup. The old racy check
	// could let the same credential in for another user, so make that
	// happen too.
	if err := st.SetLookup(ctx, u1.Subject, c1.Factor.ID, nil); err != nil {
		t.Fatal(err)
	}
	c2, err := reg(u2)
	if err != nil {
		t.Fatalf("registration next to a row without lookup: %v", err)
	}
	if err := st.SetLookup(ctx, u2.Subject, c2.Factor.ID, nil); err != nil {
		t.Fatal(err)
	}
	b := passkeytest.New(origin, rpID)
	opts, _ := rp.BeginRegistration(ctx, u3, "Other")
	body, _ := b.Create(opts)
	if _, err := rp.FinishRegistration(ctx, u3, body); err != nil {
		t.Fatal(err)
	}

	r, err := factors.Reindex(ctx, st, keys, passkey.Identify)
	if err != nil || r.Set != 1 || len(r.Duplicates) != 1 {
		t.Fatalf("Reindex = %+v, %v; want 1 set, 1 duplicate reported", r, err)
	}
	if _, err := reg(u3); !errors.Is(err, passkey.ErrTaken) {
		t.Fatalf("registration after Reindex: %v; want ErrTaken", err)
	}
	r, err = factors.Reindex(ctx, st, keys, passkey.Identify)
	if err != nil || r.Set != 0 || r.Current != 2 || len(r.Duplicates) != 1 {
		t.Fatalf("second Reindex = %+v, %v; want nothing set, 2 current, the duplicate still reported", r, err)
	}
}
