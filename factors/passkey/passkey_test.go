package passkey_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/go-webauthn/webauthn/metadata/providers/memory"
	"github.com/google/uuid"

	"github.com/stepgate/stepgate/challenge"
	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/passkey"
	"github.com/stepgate/stepgate/factors/passkey/passkeytest"
	"github.com/stepgate/stepgate/factors/sqlitestore"
)

const (
	origin = "https://app.example.com"
	rpID   = "app.example.com"
)

var (
	alice = passkey.User{Subject: "alice", Session: "s1", Name: "alice@example.com"}
	bob   = passkey.User{Subject: "bob", Session: "s2", Name: "bob@example.com"}
)

type env struct {
	rp     *passkey.RP
	store  factors.Store
	keys   *factors.Keyring
	states *challenge.MemoryStore
	clock  *clock
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newEnv(t *testing.T, tweak ...func(*passkey.Config)) *env {
	t.Helper()
	st, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "f.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := factors.NewKeyring([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	states := challenge.NewMemoryStore(0)
	t.Cleanup(func() { states.Close() })
	c := &clock{t: time.Now()}
	cfg := passkey.Config{Origin: origin, Now: c.Now}
	for _, f := range tweak {
		f(&cfg)
	}
	rp, err := passkey.New(cfg, st, keys, states, challenge.ErrNoCeremony)
	if err != nil {
		t.Fatal(err)
	}
	return &env{rp: rp, store: st, keys: keys, states: states, clock: c}
}

// register adds a passkey for u from a and returns it.
func (e *env) register(t *testing.T, u passkey.User, a *passkeytest.Authenticator, name string) passkey.Credential {
	t.Helper()
	opts, err := e.rp.BeginRegistration(t.Context(), u, name)
	if err != nil {
		t.Fatalf("BeginRegistration: %v", err)
	}
	body, err := a.Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.rp.FinishRegistration(t.Context(), u, body)
	if err != nil {
		t.Fatalf("FinishRegistration: %v", err)
	}
	return c
}

// login runs a whole assertion of u with a.
func (e *env) login(t *testing.T, u passkey.User, a *passkeytest.Authenticator) (passkey.Credential, error) {
	t.Helper()
	opts, err := e.rp.BeginLogin(t.Context(), u)
	if err != nil {
		return passkey.Credential{}, err
	}
	body, err := a.Get(opts)
	if err != nil {
		t.Fatal(err)
	}
	return e.rp.FinishLogin(t.Context(), u, body)
}

func TestRegisterAndLogin(t *testing.T) {
	e := newEnv(t)
	a := passkeytest.New(origin, rpID)
	a.Flags |= passkeytest.FlagBE | passkeytest.FlagBS
	a.AAGUID = uuid.MustParse("08987058-cadc-4b81-b6e1-30de50dcbe96")
	c := e.register(t, alice, a, "  Laptop  ")
	if c.Factor.Name != "Laptop" || !bytes.Equal(c.CredentialID, a.ID) || c.AAGUID.String() != "08987058-cadc-4b81-b6e1-30de50dcbe96" {
		t.Fatalf("registered %+v; want name Laptop, the authenticator's id and AAGUID", c)
	}
	if !c.BackupEligible || !c.BackupState || len(c.Transports) != 1 || c.Transports[0] != "internal" {
		t.Fatalf("flags/transports %v %v %v; want BE, BS, [internal]", c.BackupEligible, c.BackupState, c.Transports)
	}
	// At rest: the credential id and public key are sealed, the public
	// part says what the factors page shows.
	f, err := e.store.Get(t.Context(), "alice", c.Factor.ID)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(f.Secret, a.ID) || bytes.Contains(f.Public, a.ID) || bytes.Contains(f.Secret, c.PublicKey[10:30]) {
		t.Fatal("credential id or public key stored in the clear")
	}
	var pub map[string]any
	if err := json.Unmarshal(f.Public, &pub); err != nil || pub["aaguid"] != "08987058-cadc-4b81-b6e1-30de50dcbe96" || pub["backup_eligible"] != true {
		t.Fatalf("public %s; want aaguid and backup flags", f.Public)
	}
	if !f.Confirmed || f.Type != factors.TypePasskey {
		t.Fatalf("stored %+v; want a confirmed passkey", f)
	}
	for i := range 3 {
		got, err := e.login(t, alice, a)
		if err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
		if got.Factor.ID != c.Factor.ID || got.Factor.Counter != int64(a.Counter) {
			t.Fatalf("login %d: used %s counter %d; want %s counter %d", i, got.Factor.ID, got.Factor.Counter, c.Factor.ID, a.Counter)
		}
	}
	f, _ = e.store.Get(t.Context(), "alice", c.Factor.ID)
	if f.Counter != 3 || !f.LastUsedAt.Equal(e.clock.Now().Truncate(time.Microsecond)) {
		t.Fatalf("after 3 logins: counter %d last used %v; want 3, %v", f.Counter, f.LastUsedAt, e.clock.Now())
	}
}

func TestCounterlessAuthenticator(t *testing.T) {
	// Synced passkeys (Apple, Google) always send 0: both zero is fine,
	// every time.
	e := newEnv(t)
	a := passkeytest.New(origin, rpID)
	a.Step = 0
	e.register(t, alice, a, "Phone")
	for i := range 3 {
		if _, err := e.login(t, alice, a); err != nil {
			t.Fatalf("login %d with counter 0: %v", i, err)
		}
	}
}

func TestLoginRefused(t *testing.T) {
	for _, tt := range []struct {
		name  string
		lie   func(a *passkeytest.Authenticator)
		want  error
		cause string
	}{
		{"wrong origin", func(a *passkeytest.Authenticator) { a.Origin = "https://app.example.com.evil.test" }, passkey.ErrRefused, "origin"},
		{"http origin", func(a *passkeytest.Authenticator) { a.Origin = "http://app.example.com" }, passkey.ErrRefused, "origin"},
		{"wrong RP ID", func(a *passkeytest.Authenticator) { a.RPID = "evil.test" }, passkey.ErrRefused, "RP Hash"},
		{"parent RP ID not configured", func(a *passkeytest.Authenticator) { a.RPID = "example.com" }, passkey.ErrRefused, "RP Hash"},
		{"user not verified", func(a *passkeytest.Authenticator) { a.Flags &^= passkeytest.FlagUV }, passkey.ErrRefused, "verif"},
		{"user not present", func(a *passkeytest.Authenticator) { a.Flags &^= passkeytest.FlagUP }, passkey.ErrRefused, "presence"},
		{"backup eligibility changed", func(a *passkeytest.Authenticator) { a.Flags |= passkeytest.FlagBE }, passkey.ErrRefused, "Backup Eligible"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			a := passkeytest.New(origin, rpID)
			e.register(t, alice, a, "Key")
			tt.lie(a)
			_, err := e.login(t, alice, a)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.cause)) {
				t.Errorf("error %q does not say why (%q)", err, tt.cause)
			}
		})
	}
}

func TestRegistrationRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		lie  func(a *passkeytest.Authenticator)
	}{
		{"wrong origin", func(a *passkeytest.Authenticator) { a.Origin = "https://evil.test" }},
		{"wrong RP ID", func(a *passkeytest.Authenticator) { a.RPID = "evil.test" }},
		{"user not verified", func(a *passkeytest.Authenticator) { a.Flags &^= passkeytest.FlagUV }},
		{"backup state without eligibility", func(a *passkeytest.Authenticator) { a.Flags |= passkeytest.FlagBS }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			a := passkeytest.New(origin, rpID)
			tt.lie(a)
			opts, err := e.rp.BeginRegistration(t.Context(), alice, "Key")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := a.Create(opts)
			if _, err := e.rp.FinishRegistration(t.Context(), alice, body); !errors.Is(err, passkey.ErrRefused) {
				t.Fatalf("got %v; want ErrRefused", err)
			}
			if list, _ := e.store.List(t.Context(), "alice"); len(list) != 0 {
				t.Fatalf("%d factors stored after a refused registration; want 0", len(list))
			}
		})
	}
	t.Run("duplicate", func(t *testing.T) {
		e := newEnv(t)
		a := passkeytest.New(origin, rpID)
		e.register(t, alice, a, "Key")
		opts, _ := e.rp.BeginRegistration(t.Context(), alice, "Again")
		body, _ := a.Create(opts)
		if _, err := e.rp.FinishRegistration(t.Context(), alice, body); !errors.Is(err, passkey.ErrDuplicate) {
			t.Fatalf("got %v; want ErrDuplicate", err)
		}
	})
	t.Run("credential id of another user", func(t *testing.T) {
		e := newEnv(t)
		a := passkeytest.New(origin, rpID)
		e.register(t, alice, a, "Key")
		// The same credential id presented for bob (an attacker who
		// copied alice's credential id into their own registration).
		opts, _ := e.rp.BeginRegistration(t.Context(), bob, "Stolen")
		body, _ := a.Create(opts)
		_, err := e.rp.FinishRegistration(t.Context(), bob, body)
		if !errors.Is(err, passkey.ErrTaken) || !errors.Is(err, passkey.ErrDuplicate) {
			t.Fatalf("got %v; want ErrTaken (an ErrDuplicate)", err)
		}
		if cs, _ := e.rp.List(t.Context(), "bob"); len(cs) != 0 {
			t.Fatalf("bob has %d passkeys; want none", len(cs))
		}
	})
	t.Run("bad names", func(t *testing.T) {
		e := newEnv(t)
		for _, n := range []string{"", "   ", strings.Repeat("x", 65), "a\nb", "a\x00"} {
			if _, err := e.rp.BeginRegistration(t.Context(), alice, n); !errors.Is(err, passkey.ErrName) {
				t.Errorf("name %q: %v; want ErrName", n, err)
			}
		}
	})
}

func TestChallengeSingleUse(t *testing.T) {
	e := newEnv(t)
	a := passkeytest.New(origin, rpID)
	e.register(t, alice, a, "Key")

	t.Run("replayed assertion", func(t *testing.T) {
		opts, _ := e.rp.BeginLogin(t.Context(), alice)
		body, _ := a.Get(opts)
		if _, err := e.rp.FinishLogin(t.Context(), alice, body); err != nil {
			t.Fatal(err)
		}
		if _, err := e.rp.FinishLogin(t.Context(), alice, body); !errors.Is(err, passkey.ErrNoChallenge) {
			t.Fatalf("replay: %v; want ErrNoChallenge", err)
		}
	})
	t.Run("reused challenge, new signature", func(t *testing.T) {
		opts, _ := e.rp.BeginLogin(t.Context(), alice)
		body, _ := a.Get(opts)
		if _, err := e.rp.FinishLogin(t.Context(), alice, body); err != nil {
			t.Fatal(err)
		}
		a.Counter++
		again, _ := a.Assert(passkeytest.Challenge(opts), a.Counter)
		if _, err := e.rp.FinishLogin(t.Context(), alice, again); !errors.Is(err, passkey.ErrNoChallenge) {
			t.Fatalf("reuse: %v; want ErrNoChallenge", err)
		}
	})
	t.Run("made-up challenge", func(t *testing.T) {
		a.Counter++
		body, _ := a.Assert("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", a.Counter)
		if _, err := e.rp.FinishLogin(t.Context(), alice, body); !errors.Is(err, passkey.ErrNoChallenge) {
			t.Fatalf("got %v; want ErrNoChallenge", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		opts, _ := e.rp.BeginLogin(t.Context(), alice)
		body, _ := a.Get(opts)
		e.clock.Add(passkey.MaxTimeout + time.Second)
		defer e.clock.Add(-passkey.MaxTimeout - time.Second)
		if _, err := e.rp.FinishLogin(t.Context(), alice, body); !errors.Is(err, passkey.ErrNoChallenge) {
			t.Fatalf("after 5 min: %v; want ErrNoChallenge", err)
		}
	})
	t.Run("other session", func(t *testing.T) {
		opts, _ := e.rp.BeginLogin(t.Context(), alice)
		body, _ := a.Get(opts)
		other := alice
		other.Session = "stolen elsewhere"
		if _, err := e.rp.FinishLogin(t.Context(), other, body); !errors.Is(err, passkey.ErrNoChallenge) {
			t.Fatalf("other session: %v; want ErrNoChallenge", err)
		}
	})
	t.Run("registration challenge for a login", func(t *testing.T) {
		opts, _ := e.rp.BeginRegistration(t.Context(), alice, "x")
		a.Counter++
		body, _ := a.Assert(passkeytest.Challenge(opts), a.Counter)
		if _, err := e.rp.FinishLogin(t.Context(), alice, body); !errors.Is(err, passkey.ErrNoChallenge) {
			t.Fatalf("got %v; want ErrNoChallenge", err)
		}
	})
	t.Run("two tabs", func(t *testing.T) {
		// Two tabs with their own challenges both work...
		o1, _ := e.rp.BeginLogin(t.Context(), alice)
		o2, _ := e.rp.BeginLogin(t.Context(), alice)
		b1, _ := a.Get(o1)
		b2, _ := a.Get(o2)
		if _, err := e.rp.FinishLogin(t.Context(), alice, b1); err != nil {
			t.Fatal(err)
		}
		if _, err := e.rp.FinishLogin(t.Context(), alice, b2); err != nil {
			t.Fatal(err)
		}
		// ...and one challenge answered concurrently is used once.
		opts, _ := e.rp.BeginLogin(t.Context(), alice)
		body, _ := a.Get(opts)
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		for range 8 {
			wg.Go(func() {
				_, err := e.rp.FinishLogin(context.Background(), alice, body)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					ok++
				} else if !errors.Is(err, passkey.ErrNoChallenge) {
					t.Errorf("concurrent finish: %v", err)
				}
			})
		}
		wg.Wait()
		if ok != 1 {
			t.Fatalf("%d concurrent finishes of one challenge succeeded; want 1", ok)
		}
	})
}

func TestAnotherUsersCredential(t *testing.T) {
	e := newEnv(t)
	aliceKey := passkeytest.New(origin, rpID)
	bobKey := passkeytest.New(origin, rpID)
	e.register(t, alice, aliceKey, "Alice's")
	e.register(t, bob, bobKey, "Bob's")
	// Bob's challenge answered with Alice's authenticator.
	opts, _ := e.rp.BeginLogin(t.Context(), bob)
	body, _ := aliceKey.Get(opts)
	if _, err := e.rp.FinishLogin(t.Context(), bob, body); !errors.Is(err, passkey.ErrRefused) {
		t.Fatalf("alice's passkey for bob: %v; want ErrRefused", err)
	}
	// Alice's answer presented in Bob's name.
	opts, _ = e.rp.BeginLogin(t.Context(), alice)
	body, _ = aliceKey.Get(opts)
	if _, err := e.rp.FinishLogin(t.Context(), bob, body); !errors.Is(err, passkey.ErrNoChallenge) {
		t.Fatalf("alice's answer as bob: %v; want ErrNoChallenge", err)
	}
	// A never registered authenticator.
	stranger := passkeytest.New(origin, rpID)
	opts, _ = e.rp.BeginLogin(t.Context(), alice)
	body, _ = stranger.Get(opts)
	if _, err := e.rp.FinishLogin(t.Context(), alice, body); !errors.Is(err, passkey.ErrRefused) {
		t.Fatalf("unregistered authenticator: %v; want ErrRefused", err)
	}
	if _, err := e.rp.BeginLogin(t.Context(), passkey.User{Subject: "carol", Session: "s"}); !errors.Is(err, passkey.ErrNoPasskey) {
		t.Fatalf("BeginLogin without passkeys: %v; want ErrNoPasskey", err)
	}
}

func TestSignCountRegression(t *testing.T) {
	e := newEnv(t)
	a := passkeytest.New(origin, rpID)
	a.Counter = 10
	c := e.register(t, alice, a, "Key")
	if _, err := e.login(t, alice, a); err != nil { // 11
		t.Fatal(err)
	}
	// A clone at an older counter.
	opts, _ := e.rp.BeginLogin(t.Context(), alice)
	body, _ := a.Assert(passkeytest.Challenge(opts), 5)
	if _, err := e.rp.FinishLogin(t.Context(), alice, body); !errors.Is(err, passkey.ErrCloned) {
		t.Fatalf("counter 5 after 11: %v; want ErrCloned", err)
	}
	list, err := e.rp.List(t.Context(), "alice")
	if err != nil || len(list) != 1 || !list[0].Cloned || list[0].ClonedAt.IsZero() {
		t.Fatalf("after regression: %+v, %v; want the credential marked cloned", list, err)
	}
	if list[0].Factor.Counter != 11 {
		t.Fatalf("counter %d after regression; want 11 kept", list[0].Factor.Counter)
	}
	// Marked: refused from then on, even with a good counter.
	if _, err := e.login(t, alice, a); !errors.Is(err, passkey.ErrNoPasskey) {
		t.Fatalf("login with a cloned credential: %v; want ErrNoPasskey", err)
	}
	if ok, _ := e.rp.HasPasskey(t.Context(), "alice"); ok {
		t.Fatal("HasPasskey true with only a cloned credential")
	}
	_ = c
	// The same counter again is a regression too, and zero after nonzero.
	for _, next := range []uint32{0, 3} {
		e := newEnv(t)
		a := passkeytest.New(origin, rpID)
		a.Counter = 3
		e.register(t, alice, a, "Key")
		opts, _ := e.rp.BeginLogin(t.Context(), alice)
		body, _ := a.Assert(passkeytest.Challenge(opts), next)
		if _, err := e.rp.FinishLogin(t.Context(), alice, body); !errors.Is(err, passkey.ErrCloned) {
			t.Fatalf("counter %d after 3: %v; want ErrCloned", next, err)
		}
	}
}

func TestAAGUIDPolicyNeedsAttestation(t *testing.T) {
	st, _ := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "f.db"))
	defer st.Close()
	keys, _ := factors.NewKeyring([]byte("0123456789abcdef0123456789abcdef"))
	cfg := passkey.Config{Origin: origin, AAGUIDs: []uuid.UUID{uuid.New()}}
	if _, err := passkey.New(cfg, st, keys, challenge.NewMemoryStore(0), challenge.ErrNoCeremony); err == nil || !strings.Contains(err.Error(), "self-asserted") && !strings.Contains(err.Error(), "only claimed") {
		t.Fatalf("aaguids without attestation direct and metadata: %v; want a refusal saying why", err)
	}
}

func TestCheckRPID(t *testing.T) {
	for _, tt := range []struct {
		rpID, host string
		ok         bool
	}{
		{"app.example.com", "app.example.com", true},
		{"example.com", "app.example.com", true},
		{"EXAMPLE.com.", "app.example.com", true},
		{"example.com", "a.b.example.com", true},
		{"corp.internal", "sso.corp.internal", true},
		{"localhost", "localhost", true},
		{"com", "app.example.com", false},
		{"co.uk", "shop.example.co.uk", false},
		{"github.io", "me.github.io", false},
		{"other.com", "app.example.com", false},
		{"ample.com", "app.example.com", false},
		{"app.example.com", "example.com", false},
		{"0.1", "127.0.0.1", false},
		{"", "app.example.com", false},
	} {
		err := passkey.CheckRPID(tt.rpID, tt.host)
		if (err == nil) != tt.ok {
			t.Errorf("CheckRPID(%q, %q) = %v; want ok=%v", tt.rpID, tt.host, err, tt.ok)
		}
	}
}

// TestAAGUIDPolicy: with aaguids set, a registration whose AAGUID is not
// listed is refused, and so is a listed AAGUID that comes only with
// attestation "none" (self-asserted). The accepted path (a packed
// attestation chaining to a metadata trust anchor) is left to the
// library's own attestation tests; stepgate adds these two refusals.
func TestAAGUIDPolicy(t *testing.T) {
	allowed := uuid.MustParse("ee882879-721c-4913-9775-3dfcce97072a")
	mds, err := memory.New(memory.WithMetadata(map[uuid.UUID]*metadata.Entry{allowed: {AaGUID: allowed}}))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *passkey.Config) {
		c.Attestation = passkey.AttestationDirect
		c.AAGUIDs = []uuid.UUID{allowed}
		c.Metadata = mds
	})
	for _, tt := range []struct {
		name   string
		aaguid uuid.UUID
	}{
		{"unlisted model", uuid.MustParse("08987058-cadc-4b81-b6e1-30de50dcbe96")},
		{"zero AAGUID", uuid.Nil},
		{"listed model, no attestation", allowed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := passkeytest.New(origin, rpID)
			a.AAGUID = tt.aaguid
			opts, err := e.rp.BeginRegistration(t.Context(), alice, "Key")
			if err != nil {
				t.Fatal(err)
			}
			if got := opts.Response.Attestation; got != "direct" {
				t.Errorf("options ask attestation %q; want direct", got)
			}
			body, _ := a.Create(opts)
			if _, err := e.rp.FinishRegistration(t.Context(), alice, body); !errors.Is(err, passkey.ErrNotAllowed) {
				t.Fatalf("got %v; want ErrNotAllowed", err)
			}
			if list, _ := e.store.List(t.Context(), "alice"); len(list) != 0 {
				t.Fatalf("%d factors stored; want 0", len(list))
			}
		})
	}
}

// TestAAGUIDPolicyAccepts: a listed model whose packed attestation chains
// to the root the metadata names for its AAGUID registers; the same
// attestation from a root the metadata does not name does not.
func TestAAGUIDPolicyAccepts(t *testing.T) {
	allowed := uuid.MustParse("ee882879-721c-4913-9775-3dfcce97072a")
	att, err := passkeytest.NewAttester(allowed)
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := passkeytest.NewAttester(allowed)
	if err != nil {
		t.Fatal(err)
	}
	entry := &metadata.Entry{
		AaGUID: allowed,
		MetadataStatement: metadata.Statement{
			AaGUID:                      allowed,
			Description:                 "passkeytest key",
			AttestationTypes:            metadata.AuthenticatorAttestationTypes{metadata.BasicFull},
			AttestationRootCertificates: []*x509.Certificate{att.Root},
		},
		StatusReports: []metadata.StatusReport{{Status: metadata.FidoCertifiedL1}},
	}
	mds, err := memory.New(memory.WithMetadata(map[uuid.UUID]*metadata.Entry{allowed: entry}))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *passkey.Config) {
		c.Attestation = passkey.AttestationDirect
		c.AAGUIDs = []uuid.UUID{allowed}
		c.Metadata = mds
	})
	a := passkeytest.New(origin, rpID)
	a.AAGUID = allowed
	a.Attestation = att
	c := e.register(t, alice, a, "Security key")
	if c.AAGUID != allowed || c.AttestationFormat != "packed" {
		t.Fatalf("registered %s with %q; want the listed model, packed", c.AAGUID, c.AttestationFormat)
	}
	if _, err := e.login(t, alice, a); err != nil {
		t.Fatalf("step-up with the attested key: %v", err)
	}
	b := passkeytest.New(origin, rpID)
	b.AAGUID = allowed
	b.Attestation = rogue
	opts, _ := e.rp.BeginRegistration(t.Context(), alice, "Rogue")
	body, _ := b.Create(opts)
	_, err = e.rp.FinishRegistration(t.Context(), alice, body)
	if !(errors.Is(err, passkey.ErrRefused) || errors.Is(err, passkey.ErrNotAllowed)) || !strings.Contains(err.Error(), "trust chain") {
		t.Fatalf("attestation from a root the metadata does not name: %v; want a trust-chain refusal", err)
	}
}
