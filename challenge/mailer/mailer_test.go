package mailer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge/mailtest"
)

// selfSigned returns a server config and a client pool for 127.0.0.1.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// textPart returns the decoded text/plain part and checks the structure:
// multipart/alternative with text and HTML.
func textPart(t *testing.T, raw []byte) (*mail.Message, string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type: got %q (%v); want multipart/alternative", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var text string
	var types []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types = append(types, pt)
		var body io.Reader = p
		if strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			body = quotedprintable.NewReader(p)
		}
		b, _ := io.ReadAll(body)
		if pt == "text/plain" {
			text = string(b)
		}
	}
	if strings.Join(types, ",") != "text/plain,text/html" {
		t.Errorf("parts: got %v; want [text/plain text/html]", types)
	}
	return msg, text
}

var ctx0 = context.Background()

var testMessage = Message{To: "alice@example.com", Subject: "Your verification code", Text: "code 424242", HTML: "<p>code 424242</p>"}

func TestSMTPSenderPlain(t *testing.T) {
	in := mailtest.Start(t, mailtest.Options{})
	s, err := NewSMTPSender(SMTPConfig{Host: "127.0.0.1", Port: in.Port(), TLS: "none", From: "stepgate <no-reply@example.com>", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx0, testMessage); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := in.Next(t)
	if got.From != "no-reply@example.com" || len(got.To) != 1 || got.To[0] != "alice@example.com" {
		t.Errorf("envelope: got %q -> %q; want no-reply@example.com -> [alice@example.com]", got.From, got.To)
	}
	msg, text := textPart(t, got.Raw)
	if !strings.Contains(text, "424242") {
		t.Errorf("text part: got %q; want the code", text)
	}
	if got := msg.Header.Get("Subject"); got != "Your verification code" {
		t.Errorf("Subject: got %q; want %q", got, "Your verification code")
	}
	if got := msg.Header.Get("Auto-Submitted"); got != "auto-generated" {
		t.Errorf("Auto-Submitted: got %q; want auto-generated", got)
	}
}

func TestSMTPSenderStartTLSAuth(t *testing.T) {
	srvTLS, pool := selfSigned(t)
	in := mailtest.Start(t, mailtest.Options{TLS: srvTLS, User: "stepgate", Password: "s3cret"})
	s, err := NewSMTPSender(SMTPConfig{
		Host: "127.0.0.1", Port: in.Port(), TLS: "starttls", Username: "stepgate", Password: "s3cret",
		From: "no-reply@example.com", Timeout: 5 * time.Second,
		TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx0, testMessage); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := in.Next(t); got.User != "stepgate" {
		t.Errorf("authenticated user: got %q; want stepgate", got.User)
	}
	// A wrong password fails the send.
	bad, _ := NewSMTPSender(SMTPConfig{
		Host: "127.0.0.1", Port: in.Port(), TLS: "starttls", Username: "stepgate", Password: "wrong",
		From: "no-reply@example.com", Timeout: 5 * time.Second,
		TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
	})
	if err := bad.Send(ctx0, testMessage); err == nil {
		t.Error("Send with a wrong password: got nil; want an error")
	}
}

func TestSMTPSenderStartTLSRequired(t *testing.T) {
	// A server without STARTTLS: starttls means mandatory, never a
	// silent downgrade to plain text.
	in := mailtest.Start(t, mailtest.Options{})
	s, err := NewSMTPSender(SMTPConfig{Host: "127.0.0.1", Port: in.Port(), TLS: "starttls", From: "no-reply@example.com", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx0, testMessage); err == nil {
		t.Fatal("Send without STARTTLS: got nil; want an error")
	}
	in.None(t, "the message went out in plain text")
}

func TestNewSMTPSenderConfig(t *testing.T) {
	tests := []struct {
		name string
		c    SMTPConfig
		ok   bool
	}{
		{"clear auth to remote", SMTPConfig{Host: "mail.example.com", TLS: "none", Username: "u", From: "a@example.com"}, false},
		{"clear auth to loopback", SMTPConfig{Host: "127.0.0.1", TLS: "none", Username: "u", From: "a@example.com", Logger: slog.New(slog.DiscardHandler)}, true},
		{"no auth, no tls", SMTPConfig{Host: "mail.example.com", TLS: "none", From: "a@example.com"}, true},
		{"bad tls", SMTPConfig{Host: "mail.example.com", TLS: "maybe", From: "a@example.com"}, false},
		{"no host", SMTPConfig{TLS: "tls", From: "a@example.com"}, false},
		{"bad from", SMTPConfig{Host: "mail.example.com", TLS: "tls", From: "a@example.com\r\nBcc: x@example.com"}, false},
		{"bad port", SMTPConfig{Host: "mail.example.com", TLS: "tls", Port: 70000, From: "a@example.com"}, false},
	}
	for _, tt := range tests {
		_, err := NewSMTPSender(tt.c)
		if got := err == nil; got != tt.ok {
			t.Errorf("%s: got err %v; want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestSMTPNeverAnswers(t *testing.T) {
	// A server that accepts and never says a word: the send must end by
	// the configured timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	s, err := NewSMTPSender(SMTPConfig{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, TLS: "none", From: "no-reply@example.com", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Send(ctx0, testMessage); err == nil {
		t.Fatal("got nil; want a timeout error")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v; want about the 300ms timeout", d)
	}
	// A context deadline shorter than the timeout wins too.
	s.timeout = time.Minute
	cctx, cancel := context.WithTimeout(ctx0, 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := s.Send(cctx, testMessage); err == nil {
		t.Fatal("got nil; want a deadline error")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v; want about the 200ms deadline", d)
	}
}

func TestFileSender(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	f, err := NewFileSender(dir, "stepgate <no-reply@example.com>")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir: got %v, %v; want mode 0700", fi.Mode().Perm(), err)
	}
	for i := 0; i < 2; i++ {
		if err := f.Send(ctx0, testMessage); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 2 {
		t.Fatalf("got %d files; want 2 (unique names, no temporaries): %v", len(files), files)
	}
	for _, name := range files {
		fi, _ := os.Stat(name)
		if !strings.HasSuffix(name, ".eml") || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v; want a .eml file with mode 0600", name, fi.Mode().Perm())
		}
		raw, _ := os.ReadFile(name)
		_, text := textPart(t, raw)
		if !strings.Contains(text, "424242") {
			t.Errorf("%s: text %q lacks the code", name, text)
		}
	}
	if err := f.Send(ctx0, Message{To: "a@example.com\r\nBcc: x@example.com", Text: "x"}); err == nil {
		t.Error("Send to a CR/LF address: got nil; want an error")
	}
}

func TestLogSender(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	l := NewLogSender(log, "no-reply@example.com")
	if !strings.Contains(buf.String(), `"level":"WARN","msg":"log mail driver prints codes; for local use only"`) {
		t.Errorf("start-up warning missing: %s", buf.String())
	}
	buf.Reset()
	if err := l.Send(ctx0, testMessage); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, `"level":"WARN"`) || !strings.Contains(out, "424242") || !strings.Contains(out, "alice@example.com") {
		t.Errorf("got %s; want a WARN record with the recipient and the code", out)
	}
}
