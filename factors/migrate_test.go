package factors_test

import (
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
