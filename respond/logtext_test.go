package respond

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLogText(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"Mozilla/5.0 (X11; Linux x86_64)", 512, "Mozilla/5.0 (X11; Linux x86_64)"},
		{"", 10, ""},
		{"abcdef", 6, "abcdef"},
		{"abcdefg", 6, "abcdef…"},
		{"a\nb\r\tc\x00d\x7fe", 512, "abcde"},
		{`curl" "event":"forged`, 512, `curl" "event":"forged`}, // quotes are the log encoder's to escape
		{"x\u0085y\u2028z\u2029w", 512, "xyzw"},
		{"caf\xffe", 512, "caf\uFFFDe"},
		{"ééé", 5, "éé…"}, // never half a rune
		{"\n\n\nab", 2, "ab"},
	} {
		if got := LogText(c.in, c.max); got != c.want {
			t.Errorf("LogText(%q, %d) = %q; want %q", c.in, c.max, got, c.want)
		}
	}
	// A 64 KiB User-Agent with control characters in it.
	ua := strings.Repeat("Mozilla\n\x1b[31m", 64<<10/12)
	got := LogText(ua, MaxLoggedUserAgent)
	if len(got) > MaxLoggedUserAgent+len("…") || !strings.HasSuffix(got, "…") || strings.ContainsAny(got, "\n\x1b") || !utf8.ValidString(got) {
		t.Errorf("64 KiB User-Agent logged as %d bytes %.40q…; want at most %d, cut, no control characters", len(got), got, MaxLoggedUserAgent+len("…"))
	}
	if n := testing.AllocsPerRun(100, func() { _ = LogText("Mozilla/5.0 (X11; Linux x86_64)", MaxLoggedUserAgent) }); n != 0 {
		t.Errorf("a plain User-Agent costs %v allocations; want 0", n)
	}
}

func FuzzLogText(f *testing.F) {
	for _, s := range []string{"Mozilla/5.0", "a\nb", "\xff\xfe", "ééé", "\u2028"} {
		f.Add(s, 5)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		got := LogText(s, max)
		if !utf8.ValidString(got) || len(strings.TrimSuffix(got, "…")) > max {
			t.Fatalf("LogText(%q, %d) = %q: invalid UTF-8 or over the bound", s, max, got)
		}
		for _, r := range got {
			if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '\u2028' || r == '\u2029' {
				t.Fatalf("LogText(%q, %d) = %q keeps control character %U", s, max, got, r)
			}
		}
	})
}
