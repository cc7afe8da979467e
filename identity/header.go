package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// headerSource believes identity headers set by an SSO proxy in front of
// stepgate (oauth2-proxy, an ingress auth module), but only from peers in
// trusted: anyone else could set them to any user.
type headerSource struct {
	user    string // canonical header name
	email   string // canonical header name; "" when not configured
	trusted []netip.Prefix
}

func newHeaderSource(cfg HeaderConfig) (*headerSource, error) {
	if !validHeaderName(cfg.User) {
		return nil, fmt.Errorf("header: user header %q is not a valid header name", cfg.User)
	}
	if cfg.Email != "" && !validHeaderName(cfg.Email) {
		return nil, fmt.Errorf("header: email header %q is not a valid header name", cfg.Email)
	}
	if len(cfg.TrustedProxies) == 0 {
		// No trusted peer means no request could ever be authenticated.
		return nil, errors.New("header: at least one trusted proxy prefix is required")
	}
	s := &headerSource{user: http.CanonicalHeaderKey(cfg.User)}
	if cfg.Email != "" {
		s.email = http.CanonicalHeaderKey(cfg.Email)
		if s.email == s.user {
			return nil, errors.New("header: user and email must be different headers")
		}
	}
	for _, p := range cfg.TrustedProxies {
		if !p.IsValid() {
			return nil, fmt.Errorf("header: invalid trusted proxy prefix %v", p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			// Peers are compared unmapped, so mapped prefixes are too.
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		s.trusted = append(s.trusted, p.Masked())
	}
	return s, nil
}

// authenticate reads the identity headers. From an untrusted peer they are
// ignored (ErrNoCredential), whatever X-Forwarded-For says: only the TCP
// peer (r.RemoteAddr) is known to be true.
//
// The header source has no session of its own. The session is "hdr:" and
// the hex SHA-256 of the user, so a second factor is bound to the user
// only: it survives the SSO proxy's re-logins and is shared by the user's
// concurrent sessions, until its own expiry (SPEC §8).
func (s *headerSource) authenticate(r *http.Request) (Identity, error) {
	if !s.trustedPeer(r.RemoteAddr) {
		return Identity{}, ErrNoCredential
	}
	users := r.Header.Values(s.user)
	switch {
	case len(users) == 0 || (len(users) == 1 && users[0] == ""):
		return Identity{}, ErrNoCredential
	case len(users) > 1:
		// Two values may be one from the client and one from the SSO proxy.
		return Identity{}, fmt.Errorf("%w: header %s: more than one value", ErrInvalid, s.user)
	}
	user := users[0]
	if !validText(user) {
		return Identity{}, fmt.Errorf("%w: header %s: too long or contains control characters", ErrInvalid, s.user)
	}
	id := Identity{Subject: user}
	if s.email != "" {
		// Several values are ambiguous; the address is dropped, as an
		// invalid one is.
		if emails := r.Header.Values(s.email); len(emails) == 1 {
			id.Emails = parseEmails(emails[0])
		}
	}
	sum := sha256.Sum256([]byte(user))
	id.Session = "hdr:" + hex.EncodeToString(sum[:])
	return id, nil
}

// trustedPeer reports whether remoteAddr ("ip:port", or a bare IP) is in
// a trusted prefix. IPv4-mapped IPv6 addresses count as IPv4; zones are
// ignored. Anything unparsable (a Unix socket) is untrusted.
func (s *headerSource) trustedPeer(remoteAddr string) bool {
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		addr = ap.Addr()
	} else if a, err := netip.ParseAddr(remoteAddr); err == nil {
		addr = a
	} else {
		return false
	}
	addr = addr.WithZone("").Unmap()
	return slices.ContainsFunc(s.trusted, func(p netip.Prefix) bool { return p.Contains(addr) })
}

// validHeaderName reports whether name is an RFC 9110 §5.6.2 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c != 0 && c < 0x7f && c > 0x20 && strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
