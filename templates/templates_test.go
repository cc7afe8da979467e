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
	if _, err := respond.ParsePages(FS, "/.stepup", nil, "challenge", "verify", "status", "locked", "passkey", "passkey_add"); err != nil {
		t.Fatalf("ParsePages: %v", err)
	}
}

// TestNoExternalAssets keeps the pages self-contained: the CSP allows
// styles from stepgate only and, on the passkey pages, the one script
// passkey.js from stepgate itself. The layout's script tag is the only
// one, first-party by construction; no page has an inline script or an
// event-handler attribute.
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
		if p == "layout.html" {
			s = strings.Replace(s, firstPartyScript, "", 1)
		}
		for _, bad := range []string{"<script", "http://", "https://", "@import", "url(", " style=", "onclick=", "onload=", "onsubmit=", "javascript:", "eval(", "innerhtml", "new function"} {
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

// firstPartyScript is the layout's one script tag: a path below the
// prefix, never a URL of another origin.
const firstPartyScript = `<script src="{{.prefix}}{{.script}}" defer></script>`

// TestOneScript checks that passkey.js is the only script and that the
// layout loads it only for pages that ask (PageData.Script).
func TestOneScript(t *testing.T) {
	b, err := fs.ReadFile(FS, "layout.html")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.ToLower(string(b)), "<script"); n != 1 || !strings.Contains(strings.ToLower(string(b)), firstPartyScript) {
		t.Fatalf("layout.html has %d script tags; want exactly %s", n, firstPartyScript)
	}
	js, _ := fs.Glob(FS, "*.js")
	if len(js) != 1 || js[0] != "passkey.js" {
		t.Fatalf("scripts %v; want only passkey.js", js)
	}
}
