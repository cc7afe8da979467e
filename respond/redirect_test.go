package respond

import "testing"

func TestCleanRedirect(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "/"},
		{"/", "/"},
		{"/ok?x=1", "/ok?x=1"},
		{"/a/b#frag", "/a/b#frag"},
		{"/admin/users?page=2&q=a%20b", "/admin/users?page=2&q=a%20b"},
		{"/.stepup/challenge?rd=%2Fadmin", "/.stepup/challenge?rd=%2Fadmin"},
		{"/caf%C3%A9", "/caf%C3%A9"},
		{"//evil", "/"},
		{"///evil", "/"},
		{"//evil.com/path", "/"},
		{`/\evil`, "/"},
		{`\/evil`, "/"},
		{`\\evil`, "/"},
		{`/a\b`, "/"},
		{"/%09/evil", "/"},
		{"/\t/evil", "/"},
		{"%2F%2Fevil", "/"},
		{"/%2F/evil", "/"},
		{"/%2f/evil", "/"},
		{"/%5Cevil", "/"},
		{"/%5cevil", "/"},
		{"/a/%5C", "/"},
		{"https:evil", "/"},
		{"https://evil", "/"},
		{"https://host@evil", "/"},
		{"/https://evil", "/https://evil"},
		{"javascript:alert(1)", "/"},
		{"JaVaScRiPt:alert(1)", "/"},
		{"data:text/html,x", "/"},
		{"/\r\nSet-Cookie: x=1", "/"},
		{"/%0d%0aSet-Cookie:%20x=1", "/"},
		{"/a\nb", "/"},
		{"/a\x00b", "/"},
		{"/a%00b", "/"},
		{"/a\x7fb", "/"},
		{"/a b", "/"},
		{"/a%20b", "/a%20b"},
		{"/%E2%80%A8", "/%E2%80%A8"},
		{"/%C2%85evil", "/"},
		{"/%", "/"},
		{"/%zz", "/"},
		{"/\xff", "/"},
		{"/\u2028evil", "/"},
		{"evil.com", "/"},
		{"?x=1", "/"},
		{"#frag", "/"},
		{"/" + string(make([]byte, maxRedirectLen)), "/"},
	}
	for _, tt := range tests {
		if got := CleanRedirect(tt.in); got != tt.want {
			t.Errorf("CleanRedirect(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzCleanRedirect checks that whatever comes in, what comes out is a
// path a browser keeps on this origin.
func FuzzCleanRedirect(f *testing.F) {
	for _, s := range []string{"/ok", "//evil", `/\evil`, "/%2F/x", "https://x", "/%09/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := CleanRedirect(in)
		if out != "/" && out != in {
			t.Fatalf("CleanRedirect(%q) = %q; want the input or \"/\"", in, out)
		}
		if !safeRedirectPath(out, false) {
			t.Fatalf("CleanRedirect(%q) = %q, which is not a safe path", in, out)
		}
	})
}
