package factors_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/stepgate/stepgate/factors"
)

func TestMigrations(t *testing.T) {
	ok := fstest.MapFS{
		"m/0002_b.sql": {Data: []byte("B")},
		"m/0001_a.sql": {Data: []byte("A")},
		"m/README":     {Data: []byte("ignored")},
	}
	ms, err := factors.Migrations(ok, "m")
	if err != nil || len(ms) != 2 || ms[0].SQL != "A" || ms[1].Version != 2 {
		t.Fatalf("Migrations = %+v, %v; want 0001 then 0002", ms, err)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"gap":       {"m/0001_a.sql": {}, "m/0003_c.sql": {}},
		"duplicate": {"m/0001_a.sql": {}, "m/0001_b.sql": {}},
		"bad name":  {"m/first.sql": {}},
		"zero":      {"m/0000_a.sql": {}},
		"empty":     {"m/x.txt": {}},
	} {
		if _, err := factors.Migrations(fsys, "m"); err == nil {
			t.Errorf("%s: nil error", name)
		}
	}
}

// fakeTx records Migrate's statements; version is the recorded version
// (-1: the table has no row), failOn a statement that fails.
type fakeTx struct {
	version int
	failOn  string
	ran     []string
}

func (f *fakeTx) Exec(_ context.Context, sql string) error {
	f.ran = append(f.ran, sql)
	if sql == f.failOn {
		return errors.New("syntax error")
	}
	return nil
}

func (f *fakeTx) Version(context.Context) (int, bool, error) {
	if f.version < 0 {
		return 0, false, nil
	}
	return f.version, true, nil
}

func TestMigrate(t *testing.T) {
	ms := []factors.Migration{{Version: 1, Name: "0001_a.sql", SQL: "A"}, {Version: 2, Name: "0002_b.sql", SQL: "B"}}
	const create = `CREATE TABLE IF NOT EXISTS stepgate_schema (version INTEGER NOT NULL)`
	for _, tc := range []struct {
		name    string
		tx      fakeTx
		want    []string
		wantErr string
	}{
		{"fresh", fakeTx{version: -1}, []string{create, `INSERT INTO stepgate_schema (version) VALUES (0)`, "A", "UPDATE stepgate_schema SET version = 1", "B", "UPDATE stepgate_schema SET version = 2"}, ""},
		{"at 1", fakeTx{version: 1}, []string{create, "B", "UPDATE stepgate_schema SET version = 2"}, ""},
		{"current", fakeTx{version: 2}, []string{create}, ""},
		{"step fails", fakeTx{version: 1, failOn: "B"}, []string{create, "B"}, "migration 0002_b.sql: syntax error"},
	} {
		err := factors.Migrate(t.Context(), &tc.tx, ms)
		if fmt.Sprint(tc.tx.ran) != fmt.Sprint(tc.want) {
			t.Errorf("%s: ran %q; want %q", tc.name, tc.tx.ran, tc.want)
		}
		if got := fmt.Sprint(err); (err != nil || tc.wantErr != "") && got != tc.wantErr {
			t.Errorf("%s: error %q; want %q", tc.name, got, tc.wantErr)
		}
	}
	tx := fakeTx{version: 3}
	if err := factors.Migrate(t.Context(), &tx, ms); !errors.Is(err, factors.ErrSchemaTooNew) || len(tx.ran) != 1 {
		t.Errorf("at 3 of 2: ran %q, error %v; want nothing applied and ErrSchemaTooNew", tx.ran, err)
	}
}
