package redisstore_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge/redisstore"
	"github.com/stepgate/stepgate/challenge/redisstore/redistest"
	"github.com/stepgate/stepgate/internal/proctest"
)

// testPKI is a throwaway CA and a server certificate it signed for
// 127.0.0.1 and redis.test.
type testPKI struct {
	caPEM, certPEM, keyPEM []byte
	pool                   *x509.CertPool
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "stepgate test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "redis.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"redis.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{
		caPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		pool:    x509.NewCertPool(),
	}
	p.pool.AddCert(ca)
	return p
}

// startTLSRedis starts a redis-server that only listens with TLS, or
// skips loudly when redis-server is missing or built without TLS. The
// redistest helper has no TLS option (it is not this package's to change),
// hence this local one.
func startTLSRedis(t *testing.T, p testPKI) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		skipOrFail(t, "redis-server not found in PATH: install it (apt-get install redis-server) to run the Redis TLS test")
	}
	dir := t.TempDir()
	files := map[string][]byte{"ca.pem": p.caPEM, "cert.pem": p.certPEM, "key.pem": p.keyPEM}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port, err := proctest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	cmd := exec.Command(bin,
		"--port", "0",
		"--tls-port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--tls-cert-file", filepath.Join(dir, "cert.pem"),
		"--tls-key-file", filepath.Join(dir, "key.pem"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.pem"),
		"--tls-auth-clients", "no",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
	)
	out := &proctest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	proc, err := proctest.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Stop(0) })

	conf := &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	err = proc.WaitReady("redis-server with TLS on "+addr, 10*time.Second, 20*time.Millisecond, func() error { return tlsPing(addr, conf) })
	if err != nil {
		select {
		case <-proc.Done():
			msg := out.String()
			if strings.Contains(msg, "Bad directive") || strings.Contains(strings.ToLower(msg), "tls") && strings.Contains(strings.ToLower(msg), "not support") {
				skipOrFail(t, "this redis-server was built without TLS support (BUILD_TLS=yes): "+firstLine(msg))
			}
		default:
		}
		t.Fatalf("%v; output:\n%s", err, out.String())
	}
	return addr
}

func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	proctest.SkipOrFail(t, "STEPGATE_REQUIRE_REDIS", msg)
}

func firstLine(s string) string {
	for l := range strings.Lines(s) {
		if strings.Contains(l, "#") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(s)
}

// tlsPing sends an inline PING over TLS.
func tlsPing(addr string, conf *tls.Config) error {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: conf}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return redistest.Ping(c)
}

func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	addr := startTLSRedis(t, pki)
	tests := []struct {
		name string
		tls  *tls.Config
		ok   bool
	}{
		// ServerName defaults to Addr's host, which the certificate names.
		{"our CA, default server name", &tls.Config{RootCAs: pki.pool}, true},
		{"our CA, server name", &tls.Config{RootCAs: pki.pool, ServerName: "redis.test"}, true},
		{"our CA, wrong server name", &tls.Config{RootCAs: pki.pool, ServerName: "other.test"}, false},
		{"system roots", &tls.Config{}, false},
		// Plain TCP to a TLS port must fail, never fall back.
		{"no TLS", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, redisstore.Options{Addr: addr, TLS: tt.tls, KeyPrefix: randomPrefix(t), Timeout: time.Second})
			err := s.Ping(t.Context())
			if (err == nil) != tt.ok {
				t.Fatalf("Ping: got %v; want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				// A security decision over a connection that failed is an
				// error, never "not revoked".
				if revoked, err := s.Revoked(t.Context(), "jti", "e"); err == nil {
					t.Errorf("Revoked: got %v, nil; want an error", revoked)
				}
				return
			}
			flow(t, s, "tls-user")
			if err := s.Revoke(t.Context(), "jti", time.Minute); err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			if revoked, err := s.Revoked(t.Context(), "jti", epochOf(t.Context(), s)); err != nil || !revoked {
				t.Errorf("Revoked after Revoke: got %v, %v; want true, nil", revoked, err)
			}
		})
	}
}

func TestClientTLS(t *testing.T) {
	if c, err := redisstore.ClientTLS(nil, "127.0.0.1:6379"); c != nil || err != nil {
		t.Errorf("ClientTLS(nil): got %v, %v; want nil, nil", c, err)
	}
	tests := []struct {
		name           string
		in             *tls.Config
		addr           string
		wantMin        uint16
		wantServerName string
	}{
		{"zero", &tls.Config{}, "redis.internal:6380", tls.VersionTLS12, "redis.internal"},
		{"old minimum raised", &tls.Config{MinVersion: tls.VersionTLS10}, "10.0.0.5:6380", tls.VersionTLS12, "10.0.0.5"},
		{"TLS 1.3 kept", &tls.Config{MinVersion: tls.VersionTLS13}, "[::1]:6380", tls.VersionTLS13, "::1"},
		{"server name kept", &tls.Config{ServerName: "redis.example.com"}, "10.0.0.5:6380", tls.VersionTLS12, "redis.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.in.Clone()
			got, err := redisstore.ClientTLS(tt.in, tt.addr)
			if err != nil {
				t.Fatalf("ClientTLS: %v", err)
			}
			if got.MinVersion != tt.wantMin {
				t.Errorf("MinVersion: got %#x; want %#x", got.MinVersion, tt.wantMin)
			}
			if got.ServerName != tt.wantServerName {
				t.Errorf("ServerName: got %q; want %q", got.ServerName, tt.wantServerName)
			}
			if tt.in.MinVersion != before.MinVersion || tt.in.ServerName != before.ServerName {
				t.Errorf("ClientTLS changed the caller's config: got %+v; want it unchanged", tt.in)
			}
		})
	}
}
