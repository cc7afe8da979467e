package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestParseHost(t *testing.T) {
	ok := []struct{ in, host string }{
		{"", ""},
		{"app.example", "app.example"},
		{"App.Example.", "App.Example."},
		{"app.example:8080", "app.example"},
		{"app.example:0", "app.example"},
		{"app.example:65535", "app.example"},
		{"localhost", "localhost"},
		{"my_host~1", "my_host~1"},
		{"127.0.0.1", "127.0.0.1"},
		{"127.0.0.1:80", "127.0.0.1"},
		{"[::1]", "::1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[::ffff:127.0.0.1]", "::ffff:127.0.0.1"},
		{"1a.example", "1a.example"},
		{"example.1a", "example.1a"},
	}
	for _, tt := range ok {
		got, err := ParseHost(tt.in)
		if err != nil || got != tt.host {
			t.Errorf("ParseHost(%q): got %q, %v; want %q", tt.in, got, err, tt.host)
		}
	}
	bad := []struct{ in, why string }{
		{"a.example,b.example", "list"},
		{"a.example, b.example", "list"},
		{"app.example:8080:9090", "several ports"},
		{"app.example:", "empty port"},
		{"app.example:65536", "at most 65535"},
		{"app.example:123456", "1 to 5 digits"},
		{"app.example:8o", "1 to 5 digits"},
		{"user@app.example", "user information"},
		{"app%2eexample", "percent"},
		{"app.example;x", "character"},
		{"app.example/x", "character"},
		{"app example", "character"},
		{":8080", "empty"},
		{"[::1", "must end"},
		{"[::1]x", "only ':port'"},
		{"[::1]:", "empty port"},
		{"[::1]:1:2", "several ports"},
		{"[fe80::1%25eth0]", "IPv6"},
		{"[127.0.0.1]", "IPv6"},
		{"[v1.x]", "IPv6"},
		{"::1", "empty"},
		{"010.0.0.1", "numeric"},
		{"0x7f.1", "numeric"},
		{"127.1", "numeric"},
		{"1.2.3.4.5", "numeric"},
		{"2130706433", "numeric"},
		{"app.0x10", "numeric"},
		{strings.Repeat("a", 256), "longer"},
		{"caf\xc3\xa9.example", "character"},
	}
	for _, tt := range bad {
		_, err := ParseHost(tt.in)
		if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("ParseHost(%q): got %v; want an ErrRejected saying %q", tt.in, err, tt.why)
		}
	}
}

func TestParseHostNoAlloc(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseHost("app.example.com:8443") }); n != 0 {
		t.Errorf("ParseHost: got %v allocs; want 0", n)
	}
}

// FuzzParseHost checks that an accepted Host is one authority: the host
// part has no separator any framework splits on, requestHost (what the
// rules match) reads the same host, and a port is 1-5 digits <= 65535.
func FuzzParseHost(f *testing.F) {
	f.Fuzz(func(t *testing.T, in string) {
		host, err := ParseHost(in)
		if err != nil {
			if !errors.Is(err, ErrRejected) {
				t.Fatalf("ParseHost(%q): got %v; want an error wrapping ErrRejected", in, err)
			}
			return
		}
		if strings.ContainsAny(host, ",;@%/\\ \t?#!$&'()*+=") {
			t.Fatalf("ParseHost(%q): accepted host %q with a separator", in, host)
		}
		if got := requestHost(in); strings.TrimSuffix(host, ".") != got {
			t.Fatalf("ParseHost(%q) = %q but requestHost reads %q", in, host, got)
		}
		rest := in
		if strings.HasPrefix(in, "[") {
			rest = in[strings.IndexByte(in, ']')+1:]
		} else if i := strings.IndexByte(in, ':'); i >= 0 {
			rest = in[i:]
		} else {
			rest = ""
		}
		if rest != "" && (rest[0] != ':' || checkPort(rest[1:]) != "") {
			t.Fatalf("ParseHost(%q): accepted port part %q", in, rest)
		}
	})
}
