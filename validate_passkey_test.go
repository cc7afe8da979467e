package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepgate/stepgate/challenge"
	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/passkey"
	"github.com/stepgate/stepgate/factors/sqlitestore"
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

// TestPasskeyRPName: the relying party's display name is ui.app_name, the
// name the pages use, and "stepgate" without one.
func TestPasskeyRPName(t *testing.T) {
	for _, tt := range []struct{ ui, want string }{
		{"", "stepgate"},
		{"ui:\n  app_name: \"Acme Payments\"\n", "Acme Payments"},
	} {
		cfg, err := loadConfig(writeConfig(t, passkeySections("https://app.example.com", "")+tt.ui), noEnv)
		if err != nil {
			t.Fatal(err)
		}
		pc, err := cfg.passkeyConfig()
		if err != nil {
			t.Fatal(err)
		}
		st, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "f.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		keys, err := factors.NewKeyring([]byte("0123456789abcdef0123456789abcdef"))
		if err != nil {
			t.Fatal(err)
		}
		states := challenge.NewMemoryStore(0)
		defer states.Close()
		rp, err := passkey.New(pc, st, keys, states, challenge.ErrNoCeremony)
		if err != nil {
			t.Fatal(err)
		}
		opts, err := rp.BeginRegistration(t.Context(), passkey.User{Subject: "alice", Session: "s"}, "Laptop")
		if err != nil {
			t.Fatal(err)
		}
		if got := opts.Response.RelyingParty.Name; got != tt.want {
			t.Errorf("ui %q: rp.name %q; want %q", tt.ui, got, tt.want)
		}
	}
}

// TestPublicKeyProblemLocated: identity says only "public key" (it does
// not know YAML keys); check locates the problem at public_key_file.
func TestPublicKeyProblemLocated(t *testing.T) {
	pem := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(pem, []byte("not a PEM key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(baseSections, "    hmac_secret: \""+testHMACSecret+"\"\n",
		"    algorithms: [RS256]\n    public_key_file: "+pem+"\n", 1) + baseRules
	_, err := loadConfig(writeConfig(t, text), noEnv)
	if err == nil {
		t.Fatal("unparsable public key accepted")
	}
	for _, p := range problemsOf(t, err) {
		if p.Key == "identity.jwt.public_key_file" && !strings.Contains(p.Msg, "public_key_file") && !strings.HasPrefix(p.Msg, "public key") {
			return
		}
	}
	t.Fatalf("no problem at identity.jwt.public_key_file (without repeating the key); got:\n%v", err)
}
