package challenge_test

import (
	"testing"

	"github.com/stepgate/stepgate/challenge"
	"github.com/stepgate/stepgate/challenge/storetest"
)

// TestMemoryStore runs the shared Store behaviour suite, the same one the
// Redis store passes, against the in-memory store.
func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) challenge.Store {
		s := challenge.NewMemoryStore(0)
		t.Cleanup(func() { s.Close() })
		return s
	})
}
