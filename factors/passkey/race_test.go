package passkey_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/passkey"
	"github.com/stepgate/stepgate/factors/passkey/passkeytest"
)

// hookStore runs before once, the first time a public blob is written,
// before the write reaches the store: another ceremony can run in between
// a login's read and its write, deterministically.
type hookStore struct {
	factors.Store
	mu     sync.Mutex
	before func() // taken (set to nil) by the first write
}

// take returns the hook once; the writes of the ceremony it runs do not
// run it again.
func (h *hookStore) take() func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.before
	h.before = nil
	if f == nil {
		f = func() {}
	}
	return f
}

func (h *hookStore) ReplacePublic(ctx context.Context, user, id string, prev, next []byte) (bool, error) {
	h.take()()
	return h.Store.ReplacePublic(ctx, user, id, prev, next)
}

// TestClonedMarkSurvivesStaleWrite: login A verifies, advances the counter
// and, before it writes the changed backup state, login B (a clone at an
// older counter) marks the credential possibly cloned. A's write must not
// clear the mark (it did when A wrote back the public data it had read
// before B: the clone was usable again).
func TestClonedMarkSurvivesStaleWrite(t *testing.T) {
	e := newEnv(t)
	a := passkeytest.New(origin, rpID)
	a.Flags |= passkeytest.FlagBE
	a.Counter = 10
	e.register(t, alice, a, "Key")
	h := &hookStore{Store: e.store}
	rp, err := passkey.New(passkey.Config{Origin: origin, Now: e.clock.Now}, h, e.keys, e.states, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Login A: counter 11, and the passkey is now backed up (BS), so A
	// writes the backup state from what it read before the write.
	a.Flags |= passkeytest.FlagBS
	optsA, _ := rp.BeginLogin(t.Context(), alice)
	bodyA, _ := a.Get(optsA)
	var cloneErr error
	h.mu.Lock()
	h.before = func() {
		// Login B, between A's read and A's write: a clone at counter 5.
		opts, _ := rp.BeginLogin(t.Context(), alice)
		body, _ := a.Assert(passkeytest.Challenge(opts), 5)
		_, cloneErr = rp.FinishLogin(t.Context(), alice, body)
	}
	h.mu.Unlock()
	if _, err := rp.FinishLogin(t.Context(), alice, bodyA); err != nil {
		t.Fatalf("login A: %v", err)
	}
	if !errors.Is(cloneErr, passkey.ErrCloned) {
		t.Fatalf("login B (counter 5 after 11): %v; want ErrCloned", cloneErr)
	}
	list, err := rp.List(t.Context(), "alice")
	if err != nil || len(list) != 1 {
		t.Fatalf("List: %v, %v", list, err)
	}
	if !list[0].Cloned {
		t.Fatal("the possibly-cloned mark was cleared by a stale write of the public data")
	}
	if !list[0].BackupState {
		t.Error("login A's backup state was not recorded (on top of the mark)")
	}
	if _, err := e.login(t, alice, a); !errors.Is(err, passkey.ErrNoPasskey) {
		t.Fatalf("login after the mark: %v; want ErrNoPasskey", err)
	}
}
