package secondfactor

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// cookieCandidates lists what Check tries from the Cookie lines, in order.
func cookieCandidates(lines []string, name string) []string {
	var out []string
	for _, line := range lines {
		for line != "" {
			var v string
			var ok bool
			if v, line, ok = nextCookie(line, name); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// TestNextCookieMatchesNetHTTP checks that the allocation-free scan finds
// exactly the values net/http's parser finds, in the same order, for
// well-formed headers, and at least those for malformed ones (an extra
// candidate only costs a failed verification).
func TestNextCookieMatchesNetHTTP(t *testing.T) {
	const name = "__Host-stepgate"
	tests := []struct {
		name  string
		lines []string
	}{
		{"none", nil},
		{"one", []string{"__Host-stepgate=tok"}},
		{"among others", []string{"a=1; __Host-stepgate=tok; b=2"}},
		{"no spaces", []string{"a=1;__Host-stepgate=tok;b=2"}},
		{"extra spaces and tabs", []string{"a=1;   __Host-stepgate=tok \t;\tb=2"}},
		{"quoted", []string{`__Host-stepgate="tok"`}},
		{"two of the name", []string{"__Host-stepgate=one; x=y; __Host-stepgate=two"}},
		{"two lines", []string{"__Host-stepgate=one", "a=b; __Host-stepgate=two"}},
		{"empty value", []string{"__Host-stepgate=; __Host-stepgate=tok"}},
		{"other case is another name", []string{"__host-stepgate=no; __Host-stepgate=yes"}},
		{"prefix of the name", []string{"__Host-stepgat=no; __Host-stepgatex=no; x__Host-stepgate=no"}},
		{"no equals sign", []string{"__Host-stepgate; __Host-stepgate=tok"}},
		{"value with equals", []string{"__Host-stepgate=a=b"}},
		{"empty parts", []string{";;; __Host-stepgate=tok;;"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header["Cookie"] = tt.lines
			var want []string
			for _, c := range r.CookiesNamed(name) {
				want = append(want, c.Value)
			}
			got := cookieCandidates(tt.lines, name)
			if !slices.Equal(got, want) {
				t.Errorf("got %q; want %q", got, want)
			}
		})
	}
	// Malformed values net/http drops are still candidates here; they are
	// refused by verification.
	if got := cookieCandidates([]string{`__Host-stepgate=a"b; __Host-stepgate=tok`}, name); !slices.Equal(got, []string{`a"b`, "tok"}) {
		t.Errorf("malformed value: got %q; want %q", got, []string{`a"b`, "tok"})
	}
	if got := cookieCandidates([]string{"=x; a=b"}, ""); len(got) != 0 {
		t.Errorf("empty name: got %q; want no candidates", got)
	}
}

// TestCheckRawCookieHeaders checks Check against Cookie headers as clients
// send them, and the candidate bound.
func TestCheckRawCookieHeaders(t *testing.T) {
	e := newEnv(t)
	g, err := e.s.Mint(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	junk := strings.Repeat("__Host-stepgate=junk; ", maxCandidates)
	tests := []struct {
		name  string
		lines []string
		ok    bool
	}{
		{"spaced", []string{"a=1 ;  __Host-stepgate=" + g.Token + " ; b=2"}, true},
		{"quoted", []string{`__Host-stepgate="` + g.Token + `"`}, true},
		{"second line", []string{"a=1", "__Host-stepgate=" + g.Token}, true},
		{"other name", []string{"stepgate=" + g.Token}, false},
		{"token with a byte appended", []string{"__Host-stepgate=" + g.Token + "x"}, false},
		{"beyond the candidate bound", []string{junk + "__Host-stepgate=" + g.Token}, false},
		{"at the candidate bound", []string{strings.Repeat("__Host-stepgate=junk; ", maxCandidates-1) + "__Host-stepgate=" + g.Token}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/admin", nil)
			r.Header["Cookie"] = tt.lines
			got, ok := e.s.Check(r, alice, time.Hour)
			if ok != tt.ok {
				t.Fatalf("got ok=%v; want %v", ok, tt.ok)
			}
			if ok && got.ID != g.ID {
				t.Errorf("got jti %q; want %q", got.ID, g.ID)
			}
		})
	}
}

func TestSetCookie(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, secure := range []bool{false, true} {
		s := newEnv(t, func(c *Config) {
			c.CookieName = "stepgate"
			c.SecureCookie = secure
			c.Now = func() time.Time { return now }
		}).s
		w := httptest.NewRecorder()
		s.SetCookie(w, Grant{Token: "tok", ExpiresAt: now.Add(12 * time.Hour)})
		cs := w.Result().Cookies()
		if len(cs) != 1 {
			t.Fatalf("got %d cookies; want 1", len(cs))
		}
		c := cs[0]
		if c.Name != "stepgate" || c.Value != "tok" || c.Path != "/" || !c.HttpOnly ||
			c.SameSite != http.SameSiteLaxMode || c.Secure != secure || c.MaxAge != 43200 ||
			!c.Expires.Equal(now.Add(12*time.Hour)) {
			t.Errorf("secure=%v: got cookie %q; want stepgate=tok Path=/ HttpOnly SameSite=Lax Max-Age=43200", secure, w.Header().Get("Set-Cookie"))
		}
		w = httptest.NewRecorder()
		s.ClearCookie(w)
		c = w.Result().Cookies()[0]
		if c.Name != "stepgate" || c.Value != "" || c.Path != "/" || c.MaxAge >= 0 || !c.HttpOnly || c.Secure != secure {
			t.Errorf("secure=%v: got clearing cookie %q; want an expired cookie with the same attributes", secure, w.Header().Get("Set-Cookie"))
		}
	}
}

// within reports whether sub's bytes lie inside s's memory.
func within(sub, s string) bool {
	p := uintptr(unsafe.Pointer(unsafe.StringData(sub)))
	b := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	return p >= b && p < b+uintptr(len(s))
}

// TestCacheKeyIsACopy checks that a cached token does not keep its Cookie
// header reachable: the cache holds a clone whose length is the token's,
// not a substring of the (here 64 KiB) header line.
func TestCacheKeyIsACopy(t *testing.T) {
	e := newEnv(t)
	g, err := e.s.Mint(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	line := "session=abc; __Host-stepgate=" + g.Token + "; padding=" + strings.Repeat("x", 64<<10)
	r := httptest.NewRequest("GET", "/admin", nil)
	r.Header["Cookie"] = []string{line}
	if _, ok := e.s.Check(r, alice, time.Hour); !ok {
		t.Fatal("Check: got false; want the minted token")
	}
	keys := e.s.cache.keys()
	if len(keys) != 1 {
		t.Fatalf("cache keys: got %d; want 1", len(keys))
	}
	if keys[0] != g.Token || len(keys[0]) != len(g.Token) {
		t.Errorf("cache key: got %d bytes; want the token's %d", len(keys[0]), len(g.Token))
	}
	if within(keys[0], line) {
		t.Error("the cache key points into the Cookie header; want a copy")
	}
}
