package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge"
)

// epoch returns s's current epoch, failing t on an error.
func epoch(t *testing.T, s challenge.Store) string {
	t.Helper()
	e, err := s.Epoch(t.Context())
	if err != nil {
		t.Fatalf("Epoch: %v", err)
	}
	if e == "" {
		t.Fatal("Epoch: empty; want a value")
	}
	return e
}

func testRevoke(t *testing.T, newStore func(*testing.T) challenge.Store) {
	s := newStore(t)
	t.Run("other epoch", func(t *testing.T) {
		// A token minted in another epoch is refused, revoked or not: the
		// store lost the revocations that might concern it.
		e := epoch(t, s)
		if again := epoch(t, s); again != e {
			t.Fatalf("Epoch changed between calls: %q then %q", e, again)
		}
		jti := unique(t)
		for _, other := range []string{e + "x", "", strings.ToUpper(e) + "Z"} {
			if got, err := s.Revoked(t.Context(), jti, other); err != nil || !got {
				t.Errorf("Revoked(epoch %q, store's %q): got %v, %v; want true", other, e, got, err)
			}
		}
	})
	jti := unique(t)
	if got, err := s.Revoked(t.Context(), jti, epoch(t, s)); err != nil || got {
		t.Fatalf("Revoked before Revoke: got %v, %v; want false", got, err)
	}
	if err := s.Revoke(t.Context(), jti, time.Hour); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if got, err := s.Revoked(t.Context(), jti, epoch(t, s)); err != nil || !got {
		t.Fatalf("Revoked after Revoke: got %v, %v; want true", got, err)
	}
	for _, other := range []string{jti + "x", jti[:len(jti)-1], strings.ToUpper(jti)} {
		if got, err := s.Revoked(t.Context(), other, epoch(t, s)); err != nil || got {
			t.Errorf("Revoked(%q): got %v, %v; want false", other, got, err)
		}
	}
	// Revoking twice is harmless.
	if err := s.Revoke(t.Context(), jti, time.Hour); err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	if got, err := s.Revoked(t.Context(), jti, epoch(t, s)); err != nil || !got {
		t.Fatalf("Revoked after second Revoke: got %v, %v; want true", got, err)
	}
}
