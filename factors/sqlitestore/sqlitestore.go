// Package sqlitestore is the factors.Store in one SQLite file, the default
// driver: pure Go (modernc.org/sqlite), so stepgate stays a static
// CGO_ENABLED=0 binary. It is for one stepgate process; replicas share
// factors through factors/pgstore. It is the only importer of its driver.
package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/internal/sqlrow"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Store is a factors.Store on SQLite.
type Store struct {
	db *sql.DB
}

var _ factors.Store = (*Store)(nil)

// Open opens (creating when missing, mode 0600) the database at path and
// applies the embedded migrations. A database migrated by a newer stepgate
// is refused with factors.ErrSchemaTooNew.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("factors.sqlite.path: must be set")
	}
	if dir := filepath.Dir(path); dir != "" {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("factors.sqlite.path: directory: %w", err)
		}
	}
	// Create the file first so that it is 0600: it holds sealed secrets.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("factors.sqlite.path: %w", err)
	}
	f.Close()
	dsn, err := fileDSN(path)
	if err != nil {
		return nil, fmt.Errorf("factors.sqlite.path: %w", err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("factors: sqlite: %w", err)
	}
	// One connection: SQLite has one writer anyway, and one connection
	// makes every statement see the previous one's result without
	// SQLITE_BUSY between this process's own goroutines.
	db.SetMaxOpenConns(1)
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// fileDSN is the driver's name for the database at path: a SQLite URI
// (https://www.sqlite.org/uri.html) of the absolute path, percent-escaped,
// with the driver's parameters after the '?'. modernc.org/sqlite takes its
// parameters from the first '?' of the name and passes a "file:" name to
// SQLite whole, which ends the path at '?' or '#' and decodes %HH; so a
// path holding '?', '#' or '%' must be escaped, or it would open another
// file and drop or inject parameters. Making it absolute also keeps a
// path starting with "//" from being read as an authority.
func fileDSN(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	u := url.URL{Path: filepath.ToSlash(abs)}
	return "file:" + u.EscapedPath() + "?" + q.Encode(), nil
}

// SchemaVersion returns the highest migration version this binary knows.
func SchemaVersion() int {
	ms, err := factors.Migrations(migrationFS, "migrations")
	if err != nil {
		return 0
	}
	return len(ms)
}

func (s *Store) migrate(ctx context.Context) error {
	ms, err := factors.Migrations(migrationFS, "migrations")
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock): one migrator at a time
	if err != nil {
		return fmt.Errorf("factors: sqlite: %w", err)
	}
	defer tx.Rollback()
	if err := factors.Migrate(ctx, migrationTx{tx}, ms); err != nil {
		return fmt.Errorf("factors: sqlite: %w", err)
	}
	return wrap(tx.Commit())
}

// migrationTx is a database/sql transaction as factors.Migrate runs in it.
type migrationTx struct{ tx *sql.Tx }

func (t migrationTx) Exec(ctx context.Context, q string) error {
	_, err := t.tx.ExecContext(ctx, q)
	return err
}

func (t migrationTx) Version(ctx context.Context) (int, bool, error) {
	var v int
	err := t.tx.QueryRowContext(ctx, `SELECT version FROM stepgate_schema`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return v, err == nil, err
}

func scan(r sqlrow.Scanner) (factors.Factor, error) {
	var confirmed int
	f, err := sqlrow.Scan(r, &confirmed)
	f.Confirmed = confirmed != 0
	return f, err
}

func wrap(err error) error {
	if err == nil || errors.Is(err, factors.ErrNotFound) {
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE && strings.Contains(se.Error(), "stepgate_factors.lookup") {
		return factors.ErrDuplicate
	}
	return fmt.Errorf("factors: sqlite: %w", err)
}

// b2i binds a bool as SQLite keeps it: 0 or 1 (it has no boolean type).
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Create implements factors.Store.
func (s *Store) Create(ctx context.Context, f factors.Factor) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO stepgate_factors (`+sqlrow.Columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sqlrow.Values(f, b2i(f.Confirmed))...)
	return wrap(err)
}

// Get implements factors.Store.
func (s *Store) Get(ctx context.Context, user, id string) (factors.Factor, error) {
	f, err := scan(s.db.QueryRowContext(ctx, `SELECT `+sqlrow.Columns+` FROM stepgate_factors WHERE user_id = ? AND id = ?`, user, id))
	if errors.Is(err, sql.ErrNoRows) {
		return factors.Factor{}, factors.ErrNotFound
	}
	return f, wrap(err)
}

func (s *Store) query(ctx context.Context, q string, args ...any) ([]factors.Factor, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	out, err := sqlrow.Factors(rows, scan)
	return out, wrap(err)
}

// List implements factors.Store.
func (s *Store) List(ctx context.Context, user string) ([]factors.Factor, error) {
	return s.query(ctx, `SELECT `+sqlrow.Columns+` FROM stepgate_factors WHERE user_id = ? ORDER BY created_at, id`, user)
}

// All implements factors.Store.
func (s *Store) All(ctx context.Context) ([]factors.Factor, error) {
	return s.query(ctx, `SELECT `+sqlrow.Columns+` FROM stepgate_factors ORDER BY user_id, created_at, id`)
}

func (s *Store) exec(ctx context.Context, q string, args ...any) (bool, error) {
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return false, wrap(err)
	}
	n, err := res.RowsAffected()
	return n == 1, wrap(err)
}

// Confirm implements factors.Store.
func (s *Store) Confirm(ctx context.Context, user, id string, counter int64, now time.Time) error {
	return sqlrow.Found(s.exec(ctx, `UPDATE stepgate_factors SET confirmed = 1, counter = ?, last_used_at = ? WHERE user_id = ? AND id = ? AND confirmed = 0`,
		counter, sqlrow.Micros(now), user, id))
}

// Advance implements factors.Store: one conditional UPDATE, so of
// concurrent callers with the same counter exactly one wins.
func (s *Store) Advance(ctx context.Context, user, id string, counter int64, now time.Time) (bool, error) {
	return s.exec(ctx, `UPDATE stepgate_factors SET counter = ?, last_used_at = ? WHERE user_id = ? AND id = ? AND confirmed = 1 AND counter < ?`,
		counter, sqlrow.Micros(now), user, id, counter)
}

// Touch implements factors.Store.
func (s *Store) Touch(ctx context.Context, user, id string, now time.Time) (bool, error) {
	return s.exec(ctx, `UPDATE stepgate_factors SET last_used_at = ? WHERE user_id = ? AND id = ? AND confirmed = 1 AND counter = 0`,
		sqlrow.Micros(now), user, id)
}

// ReplacePublic implements factors.Store: one conditional UPDATE.
func (s *Store) ReplacePublic(ctx context.Context, user, id string, prev, next []byte) (bool, error) {
	return s.exec(ctx, `UPDATE stepgate_factors SET public = ? WHERE user_id = ? AND id = ? AND public = ?`, next, user, id, sqlrow.Public(prev))
}

// ReplaceSecret implements factors.Store.
func (s *Store) ReplaceSecret(ctx context.Context, user, id string, prev, next []byte) (bool, error) {
	return s.exec(ctx, `UPDATE stepgate_factors SET secret = ? WHERE user_id = ? AND id = ? AND secret = ?`, next, user, id, prev)
}

// SetLookup implements factors.Store.
func (s *Store) SetLookup(ctx context.Context, user, id string, lookup []byte) error {
	return sqlrow.Found(s.exec(ctx, `UPDATE stepgate_factors SET lookup = ? WHERE user_id = ? AND id = ?`, sqlrow.Nullable(lookup), user, id))
}

// Delete implements factors.Store.
func (s *Store) Delete(ctx context.Context, user, id string) error {
	return sqlrow.Found(s.exec(ctx, `DELETE FROM stepgate_factors WHERE user_id = ? AND id = ?`, user, id))
}

// Counts implements factors.Store.
func (s *Store) Counts(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT type, COUNT(*) FROM stepgate_factors WHERE confirmed = 1 GROUP BY type`)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	out, err := sqlrow.Counts(rows)
	return out, wrap(err)
}

// Ping implements factors.Store.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return wrap(s.db.QueryRowContext(ctx, `SELECT 1 FROM stepgate_schema`).Scan(&one))
}

// Close implements factors.Store.
func (s *Store) Close() error { return s.db.Close() }
