package templates

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/respond"
)

// TestPagesParse checks that every page the challenge handler and the
// proxy render is embedded and parses with the layout.
func TestPagesParse(t *testing.T) {
	if _, err := respond.ParsePages(FS, "/.stepup", nil, "challenge", "verify", "status", "locked"); err != nil {
		t.Fatalf("ParsePages: %v", err)
	}
}

// TestNoExternalAssets keeps the pages self-contained: the CSP allows
// styles from stepgate only and no script at all.
func TestNoExternalAssets(t *testing.T) {
	err := fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(FS, p)
		if err != nil {
			return err
		}
		s := strings.ToLower(string(b))
		for _, bad := range []string{"<script", "http://", "https://", "@import", "url(", " style=", "onclick="} {
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", p, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
