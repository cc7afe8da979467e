// Package pgstore is the factors.Store on PostgreSQL (github.com/jackc/pgx/v5),
// for several stepgate replicas sharing enrolled factors. It is the only
// importer of its driver.
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/internal/sqlrow"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLock is the pg_advisory_xact_lock key that serialises replicas
// migrating the same database at once ("stepgate" in ASCII).
const migrationLock int64 = 0x7374657067617465

// uniqueViolation is PostgreSQL's SQLSTATE for a UNIQUE index refusing a
// row (Appendix A, class 23).
const uniqueViolation = "23505"

// Options configures Open.
type Options struct {
	// DSN is a libpq connection string or postgres:// URL.
	DSN string
	// MaxConns bounds the pool. Zero means 10.
	MaxConns int32
	// ConnectTimeout bounds establishing one connection. Zero means 5s.
	ConnectTimeout time.Duration
}

// Store is a factors.Store on PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

var _ factors.Store = (*Store)(nil)

// Open connects and applies the embedded migrations (one replica at a
// time, under an advisory lock). A database migrated by a newer stepgate is
// refused with factors.ErrSchemaTooNew.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.DSN == "" {
		return nil, errors.New("factors.postgres.dsn: must be set")
	}
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		// pgx's message can quote the DSN, password included: say less.
		return nil, errors.New("factors.postgres.dsn: not a valid connection string")
	}
	cfg.MaxConns = o.MaxConns
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 10
	}
	cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	if cfg.ConnConfig.ConnectTimeout <= 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("factors: postgres: %w", err)
	}
	s := &Store{pool: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
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
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return wrap(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
		return wrap(err)
	}
	if err := factors.Migrate(ctx, migrationTx{tx}, ms); err != nil {
		return fmt.Errorf("factors: postgres: %w", err)
	}
	return wrap(tx.Commit(ctx))
}

// migrationTx is a pgx transaction as factors.Migrate runs in it.
type migrationTx struct{ tx pgx.Tx }

func (t migrationTx) Exec(ctx context.Context, sql string) error {
	_, err := t.tx.Exec(ctx, sql)
	return err
}

func (t migrationTx) Version(ctx context.Context) (int, bool, error) {
	var v int
	err := t.tx.QueryRow(ctx, `SELECT version FROM stepgate_schema`).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	return v, err == nil, err
}

func scan(r sqlrow.Scanner) (factors.Factor, error) {
	var confirmed bool
	f, err := sqlrow.Scan(r, &confirmed)
	f.Confirmed = confirmed
	return f, err
}

func wrap(err error) error {
	if err == nil || errors.Is(err, factors.ErrNotFound) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == uniqueViolation && pe.ConstraintName == "stepgate_factors_lookup" {
		return factors.ErrDuplicate
	}
	return fmt.Errorf("factors: postgres: %w", err)
}

// Create implements factors.Store.
func (s *Store) Create(ctx context.Context, f factors.Factor) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO stepgate_factors (`+sqlrow.Columns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		sqlrow.Values(f, f.Confirmed)...)
	return wrap(err)
}

// Get implements factors.Store.
func (s *Store) Get(ctx context.Context, user, id string) (factors.Factor, error) {
	f, err := scan(s.pool.QueryRow(ctx, `SELECT `+sqlrow.Columns+` FROM stepgate_factors WHERE user_id = $1 AND id = $2`, user, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return factors.Factor{}, factors.ErrNotFound
	}
	return f, wrap(err)
}

func (s *Store) query(ctx context.Context, q string, args ...any) ([]factors.Factor, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	out, err := sqlrow.Factors(rows, scan)
	return out, wrap(err)
}

// List implements factors.Store.
func (s *Store) List(ctx context.Context, user string) ([]factors.Factor, error) {
	return s.query(ctx, `SELECT `+sqlrow.Columns+` FROM stepgate_factors WHERE user_id = $1 ORDER BY created_at, id`, user)
}

// All implements factors.Store.
func (s *Store) All(ctx context.Context) ([]factors.Factor, error) {
	return s.query(ctx, `SELECT `+sqlrow.Columns+` FROM stepgate_factors ORDER BY user_id, created_at, id`)
}

func (s *Store) exec(ctx context.Context, q string, args ...any) (bool, error) {
	tag, err := s.pool.Exec(ctx, q, args...)
	if err != nil {
		return false, wrap(err)
	}
	return tag.RowsAffected() == 1, nil
}

// Confirm implements factors.Store.
func (s *Store) Confirm(ctx context.Context, user, id string, counter int64, now time.Time) error {
	return sqlrow.Found(s.exec(ctx, `UPDATE stepgate_factors SET confirmed = true, counter = $1, last_used_at = $2 WHERE user_id = $3 AND id = $4 AND NOT confirmed`,
		counter, sqlrow.Micros(now), user, id))
}

// Advance implements factors.Store: one conditional UPDATE, which
// PostgreSQL serialises on the row, so of concurrent callers (on any
// replica) with the same counter exactly one wins.
func (s *Store) Advance(ctx context.Context, user, id string, counter int64, now time.Time) (bool, error) {
	return s.exec(ctx, `UPDATE stepgate_factors SET counter = $1, last_used_at = $2 WHERE user_id = $3 AND id = $4 AND confirmed AND counter < $1`,
		counter, sqlrow.Micros(now), user, id)
}

// Touch implements factors.Store.
func (s *Store) Touch(ctx context.Context, user, id string, now time.Time) (bool, error) {
	return s.exec(ctx, `UPDATE stepgate_factors SET last_used_at = $1 WHERE user_id = $2 AND id = $3 AND confirmed AND counter = 0`,
		sqlrow.Micros(now), user, id)
}

// ReplacePublic implements factors.Store: one conditional UPDATE, which
// PostgreSQL serialises on the row (the second of two racing writers
// re-checks public after the first commits and matches nothing).
func (s *Store) ReplacePublic(ctx context.Context, user, id string, prev, next []byte) (bool, error) {
	return s.exec(ctx, `UPDATE stepgate_factors SET public = $1 WHERE user_id = $2 AND id = $3 AND public = $4`, next, user, id, sqlrow.Public(prev))
}

// ReplaceSecret implements factors.Store.
func (s *Store) ReplaceSecret(ctx context.Context, user, id string, prev, next []byte) (bool, error) {
	return s.exec(ctx, `UPDATE stepgate_factors SET secret = $1 WHERE user_id = $2 AND id = $3 AND secret = $4`, next, user, id, prev)
}

// SetLookup implements factors.Store.
func (s *Store) SetLookup(ctx context.Context, user, id string, lookup []byte) error {
	return sqlrow.Found(s.exec(ctx, `UPDATE stepgate_factors SET lookup = $1 WHERE user_id = $2 AND id = $3`, sqlrow.Nullable(lookup), user, id))
}

// Delete implements factors.Store.
func (s *Store) Delete(ctx context.Context, user, id string) error {
	return sqlrow.Found(s.exec(ctx, `DELETE FROM stepgate_factors WHERE user_id = $1 AND id = $2`, user, id))
}

// Counts implements factors.Store.
func (s *Store) Counts(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT type, COUNT(*) FROM stepgate_factors WHERE confirmed GROUP BY type`)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	out, err := sqlrow.Counts(rows)
	return out, wrap(err)
}

// Ping implements factors.Store.
func (s *Store) Ping(ctx context.Context) error { return wrap(s.pool.Ping(ctx)) }

// Close implements factors.Store.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}
