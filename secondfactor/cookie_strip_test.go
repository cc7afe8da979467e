package secondfactor

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// TestStripCookie checks that the second-factor cookie never survives
// StripCookie, in any spelling Check would read, and that every other
// cookie survives with its value, in order.
func TestStripCookie(t *testing.T) {
	e := newEnv(t)
	name := e.s.CookieName()
	tests := []struct {
		name  string
		lines []string
		want  []string // Cookie lines after; nil: no Cookie header
	}{
		{"no cookie header", nil, nil},
		{"only others", []string{"a=1; b=2"}, []string{"a=1; b=2"}},
		{"only the token", []string{name + "=tok"}, nil},
		{"first", []string{name + "=tok; a=1; b=2"}, []string{"a=1; b=2"}},
		{"middle", []string{"a=1; " + name + "=tok; b=2"}, []string{"a=1; b=2"}},
		{"last", []string{"a=1; b=2; " + name + "=tok"}, []string{"a=1; b=2"}},
		{"twice, odd spacing", []string{"a=1;" + name + "=x;\t" + name + " = y ;b=2"}, []string{"a=1; b=2"}},
		{"quoted", []string{`a=1; ` + name + `="tok"`}, []string{"a=1"}},
		{"several lines", []string{"a=1", name + "=tok", "b=2; " + name + "=t2"}, []string{"a=1", "b=2"}},
		{"prefix and suffix names kept", []string{name + "x=1; x" + name + "=2"}, []string{name + "x=1; x" + name + "=2"}},
		{"value naming the cookie kept", []string{"a=" + name}, []string{"a=" + name}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.lines != nil {
				h["Cookie"] = slices.Clone(tt.lines)
			}
			e.s.StripCookie(h)
			got, ok := h["Cookie"]
			if !ok {
				got = nil
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Cookie lines: got %q; want %q", got, tt.want)
			}
			// What net/http reads from the result: every cookie but the
			// token, in order.
			r := httptest.NewRequest("GET", "/", nil)
			r.Header["Cookie"] = got
			if c := r.CookiesNamed(name); len(c) != 0 {
				t.Errorf("the token cookie survived: %v", c)
			}
			if got := cookieCandidates(got, name); len(got) != 0 {
				t.Errorf("Check would still find %q", got)
			}
		})
	}
	// A header without the cookie is left as it is (no copy).
	h := http.Header{"Cookie": {"a=1; b=2"}}
	if n := testing.AllocsPerRun(100, func() { e.s.StripCookie(h) }); n != 0 {
		t.Errorf("StripCookie without the cookie: %v allocs; want 0", n)
	}
}
