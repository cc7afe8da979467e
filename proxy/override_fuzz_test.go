package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/policy"
)

// FuzzOverrideKey checks the name rules of isMethodKey through the query
// parser: a key that may be an override yields its value from a query
// that spells it escaped, a NUL never hides an override name from PHP's
// reading, and nothing panics.
func FuzzOverrideKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, key string) {
		q := url.QueryEscape(key) + "=DELETE"
		got, err := queryOverrides(nil, q)
		if err != nil {
			t.Fatalf("queryOverrides(%q): %v; want a well-formed query accepted", q, err)
		}
		if isMethodKey(key) && !slices.Contains(got, "DELETE") {
			t.Fatalf("key %q may be an override but queryOverrides(%q) = %q", key, q, got)
		}
		if isMethodKey(key) && !isMethodKey(key+"\x00x.y") {
			t.Fatalf("key %q is an override but %q (PHP ends names at NUL) is not", key, key+"\x00x.y")
		}
		if phpName(key) == "_method" && !isMethodKey(key) {
			t.Fatalf("PHP reads %q as _method but isMethodKey does not", key)
		}
		// The raw query, with bad escapes too, never panics.
		_, _ = queryOverrides(nil, key)
	})
}

// FuzzFormOverrides feeds Content-Type and body pairs to the body reader:
// it must never panic, must hand the upstream every byte as sent, and when
// a urlencoded body plainly carries _method=DELETE as a pair, or a JSON
// object has "_method": "DELETE" at the top level, the request must be
// decided as DELETE (or as any method).
func FuzzFormOverrides(f *testing.F) {
	p := mustPolicy(f, formRules())
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		r := httptest.NewRequest("POST", "/posts/1", bytes.NewReader(body))
		r.Header["Content-Type"] = []string{ct}
		pr, err := buildRequest(r, mustTarget(t, "/posts/1"), p)
		if err != nil {
			t.Fatalf("buildRequest: %v", err)
		}
		fwd, err := io.ReadAll(r.Body)
		if err != nil || !bytes.Equal(fwd, body) {
			t.Fatalf("replayed body: got %q, %v; want the %d bytes sent", fwd, err, len(body))
		}
		if pr.AnyMethod || len(body) > maxFormPeek {
			return
		}
		kind := classifyBody(http.Header{"Content-Type": {ct}})
		hasDelete := slices.ContainsFunc(pr.Overrides, func(m string) bool { return strings.EqualFold(m, "DELETE") })
		if kind.form == urlencodedForm && !hasDelete {
			s := "&" + string(body) + "&"
			if strings.Contains(s, "&_method=DELETE&") {
				t.Fatalf("Content-Type %q body %q: overrides %q; want DELETE", ct, body, pr.Overrides)
			}
		}
		if kind.json && !hasDelete {
			var m map[string]any
			if json.Unmarshal(body, &m) == nil && m["_method"] == "DELETE" {
				t.Fatalf("Content-Type %q JSON %q: overrides %q; want DELETE", ct, body, pr.Overrides)
			}
		}
	})
}

func mustTarget(t testing.TB, uri string) policy.Target {
	t.Helper()
	tg, err := policy.ParseTarget(uri)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}
