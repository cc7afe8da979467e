// Package sqlrow is what the SQL drivers of factors.Store (factors/pgstore,
// factors/sqlitestore) share about a factor's row: its columns in order,
// how times and an empty lookup are stored, reading rows back, and what a
// conditional statement that matched nothing means. It imports no driver:
// the SQL text (placeholders, boolean literals), the connection type and
// the mapping of driver errors stay in each driver.
package sqlrow

import (
	"time"

	"github.com/stepgate/stepgate/factors"
)

// Columns is the stepgate_factors columns in the order Values and Scan use.
const Columns = `id, user_id, type, name, created_at, last_used_at, confirmed, counter, public, secret, lookup`

// Scanner is one row of either driver (pgx.Row, pgx.Rows, *sql.Row,
// *sql.Rows).
type Scanner interface {
	Scan(dest ...any) error
}

// Rows is a result set of either driver (pgx.Rows, *sql.Rows). The caller
// closes it.
type Rows interface {
	Scanner
	Next() bool
	Err() error
}

// Values is f as the arguments of an INSERT of Columns. confirmed is
// f.Confirmed as the driver binds it (a bool on PostgreSQL, 0 or 1 on
// SQLite, which has no boolean type).
func Values(f factors.Factor, confirmed any) []any {
	return []any{f.ID, f.User, f.Type, f.Name, Micros(f.CreatedAt), Micros(f.LastUsedAt), confirmed, f.Counter, Public(f.Public), f.Secret, Nullable(f.Lookup)}
}

// Scan reads one row of Columns. confirmed is where the driver scans the
// confirmed column (a *bool, an *int); Scan leaves f.Confirmed for the
// caller to set from it.
func Scan(r Scanner, confirmed any) (factors.Factor, error) {
	var f factors.Factor
	var created, used int64
	err := r.Scan(&f.ID, &f.User, &f.Type, &f.Name, &created, &used, confirmed, &f.Counter, &f.Public, &f.Secret, &f.Lookup)
	f.CreatedAt, f.LastUsedAt = FromMicros(created), FromMicros(used)
	return f, err
}

// Factors reads every row of rows with scan. Its error is the driver's,
// unwrapped.
func Factors(rows Rows, scan func(Scanner) (factors.Factor, error)) ([]factors.Factor, error) {
	var out []factors.Factor
	for rows.Next() {
		f, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// Counts reads rows of (type, count) into a map, for Store.Counts. Its
// error is the driver's, unwrapped.
func Counts(rows Rows) (map[string]int, error) {
	out := map[string]int{}
	for rows.Next() {
		var t string
		var n int64
		if err := rows.Scan(&t, &n); err != nil {
			return nil, err
		}
		out[t] = int(n)
	}
	return out, rows.Err()
}

// Found is the outcome of a statement that must match the factor (Confirm,
// SetLookup, Delete), from whether it matched one row: ErrNotFound when it
// matched none.
func Found(matched bool, err error) error {
	if err == nil && !matched {
		return factors.ErrNotFound
	}
	return err
}

// Micros is how the stores keep a time: unix microseconds, 0 for the zero
// time (never).
func Micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// FromMicros is the inverse of Micros, in UTC.
func FromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// Nullable stores an empty lookup as NULL, which a UNIQUE index lets many
// rows share (a driver would otherwise bind an empty blob, which it does
// not).
func Nullable(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// Public is how a factor's Public is stored and compared: nil as empty, the
// column being NOT NULL.
func Public(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
