package sqlitestore_test

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/sqlitestore"
	"github.com/stepgate/stepgate/factors/storetest"
)

func open(t *testing.T, path string) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	// One file shared by every store of the suite, as a restarted process
	// would share it.
	path := filepath.Join(t.TempDir(), "factors.db")
	storetest.Run(t, func(t *testing.T) factors.Store { return open(t, path) })
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "factors.db")
	open(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Fatalf("mode %v; want 0600 (the file holds sealed secrets)", m)
	}
}

// TestRestartKeepsFactors reopens the file as a restarted stepgate would.
func TestRestartKeepsFactors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "factors.db")
	s, err := sqlitestore.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	f := factors.Factor{ID: "abc", User: "alice", Type: factors.TypeTOTP, Name: "phone", CreatedAt: time.Now(), Confirmed: true, Counter: 7, Secret: []byte("s")}
	if err := s.Create(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := open(t, path)
	got, err := s2.Get(t.Context(), "alice", "abc")
	if err != nil || got.Counter != 7 {
		t.Fatalf("after reopen: %+v, %v; want the factor with counter 7", got, err)
	}
	// The replay guard survives too.
	if ok, _ := s2.Advance(t.Context(), "alice", "abc", 7, time.Now()); ok {
		t.Fatalf("step 7 accepted again after a restart")
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "factors.db")
	open(t, path).Close()
	open(t, path)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow(`SELECT version FROM stepgate_schema`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != sqlitestore.SchemaVersion() || v < 1 {
		t.Fatalf("schema version %d; want %d", v, sqlitestore.SchemaVersion())
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "factors.db")
	open(t, path).Close()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE stepgate_schema SET version = ?`, sqlitestore.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = sqlitestore.Open(t.Context(), path)
	if !errors.Is(err, factors.ErrSchemaTooNew) {
		t.Fatalf("Open on a newer schema: %v; want ErrSchemaTooNew", err)
	}
}

func TestBadPath(t *testing.T) {
	_, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "missing", "factors.db"))
	if err == nil {
		t.Fatalf("Open in a missing directory: nil error")
	}
}

// TestMigrationAddsLookup: a database at version 1 (before the lookup
// column) with a factor in it is migrated to the current version; the
// factor reads back with no lookup (serve fills it at start: Reindex), and
// the UNIQUE lookup works from then on.
func TestMigrationAddsLookup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := os.ReadFile("migrations/0001_factors.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		string(v1),
		`CREATE TABLE stepgate_schema (version INTEGER NOT NULL)`,
		`INSERT INTO stepgate_schema (version) VALUES (1)`,
		`INSERT INTO stepgate_factors (id, user_id, type, name, created_at, confirmed, public, secret) VALUES ('old', 'alice', 'passkey', 'Key', 1, 1, x'7b7d', x'01')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	s := open(t, path)
	storetest.MigratedFromV1(t, s)
	if got := sqlitestore.SchemaVersion(); got != 2 {
		t.Fatalf("SchemaVersion = %d; want 2", got)
	}
}
