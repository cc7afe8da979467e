// Package storetest is the behaviour suite every factors.Store must pass
// (SQLite and PostgreSQL alike): round trips of every field, per-user
// isolation, pending factors, the atomic counter that refuses a TOTP time
// step twice (also under concurrency), compare-and-swap of public data and
// secrets, the UNIQUE credential lookup (also under concurrency), delete
// and counts.
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) factors.Store { ... })
//	}
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepgate/stepgate/factors"
)

// Run runs the suite as subtests of t. newStore returns a store that is
// fresh or shares a backend with the other subtests (every user and type
// is unique per subtest); it owns the store's lifetime (t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) factors.Store) {
	t.Helper()
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newStore(t)) })
	t.Run("Isolation", func(t *testing.T) { testIsolation(t, newStore(t)) })
	t.Run("Confirm", func(t *testing.T) { testConfirm(t, newStore(t)) })
	t.Run("Advance", func(t *testing.T) { testAdvance(t, newStore(t)) })
	t.Run("AdvanceConcurrent", func(t *testing.T) { testAdvanceConcurrent(t, newStore) })
	t.Run("Touch", func(t *testing.T) { testTouch(t, newStore(t)) })
	t.Run("ReplacePublic", func(t *testing.T) { testReplacePublic(t, newStore) })
	t.Run("ReplaceSecret", func(t *testing.T) { testReplaceSecret(t, newStore(t)) })
	t.Run("Lookup", func(t *testing.T) { testLookup(t, newStore(t)) })
	t.Run("LookupConcurrent", func(t *testing.T) { testLookupConcurrent(t, newStore) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStore(t)) })
	t.Run("Counts", func(t *testing.T) { testCounts(t, newStore(t)) })
	t.Run("Ping", func(t *testing.T) {
		if err := newStore(t).Ping(t.Context()); err != nil {
			t.Fatalf("Ping: %v; want nil", err)
		}
	})
}

func unique(t *testing.T) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	// The subtest name holds '/', and a quote exercises escaping.
	return t.Name() + "'#" + hex.EncodeToString(b[:])
}

// clock is a base time on a whole microsecond (what the stores keep).
func clock() time.Time { return time.Now().UTC().Truncate(time.Second) }

func newFactor(t *testing.T, user, typ string, created time.Time, confirmed bool) factors.Factor {
	t.Helper()
	id, err := factors.NewID()
	if err != nil {
		t.Fatal(err)
	}
	return factors.Factor{
		ID: id, User: user, Type: typ, Name: "phone ☎",
		CreatedAt: created, Confirmed: confirmed,
		Public: []byte(`{"digits":6}`), Secret: []byte("sealed-" + id),
	}
}

func create(t *testing.T, s factors.Store, f factors.Factor) factors.Factor {
	t.Helper()
	if err := s.Create(t.Context(), f); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return f
}

func equal(t *testing.T, got, want factors.Factor) {
	t.Helper()
	if got.ID != want.ID || got.User != want.User || got.Type != want.Type || got.Name != want.Name ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.LastUsedAt.Equal(want.LastUsedAt) ||
		got.Confirmed != want.Confirmed || got.Counter != want.Counter ||
		!bytes.Equal(got.Public, want.Public) || !bytes.Equal(got.Secret, want.Secret) ||
		!bytes.Equal(got.Lookup, want.Lookup) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func testRoundTrip(t *testing.T, s factors.Store) {
	ctx := t.Context()
	user := unique(t)
	now := clock().Add(123456 * time.Microsecond)
	f := newFactor(t, user, factors.TypeTOTP, now, true)
	f.LastUsedAt = now.Add(time.Minute)
	f.Counter = 1 << 40
	f.Secret = []byte{0, 1, 2, 0xff, 0} // binary, with NULs
	f.Lookup = lookup(t)
	create(t, s, f)
	got, err := s.Get(ctx, user, f.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	equal(t, got, f)

	// Zero LastUsedAt stays zero (never used); nil Public is stored empty.
	g := newFactor(t, user, factors.TypePasskey, now.Add(time.Second), false)
	g.Public = nil
	create(t, s, g)
	got, err = s.Get(ctx, user, g.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !got.LastUsedAt.IsZero() || len(got.Public) != 0 || got.Confirmed {
		t.Fatalf("got %+v; want never used, empty public, pending", got)
	}

	// A duplicate id is refused.
	if err := s.Create(ctx, f); err == nil {
		t.Fatalf("Create with an existing id: nil error; want one")
	}

	// List: oldest first, pending included.
	list, err := s.List(ctx, user)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 2 || list[0].ID != f.ID || list[1].ID != g.ID {
		t.Fatalf("List = %v; want [%s %s]", ids(list), f.ID, g.ID)
	}
	// All sees them too.
	all, err := s.All(ctx)
	if err != nil {
		t.Fatalf("All: %v", err)
	}
	seen := 0
	for _, a := range all {
		if a.User == user {
			seen++
		}
	}
	if seen != 2 {
		t.Fatalf("All has %d factors of the user; want 2", seen)
	}
}

func ids(fs []factors.Factor) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}

func testIsolation(t *testing.T, s factors.Store) {
	ctx := t.Context()
	alice, bob := unique(t), unique(t)
	f := create(t, s, newFactor(t, alice, factors.TypeTOTP, clock(), true))
	if _, err := s.Get(ctx, bob, f.ID); !errors.Is(err, factors.ErrNotFound) {
		t.Fatalf("Get with another user: %v; want ErrNotFound", err)
	}
	if list, err := s.List(ctx, bob); err != nil || len(list) != 0 {
		t.Fatalf("List(bob) = %v, %v; want none", ids(list), err)
	}
	if ok, err := s.Advance(ctx, bob, f.ID, 5, clock()); ok || err != nil {
		t.Fatalf("Advance with another user = %v, %v; want false, nil", ok, err)
	}
	if err := s.Delete(ctx, bob, f.ID); !errors.Is(err, factors.ErrNotFound) {
		t.Fatalf("Delete with another user: %v; want ErrNotFound", err)
	}
	if ok, err := s.ReplaceSecret(ctx, bob, f.ID, f.Secret, []byte("x")); ok || err != nil {
		t.Fatalf("ReplaceSecret with another user = %v, %v; want false, nil", ok, err)
	}
	if _, err := s.Get(ctx, alice, f.ID); err != nil {
		t.Fatalf("Get(alice) after bob's attempts: %v", err)
	}
	if _, err := s.Get(ctx, alice, "no-such-id"); !errors.Is(err, factors.ErrNotFound) {
		t.Fatalf("Get unknown id: %v; want ErrNotFound", err)
	}
}

func testConfirm(t *testing.T, s factors.Store) {
	ctx := t.Context()
	user := unique(t)
	now := clock()
	f := create(t, s, newFactor(t, user, factors.TypeTOTP, now, false))
	// A pending factor cannot be used.
	if ok, err := s.Advance(ctx, user, f.ID, 10, now); ok || err != nil {
		t.Fatalf("Advance on pending = %v, %v; want false, nil", ok, err)
	}
	if err := s.Confirm(ctx, unique(t), f.ID, 10, now); !errors.Is(err, factors.ErrNotFound) {
		t.Fatalf("Confirm with another user: %v; want ErrNotFound", err)
	}
	used := now.Add(3 * time.Second)
	if err := s.Confirm(ctx, user, f.ID, 10, used); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	got, err := s.Get(ctx, user, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Confirmed || got.Counter != 10 || !got.LastUsedAt.Equal(used) {
		t.Fatalf("after Confirm: %+v; want confirmed, counter 10, last used %v", got, used)
	}
	if err := s.Confirm(ctx, user, f.ID, 11, used); !errors.Is(err, factors.ErrNotFound) {
		t.Fatalf("second Confirm: %v; want ErrNotFound", err)
	}
	// The step used to confirm cannot be used again to step up.
	if ok, err := s.Advance(ctx, user, f.ID, 10, used); ok || err != nil {
		t.Fatalf("Advance with the confirming step = %v, %v; want false, nil", ok, err)
	}
}

func testAdvance(t *testing.T, s factors.Store) {
	ctx := t.Context()
	user := unique(t)
	now := clock()
	f := create(t, s, newFactor(t, user, factors.TypeTOTP, now, true))
	steps := []struct {
		counter int64
		want    bool
	}{{100, true}, {100, false}, {99, false}, {101, true}, {50, false}, {200, true}}
	last := int64(0)
	for i, st := range steps {
		at := now.Add(time.Duration(i+1) * time.Second)
		ok, err := s.Advance(ctx, user, f.ID, st.counter, at)
		if err != nil {
			t.Fatalf("Advance(%d): %v", st.counter, err)
		}
		if ok != st.want {
			t.Fatalf("Advance(%d) after %d = %v; want %v", st.counter, last, ok, st.want)
		}
		if ok {
			last = st.counter
			got, err := s.Get(ctx, user, f.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Counter != st.counter || !got.LastUsedAt.Equal(at) {
				t.Fatalf("after Advance(%d): counter %d, last used %v; want %d, %v", st.counter, got.Counter, got.LastUsedAt, st.counter, at)
			}
		}
	}
}

// testAdvanceConcurrent is the replay guarantee: of many concurrent
// submissions of one time step, through separate stores on the same
// backend when newStore shares one (replicas), exactly one is accepted.
func testAdvanceConcurrent(t *testing.T, newStore func(t *testing.T) factors.Store) {
	stores := []factors.Store{newStore(t), newStore(t)}
	user := unique(t)
	f := create(t, stores[0], newFactor(t, user, factors.TypeTOTP, clock(), true))
	for round := int64(1); round <= 5; round++ {
		var wins atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := stores[i%2].Advance(context.Background(), user, f.ID, round*1000, clock())
				if err != nil {
					errs <- err
				}
				if ok {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("Advance: %v", err)
		}
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d concurrent Advance calls won; want exactly 1", round, n)
		}
	}
}

// testTouch: a factor without a counter is used by Touch; once it has a
// counter, Touch refuses (a zero count from it would be a regression).
func testTouch(t *testing.T, s factors.Store) {
	ctx := t.Context()
	user := unique(t)
	now := clock()
	f := create(t, s, newFactor(t, user, factors.TypePasskey, now, true))
	at := now.Add(time.Minute)
	if ok, err := s.Touch(ctx, user, f.ID, at); !ok || err != nil {
		t.Fatalf("Touch at counter 0 = %v, %v; want true, nil", ok, err)
	}
	got, err := s.Get(ctx, user, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Counter != 0 || !got.LastUsedAt.Equal(at) {
		t.Fatalf("after Touch: counter %d, last used %v; want 0, %v", got.Counter, got.LastUsedAt, at)
	}
	if ok, err := s.Touch(ctx, "other "+user, f.ID, at); ok || err != nil {
		t.Fatalf("Touch of another user's factor = %v, %v; want false, nil", ok, err)
	}
	if ok, err := s.Advance(ctx, user, f.ID, 5, at); !ok || err != nil {
		t.Fatalf("Advance(5) = %v, %v; want true, nil", ok, err)
	}
	if ok, err := s.Touch(ctx, user, f.ID, at.Add(time.Minute)); ok || err != nil {
		t.Fatalf("Touch at counter 5 = %v, %v; want false, nil", ok, err)
	}
	pending := create(t, s, newFactor(t, user, factors.TypePasskey, now, false))
	if ok, err := s.Touch(ctx, user, pending.ID, at); ok || err != nil {
		t.Fatalf("Touch of a pending factor = %v, %v; want false, nil", ok, err)
	}
}

// testReplacePublic: Public is only ever replaced by a compare and swap,
// so a writer holding a stale copy (one read before a passkey was marked
// possibly cloned) cannot write it back; of concurrent writers from the
// same copy exactly one wins.
func testReplacePublic(t *testing.T, newStore func(t *testing.T) factors.Store) {
	ctx := t.Context()
	stores := []factors.Store{newStore(t), newStore(t)}
	s := stores[0]
	user := unique(t)
	f := create(t, s, newFactor(t, user, factors.TypePasskey, clock(), true))
	marked := []byte(`{"cloned":true}`)
	if ok, err := s.ReplacePublic(ctx, user, f.ID, f.Public, marked); err != nil || !ok {
		t.Fatalf("ReplacePublic from the stored data = %v, %v; want true, nil", ok, err)
	}
	got, err := s.Get(ctx, user, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Public) != string(marked) || string(got.Secret) != string(f.Secret) || got.Counter != f.Counter {
		t.Fatalf("after ReplacePublic: public %q secret %q; want the new public and the rest unchanged", got.Public, got.Secret)
	}
	// The stale copy: refused, and the mark stays.
	if ok, err := s.ReplacePublic(ctx, user, f.ID, f.Public, []byte(`{"backup_state":true}`)); err != nil || ok {
		t.Fatalf("ReplacePublic from a stale copy = %v, %v; want false, nil", ok, err)
	}
	if got, _ := s.Get(ctx, user, f.ID); string(got.Public) != string(marked) {
		t.Fatalf("after a stale ReplacePublic: public %q; want %q kept", got.Public, marked)
	}
	if ok, err := s.ReplacePublic(ctx, "other "+user, f.ID, marked, []byte(`{}`)); err != nil || ok {
		t.Fatalf("ReplacePublic of another user's factor = %v, %v; want false, nil", ok, err)
	}
	if ok, err := s.ReplacePublic(ctx, user, "missing", marked, []byte(`{}`)); err != nil || ok {
		t.Fatalf("ReplacePublic of a missing factor = %v, %v; want false, nil", ok, err)
	}
	// A factor created with no public data is replaced from nil too.
	empty := newFactor(t, user, factors.TypePasskey, clock(), true)
	empty.Public = nil
	create(t, s, empty)
	if ok, err := s.ReplacePublic(ctx, user, empty.ID, nil, marked); err != nil || !ok {
		t.Fatalf("ReplacePublic from nil = %v, %v; want true, nil", ok, err)
	}

	var wins atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := []byte(fmt.Sprintf(`{"writer":%d}`, i))
			ok, err := stores[i%2].ReplacePublic(context.Background(), user, f.ID, marked, next)
			if err != nil {
				errs <- err
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("ReplacePublic: %v", err)
	}
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d concurrent ReplacePublic calls from one copy won; want exactly 1", n)
	}
}

func testReplaceSecret(t *testing.T, s factors.Store) {
	ctx := t.Context()
	user := unique(t)
	f := create(t, s, newFactor(t, user, factors.TypeTOTP, clock(), true))
	if ok, err := s.ReplaceSecret(ctx, user, f.ID, []byte("not the secret"), []byte("new")); ok || err != nil {
		t.Fatalf("ReplaceSecret with a wrong prev = %v, %v; want false, nil", ok, err)
	}
	if ok, err := s.ReplaceSecret(ctx, user, f.ID, f.Secret, []byte("new")); !ok || err != nil {
		t.Fatalf("ReplaceSecret = %v, %v; want true, nil", ok, err)
	}
	got, err := s.Get(ctx, user, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Secret) != "new" {
		t.Fatalf("secret %q; want %q", got.Secret, "new")
	}
	if ok, _ := s.ReplaceSecret(ctx, user, f.ID, f.Secret, []byte("again")); ok {
		t.Fatalf("ReplaceSecret with the old prev succeeded twice")
	}
}

func testDelete(t *testing.T, s factors.Store) {
	ctx := t.Context()
	user := unique(t)
	f := create(t, s, newFactor(t, user, factors.TypeTOTP, clock(), true))
	g := create(t, s, newFactor(t, user, factors.TypeTOTP, clock().Add(time.Second), true))
	if err := s.Delete(ctx, user, f.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Delete(ctx, user, f.ID); !errors.Is(err, factors.ErrNotFound) {
		t.Fatalf("second Delete: %v; want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, user, f.ID); !errors.Is(err, factors.ErrNotFound) {
		t.Fatalf("Get after Delete: %v; want ErrNotFound", err)
	}
	if ok, err := s.Advance(ctx, user, f.ID, 1, clock()); ok || err != nil {
		t.Fatalf("Advance after Delete = %v, %v; want false, nil", ok, err)
	}
	if list, _ := s.List(ctx, user); len(list) != 1 || list[0].ID != g.ID {
		t.Fatalf("List after Delete = %v; want [%s]", ids(list), g.ID)
	}
}

func testCounts(t *testing.T, s factors.Store) {
	ctx := t.Context()
	typ := unique(t) // a type no other subtest uses, so shared backends agree
	for i := range 3 {
		create(t, s, newFactor(t, unique(t), typ, clock(), i < 2))
	}
	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	if counts[typ] != 2 {
		t.Fatalf("Counts[%q] = %d; want 2 (pending ones are not counted)", typ, counts[typ])
	}
}

// lookup returns a fresh random lookup (the stores see only bytes).
func lookup(t *testing.T) []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// testLookup: a lookup is unique across all users (ErrDuplicate), any
// number of factors have none, SetLookup keeps it unique, and a deleted
// factor's lookup is free again.
func testLookup(t *testing.T, s factors.Store) {
	ctx := t.Context()
	user, other := unique(t), unique(t)
	l := lookup(t)
	f := newFactor(t, user, factors.TypePasskey, clock(), true)
	f.Lookup = l
	create(t, s, f)
	got, err := s.Get(ctx, user, f.ID)
	if err != nil || !bytes.Equal(got.Lookup, l) {
		t.Fatalf("Get = %x, %v; want lookup %x", got.Lookup, err, l)
	}
	for _, u := range []string{user, other} {
		g := newFactor(t, u, factors.TypePasskey, clock(), true)
		g.Lookup = l
		if err := s.Create(ctx, g); !errors.Is(err, factors.ErrDuplicate) {
			t.Fatalf("Create of a held lookup for %s: %v; want ErrDuplicate", u, err)
		}
		if _, err := s.Get(ctx, u, g.ID); !errors.Is(err, factors.ErrNotFound) {
			t.Fatalf("refused duplicate stored anyway: %v", err)
		}
	}
	// No lookup (TOTP): any number, nil and empty alike.
	var none []factors.Factor
	for i := range 3 {
		n := newFactor(t, other, factors.TypeTOTP, clock(), true)
		if i == 1 {
			n.Lookup = []byte{}
		}
		none = append(none, create(t, s, n))
	}
	if got, _ := s.Get(ctx, other, none[1].ID); got.Lookup != nil {
		t.Fatalf("an empty lookup reads back as %x; want nil (no lookup)", got.Lookup)
	}
	// SetLookup: a held one is ErrDuplicate, a fresh one is stored.
	if err := s.SetLookup(ctx, other, none[0].ID, l); !errors.Is(err, factors.ErrDuplicate) {
		t.Fatalf("SetLookup to a held lookup: %v; want ErrDuplicate", err)
	}
	m := lookup(t)
	if err := s.SetLookup(ctx, other, none[0].ID, m); err != nil {
		t.Fatalf("SetLookup: %v", err)
	}
	if got, _ := s.Get(ctx, other, none[0].ID); !bytes.Equal(got.Lookup, m) {
		t.Fatalf("after SetLookup: %x; want %x", got.Lookup, m)
	}
	if err := s.SetLookup(ctx, user, none[0].ID, lookup(t)); !errors.Is(err, factors.ErrNotFound) {
		t.Fatalf("SetLookup of another user's factor: %v; want ErrNotFound", err)
	}
	// A removed credential can be registered again.
	if err := s.Delete(ctx, user, f.ID); err != nil {
		t.Fatal(err)
	}
	g := newFactor(t, other, factors.TypePasskey, clock(), true)
	g.Lookup = l
	if err := s.Create(ctx, g); err != nil {
		t.Fatalf("Create of a deleted factor's lookup: %v; want nil", err)
	}
}

// testLookupConcurrent: of concurrent Creates of one lookup (on two
// stores, as replicas), exactly one succeeds and the others are
// ErrDuplicate.
func testLookupConcurrent(t *testing.T, newStore func(t *testing.T) factors.Store) {
	stores := []factors.Store{newStore(t), newStore(t)}
	l := lookup(t)
	var wins atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		f := newFactor(t, unique(t), factors.TypePasskey, clock(), true)
		f.Lookup = l
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := stores[i%2].Create(context.Background(), f); {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, factors.ErrDuplicate):
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Create: %v; want nil or ErrDuplicate", err)
	}
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d concurrent Creates of one lookup succeeded; want exactly 1", n)
	}
}

// MigratedFromV1 checks a store just opened (and so migrated) on a
// database that was at schema version 1 (before the lookup column) holding
// one factor, id "old" of user "alice" with Public "{}": the factor reads
// back with no lookup (serve fills it at start: Reindex), and the UNIQUE
// lookup works from then on.
func MigratedFromV1(t *testing.T, s factors.Store) {
	t.Helper()
	f, err := s.Get(t.Context(), "alice", "old")
	if err != nil || f.Lookup != nil || string(f.Public) != "{}" {
		t.Fatalf("the version-1 factor after migration: %+v, %v; want it with no lookup", f, err)
	}
	l := []byte("0123456789abcdef0123456789abcdef")
	if err := s.SetLookup(t.Context(), "alice", "old", l); err != nil {
		t.Fatal(err)
	}
	dup := factors.Factor{ID: "new", User: "bob", Type: "passkey", Name: "Key", CreatedAt: time.Now(), Confirmed: true, Secret: []byte{1}, Lookup: l}
	if err := s.Create(t.Context(), dup); !errors.Is(err, factors.ErrDuplicate) {
		t.Fatalf("Create of the migrated factor's lookup: %v; want ErrDuplicate", err)
	}
}
