package factors

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one versioned schema step, embedded in a driver.
type Migration struct {
	Version int    // 1, 2, ...: from the file name's leading number
	Name    string // the file name
	SQL     string
}

// Migrations reads dir in fsys: files named NNNN_what.sql, versions 1, 2,
// 3, ... without gaps. Drivers embed their dialect's files and apply those
// above the database's recorded version with Migrate, all in one
// transaction (a failed step leaves the database at its previous version);
// a recorded version above the last one here is ErrSchemaTooNew.
func Migrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_what.sql", name)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d (no gaps or duplicates)", m.Name, m.Version, i+1)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no migrations in %s", dir)
	}
	return ms, nil
}

// TooNew returns the error for a database at version db when the binary
// knows up to known.
func TooNew(db, known int) error {
	return fmt.Errorf("%w: the database is at version %d, this binary knows up to %d (run the newer stepgate, or restore a backup)", ErrSchemaTooNew, db, known)
}

// MigrationTx is a driver's open transaction that Migrate runs in, holding
// whatever keeps a second migrator out (PostgreSQL's advisory lock,
// SQLite's BEGIN IMMEDIATE). Its errors are the driver's, unwrapped.
type MigrationTx interface {
	// Exec runs one statement that takes no arguments.
	Exec(ctx context.Context, sql string) error
	// Version returns the version recorded in stepgate_schema; ok is false
	// when the table has no row yet.
	Version(ctx context.Context) (v int, ok bool, err error)
}

// Migrate brings the database tx is open on to the last of ms: it creates
// the version table when missing, refuses a recorded version above the
// last of ms (ErrSchemaTooNew), and applies the steps above it, recording
// each one's version. The caller commits tx; a failed step leaves it to be
// rolled back whole. A step's error names the migration; the others are
// the driver's, unwrapped, for the caller to wrap.
func Migrate(ctx context.Context, tx MigrationTx, ms []Migration) error {
	if err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS stepgate_schema (version INTEGER NOT NULL)`); err != nil {
		return err
	}
	v, ok, err := tx.Version(ctx)
	if err != nil {
		return err
	}
	if !ok {
		if err := tx.Exec(ctx, `INSERT INTO stepgate_schema (version) VALUES (0)`); err != nil {
			return err
		}
	}
	if v > len(ms) {
		return TooNew(v, len(ms))
	}
	for _, m := range ms[v:] {
		if err := tx.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
		// The version is an int from the file name, so it is spelled in
		// the statement rather than bound: the drivers' placeholders differ.
		if err := tx.Exec(ctx, "UPDATE stepgate_schema SET version = "+strconv.Itoa(m.Version)); err != nil {
			return err
		}
	}
	return nil
}
