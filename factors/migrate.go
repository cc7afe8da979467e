package factors

import (
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
// above the database's recorded version, all in one transaction (a failed
// step leaves the database at its previous version); a recorded version
// above the last one here is ErrSchemaTooNew.
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
