package sqlitestore_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/factors"
)

// TestPathNeedsEscaping checks that a database path holding the characters
// a SQLite URI gives a meaning ('?' starts the parameters, '#' a fragment,
// '%' an escape, a space) opens exactly that file, with the store's
// parameters applied (the file is in WAL mode), and no other file. The
// path used to be put into the "file:" name unescaped: "a?b.db" opened "a"
// with the pragmas lost, "a#b.db" opened "a".
func TestPathNeedsEscaping(t *testing.T) {
	for _, name := range []string{"a?b.db", "a#b.db", "100%41.db", "sp ace.db", "x?_pragma=journal_mode(DELETE)&y.db"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			s := open(t, path)
			f := factors.Factor{ID: "f1", User: "alice", Type: factors.TypeTOTP, Name: "Phone", CreatedAt: time.Now(), Confirmed: true, Public: []byte(`{}`), Secret: []byte("sealed")}
			if err := s.Create(t.Context(), f); err != nil {
				t.Fatalf("Create: %v", err)
			}
			s.Close()

			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				if n := e.Name(); n != name+"-wal" && n != name+"-shm" {
					names = append(names, n)
				}
			}
			if !slices.Equal(names, []string{name}) {
				t.Fatalf("files in the directory: %q; want only %q", names, name)
			}
			// Bytes 18 and 19 of the header are 2 in WAL mode
			// (https://www.sqlite.org/fileformat.html#file_format_version_numbers):
			// journal_mode(WAL) reached this file.
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) < 100 || !strings.HasPrefix(string(b), "SQLite format 3\x00") || b[18] != 2 || b[19] != 2 {
				t.Fatalf("%q is not a SQLite database in WAL mode (%d bytes)", name, len(b))
			}
			fs, err := open(t, path).List(t.Context(), "alice")
			if err != nil || len(fs) != 1 || fs[0].ID != "f1" {
				t.Fatalf("reopened: %v, %v; want the factor back", fs, err)
			}
		})
	}
}
