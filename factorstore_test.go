package main

import (
	"log/slog"
	"testing"
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
	_, _, err = openFactors(cfg)
	if err == nil || err.Error() != want {
		t.Fatalf("openFactors (the factors CLI): got %v; want %q", err, want)
	}
}
