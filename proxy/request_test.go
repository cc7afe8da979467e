package proxy

import (
	"errors"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/stepgate/stepgate/policy"
)

func TestBuildRequest(t *testing.T) {
	tests := []struct {
		target  string
		headers map[string][]string
		want    []string
		reject  bool
	}{
		{target: "/x?a=1&b=2", want: nil},
		{target: "/x?q=100%", want: nil},
		{target: "/x?_method=delete", want: []string{"delete"}},
		{target: "/x?_method=PUT%2C+DELETE", want: []string{"PUT, DELETE", "PUT", "DELETE"}},
		{target: "/x?+method=DELETE", want: []string{"DELETE"}},
		{target: "/x?_methods=DELETE", want: nil},
		{target: "/x?%5Fmethod=DELETE&_method=PATCH", want: []string{"DELETE", "PATCH"}},
		{target: "/x?_method=%zz", reject: true},
		{target: "/x?%zz_method=DELETE", reject: true},
		{target: "/x", headers: map[string][]string{"X-Http-Method-Override": {"DELETE"}, "X_http_method": {"PUT"}}, want: []string{"DELETE", "PUT"}},
		{target: "/x", headers: map[string][]string{"X-Method-Override-Not": {"DELETE"}}, want: nil},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", tt.target, nil)
		for k, v := range tt.headers {
			r.Header[k] = v
		}
		tg, err := policy.ParseTarget(r.RequestURI)
		if err != nil {
			t.Fatalf("ParseTarget(%q): %v", tt.target, err)
		}
		pr, err := BuildRequest(r, tg)
		if tt.reject {
			if !errors.Is(err, policy.ErrRejected) {
				t.Errorf("%s: got error %v; want ErrRejected", tt.target, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: got error %v", tt.target, err)
		}
		got := slices.Clone(pr.Overrides)
		slices.Sort(got)
		want := slices.Clone(tt.want)
		slices.Sort(want)
		if !slices.Equal(got, want) || (tt.want == nil && pr.Overrides != nil) {
			t.Errorf("%s: overrides got %q; want %q", tt.target, pr.Overrides, tt.want)
		}
		if pr.Method != "POST" || pr.Path != tg.MatchPath || pr.Host != r.Host {
			t.Errorf("%s: got %+v", tt.target, pr)
		}
	}
}

// TestBuildRequestNoAlloc checks the common case (no overrides) does not
// allocate.
func TestBuildRequestNoAlloc(t *testing.T) {
	r := httptest.NewRequest("GET", "/a/b?c=d&method=x", nil)
	r.Header.Set("Accept", "text/html")
	r.Header.Set("User-Agent", "x")
	tg, _ := policy.ParseTarget(r.RequestURI)
	if n := testing.AllocsPerRun(100, func() { BuildRequest(r, tg) }); n != 0 {
		t.Errorf("BuildRequest allocs: got %v; want 0", n)
	}
}
