package pgstore_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/pgstore"
	"github.com/stepgate/stepgate/factors/pgstore/pgtest"
	"github.com/stepgate/stepgate/factors/storetest"
)

func open(t *testing.T, dsn string) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(t.Context(), pgstore.Options{DSN: dsn})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPostgres runs everything on one server: starting PostgreSQL takes a
// second or two, so the suite and the migration tests share it.
func TestPostgres(t *testing.T) {
	srv := pgtest.Start(t)

	t.Run("Suite", func(t *testing.T) {
		dsn := srv.NewDatabase(t)
		// Every store is a separate pool, as replicas would have.
		storetest.Run(t, func(t *testing.T) factors.Store { return open(t, dsn) })
	})

	t.Run("ConcurrentMigration", func(t *testing.T) {
		// Replicas starting at once: the advisory lock lets one migrate.
		dsn := srv.NewDatabase(t)
		errs := make(chan error, 4)
		for range 4 {
			go func() {
				s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn})
				if err == nil {
					s.Close()
				}
				errs <- err
			}()
		}
		for range 4 {
			if err := <-errs; err != nil {
				t.Fatalf("concurrent Open: %v", err)
			}
		}
	})

	t.Run("RefusesNewerSchema", func(t *testing.T) {
		dsn := srv.NewDatabase(t)
		open(t, dsn).Close()
		pgtest.Exec(t, dsn, `UPDATE stepgate_schema SET version = $1`, pgstore.SchemaVersion()+1)
		_, err := pgstore.Open(t.Context(), pgstore.Options{DSN: dsn})
		if !errors.Is(err, factors.ErrSchemaTooNew) {
			t.Fatalf("Open on a newer schema: %v; want ErrSchemaTooNew", err)
		}
	})

	t.Run("MigrationAddsLookup", func(t *testing.T) {
		// A database at version 1 (before the lookup column) with a
		// factor: migrated, the factor has no lookup (serve fills it at
		// start: Reindex), and the UNIQUE lookup works from then on.
		dsn := srv.NewDatabase(t)
		v1, err := os.ReadFile("migrations/0001_factors.sql")
		if err != nil {
			t.Fatal(err)
		}
		pgtest.Exec(t, dsn, string(v1))
		pgtest.Exec(t, dsn, `CREATE TABLE stepgate_schema (version INTEGER NOT NULL)`)
		pgtest.Exec(t, dsn, `INSERT INTO stepgate_schema (version) VALUES (1)`)
		pgtest.Exec(t, dsn, `INSERT INTO stepgate_factors (id, user_id, type, name, created_at, confirmed, public, secret) VALUES ('old', 'alice', 'passkey', 'Key', 1, true, '\x7b7d', '\x01')`)
		s := open(t, dsn)
		storetest.MigratedFromV1(t, s)
	})

	t.Run("DatabaseDown", func(t *testing.T) {
		// A second server, stopped under an open store: calls fail with
		// an error (callers answer 503), and fast.
		srv2 := pgtest.Start(t)
		s := open(t, srv2.DSN)
		srv2.Stop()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := s.Ping(ctx); err == nil {
			t.Fatalf("Ping with the server stopped: nil error")
		}
		if _, err := s.List(ctx, "alice"); err == nil || errors.Is(err, factors.ErrNotFound) {
			t.Fatalf("List with the server stopped: %v; want a database error", err)
		}
		if ok, err := s.Advance(ctx, "alice", "x", 1, time.Now()); ok || err == nil {
			t.Fatalf("Advance with the server stopped = %v, %v; want false and an error", ok, err)
		}
	})
}

func TestBadDSN(t *testing.T) {
	_, err := pgstore.Open(t.Context(), pgstore.Options{DSN: "postgres://u:hunter2@[bad"})
	if err == nil {
		t.Fatal("Open with a malformed DSN: nil error")
	}
	if got := err.Error(); contains(got, "hunter2") {
		t.Fatalf("error %q quotes the password", got)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
