package storetest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge"
)

func testCode(t *testing.T, newStore func(*testing.T) challenge.Store) {
	t.Run("peek", func(t *testing.T) {
		s := newStore(t)
		key := unique(t)
		want := putCode(t, t.Context(), s, key, "jane@example.com", time.Minute)
		// Peeking twice shows that PeekCode does not consume the code.
		for i := range 2 {
			got, err := s.PeekCode(t.Context(), key)
			if err != nil {
				t.Fatalf("PeekCode #%d: %v", i, err)
			}
			assertCode(t, got, want, 0)
		}
	})

	t.Run("no code", func(t *testing.T) {
		s := newStore(t)
		key := unique(t)
		if _, err := s.PeekCode(t.Context(), key); !errors.Is(err, challenge.ErrNoCode) {
			t.Errorf("PeekCode of unknown key: got %v; want ErrNoCode", err)
		}
		res, err := s.CheckCode(t.Context(), key, newMAC(t), 5)
		if !errors.Is(err, challenge.ErrNoCode) {
			t.Errorf("CheckCode of unknown key: got %+v, %v; want ErrNoCode", res, err)
		}
		if res.OK {
			t.Errorf("CheckCode of unknown key: got OK")
		}
	})

	t.Run("match consumes", func(t *testing.T) {
		s := newStore(t)
		key := unique(t)
		c := putCode(t, t.Context(), s, key, "jane@example.com", time.Minute)
		for range 2 {
			if res, err := s.CheckCode(t.Context(), key, newMAC(t), 5); err != nil || res.OK {
				t.Fatalf("wrong mac: got %+v, %v; want a mismatch", res, err)
			}
		}
		res, err := s.CheckCode(t.Context(), key, c.MAC, 5)
		if err != nil || !res.OK {
			t.Fatalf("right mac: got %+v, %v; want OK", res, err)
		}
		// The code as it was before the check: two wrong attempts.
		assertCode(t, res.Code, c, 2)
		if _, err := s.PeekCode(t.Context(), key); !errors.Is(err, challenge.ErrNoCode) {
			t.Errorf("PeekCode after a match: got %v; want ErrNoCode", err)
		}
		if res, err := s.CheckCode(t.Context(), key, c.MAC, 5); !errors.Is(err, challenge.ErrNoCode) {
			t.Errorf("right mac again (replay): got %+v, %v; want ErrNoCode", res, err)
		}
	})

	t.Run("mismatch counts attempts", func(t *testing.T) {
		for _, max := range []int{1, 3, 5} {
			s := newStore(t)
			key := unique(t)
			c := putCode(t, t.Context(), s, key, "jane@example.com", time.Minute)
			for i := 1; i <= max; i++ {
				res, err := s.CheckCode(t.Context(), key, newMAC(t), max)
				if err != nil {
					t.Fatalf("max %d, wrong #%d: %v", max, i, err)
				}
				if res.OK {
					t.Fatalf("max %d, wrong #%d: got OK for a wrong mac", max, i)
				}
				if res.AttemptsLeft != max-i {
					t.Errorf("max %d, wrong #%d: got AttemptsLeft %d; want %d", max, i, res.AttemptsLeft, max-i)
				}
				assertCode(t, res.Code, c, i-1)
				if i == max {
					break
				}
				got, err := s.PeekCode(t.Context(), key)
				if err != nil {
					t.Fatalf("max %d, PeekCode after wrong #%d: %v", max, i, err)
				}
				assertCode(t, got, c, i)
			}
			// The code is dead: even the right mac no longer works.
			if _, err := s.PeekCode(t.Context(), key); !errors.Is(err, challenge.ErrNoCode) {
				t.Errorf("max %d: PeekCode of a dead code: got %v; want ErrNoCode", max, err)
			}
			if res, err := s.CheckCode(t.Context(), key, c.MAC, max); !errors.Is(err, challenge.ErrNoCode) || res.OK {
				t.Errorf("max %d: right mac on a dead code: got %+v, %v; want ErrNoCode", max, res, err)
			}
		}
	})

	t.Run("wrong mac shapes", func(t *testing.T) {
		// A MAC of another length, or differing in one bit, is a plain
		// mismatch: it counts one attempt and leaves the code alive.
		mac := newMAC(t)
		flip := func(i int) []byte {
			b := bytes.Clone(mac)
			b[i] ^= 1
			return b
		}
		tests := []struct {
			name string
			mac  []byte
		}{
			{"nil", nil},
			{"empty", []byte{}},
			{"prefix", mac[:len(mac)-1]},
			{"one byte", mac[:1]},
			{"longer", append(bytes.Clone(mac), 0)},
			{"doubled", append(bytes.Clone(mac), mac...)},
			{"first bit", flip(0)},
			{"last bit", flip(len(mac) - 1)},
			{"zeros", make([]byte, len(mac))},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newStore(t)
				key := unique(t)
				c := challenge.Code{MAC: bytes.Clone(mac), Email: "jane@example.com", ExpiresAt: time.Now().Add(time.Minute)}
				if err := s.PutCode(t.Context(), key, c, time.Minute); err != nil {
					t.Fatal(err)
				}
				res, err := s.CheckCode(t.Context(), key, tt.mac, 5)
				if err != nil || res.OK || res.AttemptsLeft != 4 {
					t.Fatalf("got %+v, %v; want a mismatch with AttemptsLeft 4", res, err)
				}
				res, err = s.CheckCode(t.Context(), key, mac, 5)
				if err != nil || !res.OK {
					t.Fatalf("right mac after the mismatch: got %+v, %v; want OK", res, err)
				}
			})
		}
	})

	t.Run("replace", func(t *testing.T) {
		s := newStore(t)
		key := unique(t)
		old := putCode(t, t.Context(), s, key, "old@example.com", time.Minute)
		for range 2 {
			if _, err := s.CheckCode(t.Context(), key, newMAC(t), 3); err != nil {
				t.Fatal(err)
			}
		}
		c := putCode(t, t.Context(), s, key, "new@example.com", time.Minute)
		got, err := s.PeekCode(t.Context(), key)
		if err != nil {
			t.Fatalf("PeekCode after replace: %v", err)
		}
		// The new code starts with its own attempts, not the old code's.
		assertCode(t, got, c, 0)
		res, err := s.CheckCode(t.Context(), key, old.MAC, 3)
		if err != nil || res.OK || res.AttemptsLeft != 2 {
			t.Fatalf("old mac after replace: got %+v, %v; want a mismatch with AttemptsLeft 2", res, err)
		}
		res, err = s.CheckCode(t.Context(), key, c.MAC, 3)
		if err != nil || !res.OK {
			t.Fatalf("new mac: got %+v, %v; want OK", res, err)
		}
		if res.Code.Email != "new@example.com" {
			t.Errorf("got Email %q; want %q", res.Code.Email, "new@example.com")
		}
	})

	t.Run("caller owns the mac slice", func(t *testing.T) {
		// Changing the caller's slice after PutCode must not change the
		// stored code (a store keeping the slice would accept the new bytes).
		s := newStore(t)
		key := unique(t)
		mac := newMAC(t)
		orig := bytes.Clone(mac)
		if err := s.PutCode(t.Context(), key, challenge.Code{MAC: mac, Email: "a@example.com", ExpiresAt: time.Now().Add(time.Minute)}, time.Minute); err != nil {
			t.Fatal(err)
		}
		mac[0] ^= 0xff
		res, err := s.CheckCode(t.Context(), key, mac, 5)
		if err != nil || res.OK {
			t.Fatalf("changed slice: got %+v, %v; want a mismatch", res, err)
		}
		if res, err := s.CheckCode(t.Context(), key, orig, 5); err != nil || !res.OK {
			t.Fatalf("original mac: got %+v, %v; want OK", res, err)
		}
	})
}

// assertCode compares a stored code with what was put, expecting attempts
// wrong attempts so far. ExpiresAt may lose precision in a backend, never
// more than a second.
func assertCode(t *testing.T, got, want challenge.Code, attempts int) {
	t.Helper()
	if !bytes.Equal(got.MAC, want.MAC) {
		t.Errorf("got MAC %x; want %x", got.MAC, want.MAC)
	}
	if got.Email != want.Email {
		t.Errorf("got Email %q; want %q", got.Email, want.Email)
	}
	if got.Attempts != attempts {
		t.Errorf("got Attempts %d; want %d", got.Attempts, attempts)
	}
	if d := got.ExpiresAt.Sub(want.ExpiresAt).Abs(); d > time.Second {
		t.Errorf("got ExpiresAt %v; want %v", got.ExpiresAt, want.ExpiresAt)
	}
}
