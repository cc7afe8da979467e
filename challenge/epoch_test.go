package challenge

import (
	"context"
	"errors"
	"testing"

	"github.com/stepgate/stepgate/secondfactor"
)

// TestTokenRefusedAfterRestart: the memory store loses its revocations
// with the process, so a token minted before a restart (another
// MemoryStore, another epoch) is refused after it, revoked or not
// (SPEC §13).
func TestTokenRefusedAfterRestart(t *testing.T) {
	ctx := context.Background()
	before := testTokens(NewMemoryStore(0), "stepgate", nil)
	g, err := before.Mint(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := before.Validate(ctx, g.Token, alice); err != nil {
		t.Fatalf("Validate before the restart: %v", err)
	}
	after := testTokens(NewMemoryStore(0), "stepgate", nil)
	if _, err := after.Validate(ctx, g.Token, alice); !errors.Is(err, secondfactor.ErrTokenInvalid) {
		t.Fatalf("Validate after a restart: got %v; want ErrTokenInvalid", err)
	}
	g2, err := after.Mint(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := after.Validate(ctx, g2.Token, alice); err != nil {
		t.Fatalf("Validate of a token minted after the restart: %v", err)
	}
}
