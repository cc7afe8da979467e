package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/go-webauthn/webauthn/metadata/providers/memory"
	"github.com/google/uuid"

	"github.com/stepgate/stepgate/factors/passkey"
)

// maxMetadataBytes bounds factors.passkey.metadata_file (the whole FIDO
// MDS3 payload is a few MiB).
const maxMetadataBytes = 32 << 20

// validatePasskey checks factors.passkey against server.public_url: a
// domain name (browsers refuse WebAuthn on IP addresses), an RP ID that is
// the host or a registrable parent of it, and the attestation policy.
func (c *Config) validatePasskey(ps *problems) {
	p := c.Factors.Passkey
	u, err := url.Parse(c.Server.PublicURL)
	if err != nil || u.Hostname() == "" {
		return // reported with server.public_url
	}
	host := u.Hostname()
	if net.ParseIP(host) != nil {
		ps.add("server.public_url", "passkeys need a domain name, and %q is an IP address (browsers refuse WebAuthn there); use a name, or localhost for a local test", host)
		return
	}
	if u.Scheme != "https" && host != "localhost" && !strings.HasSuffix(host, ".localhost") {
		ps.add("server.public_url", "passkeys need https (browsers allow WebAuthn on http only for localhost)")
	}
	if p.RPID != "" {
		if err := passkey.CheckRPID(p.RPID, host); err != nil {
			ps.add("factors.passkey.rp_id", "%s", strings.TrimPrefix(err.Error(), "factors.passkey.rp_id "))
		}
	}
	switch p.Attestation {
	case passkey.AttestationNone, passkey.AttestationDirect:
	default:
		ps.add("factors.passkey.attestation", "unknown value %q (none or direct)", p.Attestation)
	}
	for i, a := range p.AAGUIDs {
		if _, err := uuid.Parse(a); err != nil {
			ps.add(fmt.Sprintf("factors.passkey.aaguids[%d]", i), "%q is not an AAGUID (a UUID such as cb69481e-8ff7-4039-93ec-0a2729a154a8)", a)
		}
	}
	if len(p.AAGUIDs) > 0 {
		if p.Attestation != passkey.AttestationDirect {
			ps.add("factors.passkey.attestation", "must be direct with factors.passkey.aaguids: without attestation an AAGUID is only self-asserted by the authenticator")
		}
		if p.MetadataFile == "" {
			ps.add("factors.passkey.metadata_file", "required with factors.passkey.aaguids: the attestation is checked against FIDO metadata supplied by ops")
		}
	}
	if p.MetadataFile != "" {
		if _, err := loadMetadata(p.MetadataFile); err != nil {
			ps.add("factors.passkey.metadata_file", "%v", err)
		}
	}
}

// loadMetadata reads a FIDO MDS3 payload (the JSON inside the BLOB JWT
// that ops downloaded and verified) into a metadata provider that checks
// attestation trust anchors and authenticator status. Nothing is fetched.
func loadMetadata(path string) (metadata.Provider, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var payload metadata.PayloadJSON
	dec := json.NewDecoder(&limitedReader{r: f, n: maxMetadataBytes})
	if err := dec.Decode(&payload); err != nil {
		return nil, fmt.Errorf("%s: not a FIDO MDS3 payload in JSON: %w", path, err)
	}
	d, err := metadata.NewDecoder(metadata.WithIgnoreEntryParsingErrors())
	if err != nil {
		return nil, err
	}
	m, err := d.Parse(&payload)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(m.Parsed.Entries) == 0 {
		return nil, fmt.Errorf("%s: no metadata entries", path)
	}
	return memory.New(memory.WithMetadata(m.ToMap()), memory.WithValidateEntry(true),
		memory.WithValidateTrustAnchor(true), memory.WithValidateStatus(true))
}

// limitedReader fails past n bytes instead of truncating silently.
type limitedReader struct {
	r interface{ Read([]byte) (int, error) }
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("file too large")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// passkeyConfig converts factors.passkey to the relying party's config:
// the origin is server.public_url's, the display name ui.app_name (the
// package falls back to "stepgate"), the metadata file is read here
// (validation read it once already).
func (c *Config) passkeyConfig() (passkey.Config, error) {
	p := c.Factors.Passkey
	pc := passkey.Config{
		Origin:      c.Server.PublicURL,
		RPID:        p.RPID,
		RPName:      c.UI.AppName,
		Attestation: p.Attestation,
	}
	for _, a := range p.AAGUIDs {
		id, err := uuid.Parse(a)
		if err != nil {
			return pc, fmt.Errorf("factors.passkey.aaguids: %w", err)
		}
		pc.AAGUIDs = append(pc.AAGUIDs, id)
	}
	if p.MetadataFile != "" {
		m, err := loadMetadata(p.MetadataFile)
		if err != nil {
			return pc, fmt.Errorf("factors.passkey.metadata_file: %w", err)
		}
		pc.Metadata = m
	}
	return pc, nil
}
