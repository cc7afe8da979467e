package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/sqlitestore"
)

// TestFactorStoreStartError checks that a factor store that cannot be
// opened refuses the start with a message naming the key once (it read
// "factors.sqlite: factors.sqlite.path: ..." when openFactors added the
// driver to an error that already named it).
func TestFactorStoreStartError(t *testing.T) {
	dir := t.TempDir() // a directory where the database file should be
	cfg, err := loadConfig(totpConfig(t, dir, `  encryption_key: "`+testFactorKey+`"`+"\n"), noEnv)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	_, err = newSharedParts(cfg, slog.New(slog.DiscardHandler), nil)
	want := "factors.sqlite.path: open " + dir + ": is a directory"
	if err == nil || err.Error() != want {
		t.Fatalf("start on a directory: got %v; want %q", err, want)
	}
	_, _, err = openFactors(cfg, slog.New(slog.DiscardHandler))
	if err == nil || err.Error() != want {
		t.Fatalf("openFactors (the factors CLI): got %v; want %q", err, want)
	}
}

// TestOpenFactorsFillsLookups: at start, passkeys stored before the lookup
// column get their credential lookup under the current key, and a
// credential stored twice (possible before the UNIQUE column) is logged as
// a warning, not a refusal (so `factors remove` can still fix it).
func TestOpenFactorsFillsLookups(t *testing.T) {
	db := filepath.Join(t.TempDir(), "f.db")
	s, err := sqlitestore.Open(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	k, err := factors.NewKeyring([]byte(testFactorKey))
	if err != nil {
		t.Fatal(err)
	}
	credID := []byte("credential-id-16")
	var stored []factors.Factor
	for _, user := range []string{"alice", "bob"} {
		id, _ := factors.NewID()
		pt, _ := json.Marshal(map[string][]byte{"id": credID, "pk": []byte("cose")})
		sealed, err := k.Seal(user, id, pt)
		if err != nil {
			t.Fatal(err)
		}
		f := factors.Factor{ID: id, User: user, Type: factors.TypePasskey, Name: "Key", CreatedAt: time.Now(), Confirmed: true, Public: []byte(`{"aaguid":""}`), Secret: sealed}
		if err := s.Create(t.Context(), f); err != nil { // no Lookup: as before migration 0002
			t.Fatal(err)
		}
		stored = append(stored, f)
	}
	s.Close()

	cfg, err := loadConfig(totpConfig(t, db, `  encryption_key: "`+testFactorKey+`"`+"\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	store, _, err := openFactors(cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("openFactors: %v", err)
	}
	defer store.Close()
	got, err := store.Get(t.Context(), "alice", stored[0].ID)
	if err != nil || !bytes.Equal(got.Lookup, k.Lookup(factors.TypePasskey, credID)) {
		t.Fatalf("alice's passkey after start: lookup %x, %v; want the current key's", got.Lookup, err)
	}
	if got, _ := store.Get(t.Context(), "bob", stored[1].ID); got.Lookup != nil {
		t.Fatalf("bob's copy of the credential got lookup %x; want none (alice's holds it)", got.Lookup)
	}
	if !strings.Contains(logs.String(), `"event":"factor_duplicate"`) || !strings.Contains(logs.String(), stored[1].ID) {
		t.Fatalf("no warning naming the duplicate %s: %s", stored[1].ID, logs.String())
	}
}
