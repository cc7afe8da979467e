package identity

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
)

func headerAuth(t *testing.T) *Authenticator {
	t.Helper()
	return newAuth(t, Config{Source: "header", Header: HeaderConfig{
		User:  "x-forwarded-user",
		Email: "X-Forwarded-Email",
		TrustedProxies: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.1/32"),
			netip.MustParsePrefix("10.1.0.0/16"),
			netip.MustParsePrefix("fd00::/8"),
		},
	}})
}

func TestHeaderSource(t *testing.T) {
	a := headerAuth(t)
	aliceSession := "hdr:" + sha("alice")
	tests := []struct {
		name    string
		remote  string
		headers [][2]string
		wantErr error
		wantSub string
		emails  []string
	}{
		{name: "trusted peer", remote: "127.0.0.1:5555",
			headers: [][2]string{{"X-Forwarded-User", "alice"}, {"X-Forwarded-Email", "alice@example.com"}},
			wantSub: "alice", emails: []string{"alice@example.com"}},
		{name: "trusted peer in a range", remote: "10.1.2.3:80",
			headers: [][2]string{{"X-Forwarded-User", "alice"}}, wantSub: "alice"},
		{name: "trusted IPv6 peer", remote: "[fd00::1]:80",
			headers: [][2]string{{"X-Forwarded-User", "alice"}}, wantSub: "alice"},
		{name: "IPv4-mapped IPv6 peer", remote: "[::ffff:127.0.0.1]:80",
			headers: [][2]string{{"X-Forwarded-User", "alice"}}, wantSub: "alice"},
		{name: "untrusted peer", remote: "192.0.2.7:5555",
			headers: [][2]string{{"X-Forwarded-User", "alice"}}, wantErr: ErrNoCredential},
		{name: "untrusted peer spoofing X-Forwarded-For", remote: "192.0.2.7:5555",
			headers: [][2]string{{"X-Forwarded-User", "alice"}, {"X-Forwarded-For", "127.0.0.1"}, {"X-Real-Ip", "127.0.0.1"}},
			wantErr: ErrNoCredential},
		{name: "untrusted neighbour of a trusted address", remote: "127.0.0.2:5555",
			headers: [][2]string{{"X-Forwarded-User", "alice"}}, wantErr: ErrNoCredential},
		{name: "unix socket peer", remote: "@",
			headers: [][2]string{{"X-Forwarded-User", "alice"}}, wantErr: ErrNoCredential},
		{name: "trusted peer, no user", remote: "127.0.0.1:1", wantErr: ErrNoCredential},
		{name: "trusted peer, empty user", remote: "127.0.0.1:1",
			headers: [][2]string{{"X-Forwarded-User", ""}}, wantErr: ErrNoCredential},
		{name: "two user values", remote: "127.0.0.1:1",
			headers: [][2]string{{"X-Forwarded-User", "mallory"}, {"X-Forwarded-User", "alice"}}, wantErr: ErrInvalid},
		{name: "control character in user", remote: "127.0.0.1:1",
			headers: [][2]string{{"X-Forwarded-User", "alice\x01"}}, wantErr: ErrInvalid},
		{name: "invalid email dropped", remote: "127.0.0.1:1",
			headers: [][2]string{{"X-Forwarded-User", "alice"}, {"X-Forwarded-Email", "Alice <alice@example.com>"}},
			wantSub: "alice"},
		{name: "two email values dropped", remote: "127.0.0.1:1",
			headers: [][2]string{{"X-Forwarded-User", "alice"}, {"X-Forwarded-Email", "a@example.com"}, {"X-Forwarded-Email", "b@example.com"}},
			wantSub: "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://app.example.com/", nil)
			r.RemoteAddr = tt.remote
			for _, h := range tt.headers {
				r.Header.Add(h[0], h[1])
			}
			id, err := a.Authenticate(r)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || id.Subject != "" {
					t.Fatalf("Authenticate = %q, %v; want error %v", id.Subject, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v; want success", err)
			}
			if id.Subject != tt.wantSub {
				t.Errorf("Subject = %q; want %q", id.Subject, tt.wantSub)
			}
			if !slices.Equal(id.Emails, tt.emails) {
				t.Errorf("Emails = %q; want %q", id.Emails, tt.emails)
			}
			if id.Session != aliceSession {
				t.Errorf("Session = %q; want %q", id.Session, aliceSession)
			}
		})
	}
}

func TestHeaderNamesAndTrusted(t *testing.T) {
	a := headerAuth(t)
	if got, want := a.IdentityHeaders(), []string{"X-Forwarded-User", "X-Forwarded-Email"}; !slices.Equal(got, want) {
		t.Errorf("IdentityHeaders = %q; want %q", got, want)
	}
	for remote, want := range map[string]bool{
		"127.0.0.1:1":         true,
		"127.0.0.1":           true,
		"[::ffff:10.1.0.9]:1": true,
		"[fd12::1%eth0]:1":    true,
		"192.0.2.1:1":         false,
		"[::1]:1":             false,
		"":                    false,
		"garbage":             false,
	} {
		if got := a.Trusted(remote); got != want {
			t.Errorf("Trusted(%q) = %v; want %v", remote, got, want)
		}
	}

	// With the jwt source the configured identity headers are still
	// reported, and no peer is trusted to set them (SPEC §7).
	jc := hsConfig(newClock())
	jc.Header = HeaderConfig{User: "X-Forwarded-User", Email: "X-Forwarded-Email", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	j := newAuth(t, jc)
	if got, want := j.IdentityHeaders(), []string{"X-Forwarded-User", "X-Forwarded-Email"}; !slices.Equal(got, want) {
		t.Errorf("jwt IdentityHeaders = %q; want %q", got, want)
	}
	if j.Trusted("127.0.0.1:1") {
		t.Errorf("jwt Trusted(127.0.0.1:1) = true; want false")
	}
}

func TestHeaderMappedPrefix(t *testing.T) {
	a := newAuth(t, Config{Source: "header", Header: HeaderConfig{
		User:           "X-User",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("::ffff:192.0.2.0/120")},
	}})
	if !a.Trusted("192.0.2.9:1") {
		t.Errorf("Trusted(192.0.2.9:1) with ::ffff:192.0.2.0/120 = false; want true")
	}
	if got, want := a.IdentityHeaders(), []string{"X-User"}; !slices.Equal(got, want) {
		t.Errorf("IdentityHeaders = %q; want %q", got, want)
	}
}
