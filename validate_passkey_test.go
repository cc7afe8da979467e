package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// passkeySections enables passkeys with a factor store.
func passkeySections(publicURL, passkey string) string {
	return baseSections + `
server:
  public_url: "` + publicURL + `"
factors:
  enabled: [passkey, email]
  sqlite:
    path: "/tmp/unused.db"
  encryption_key: "factor-encryption-key-0123456789abcdef"
` + passkey + baseRules
}

func TestPasskeyConfig(t *testing.T) {
	meta := filepath.Join(t.TempDir(), "mds.json")
	if err := os.WriteFile(meta, []byte(`{"legalHeader":"x","no":1,"nextUpdate":"2030-01-01","entries":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, url, passkey string
		key, msg           string // "" = valid
	}{
		{"default rp id", "https://app.example.com", "", "", ""},
		{"parent rp id", "https://app.example.com", "  passkey:\n    rp_id: example.com\n", "", ""},
		{"localhost over http", "http://localhost:8080", "", "", ""},
		{"public suffix", "https://app.example.co.uk", "  passkey:\n    rp_id: co.uk\n", "factors.passkey.rp_id", "public suffix"},
		{"tld", "https://app.example.com", "  passkey:\n    rp_id: com\n", "factors.passkey.rp_id", "public suffix"},
		{"unrelated", "https://app.example.com", "  passkey:\n    rp_id: example.org\n", "factors.passkey.rp_id", "parent domain"},
		{"suffix not on a label", "https://app.example.com", "  passkey:\n    rp_id: ple.com\n", "factors.passkey.rp_id", "parent domain"},
		{"ip address", "http://127.0.0.1:8080", "", "server.public_url", "IP address"},
		{"plain http", "http://app.example.com", "", "server.public_url", "https"},
		{"bad attestation", "https://app.example.com", "  passkey:\n    attestation: indirect\n", "factors.passkey.attestation", "none or direct"},
		{"aaguids without attestation", "https://app.example.com", "  passkey:\n    aaguids: [cb69481e-8ff7-4039-93ec-0a2729a154a8]\n    metadata_file: " + meta + "\n", "factors.passkey.attestation", "self-asserted"},
		{"aaguids without metadata", "https://app.example.com", "  passkey:\n    attestation: direct\n    aaguids: [cb69481e-8ff7-4039-93ec-0a2729a154a8]\n", "factors.passkey.metadata_file", "required"},
		{"bad aaguid", "https://app.example.com", "  passkey:\n    aaguids: [yubikey]\n", "factors.passkey.aaguids[0]", "not an AAGUID"},
		{"missing metadata file", "https://app.example.com", "  passkey:\n    metadata_file: /nonexistent/mds.json\n", "factors.passkey.metadata_file", "no such file"},
		{"empty metadata", "https://app.example.com", "  passkey:\n    metadata_file: " + meta + "\n", "factors.passkey.metadata_file", "no metadata entries"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, passkeySections(tt.url, tt.passkey)), noEnv)
			if tt.key == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want a problem at %s", tt.key)
			}
			for _, p := range problemsOf(t, err) {
				if p.Key == tt.key && strings.Contains(p.Msg, tt.msg) {
					return
				}
			}
			t.Fatalf("no problem at %s containing %q; got:\n%v", tt.key, tt.msg, err)
		})
	}
}
