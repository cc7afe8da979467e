package challenge

import (
	"bytes"
	"errors"
	"net"
	"net/mail"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge/mailer"
	"github.com/stepgate/stepgate/challenge/mailtest"
)

// The one-time-code ceremony over a real SMTP exchange (challenge/mailtest):
// the mailer's own tests are in challenge/mailer.

func TestSMTPDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	s, err := mailer.NewSMTPSender(mailer.SMTPConfig{Host: "127.0.0.1", Port: port, TLS: "none", From: "no-reply@example.com", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.Sender = s })
	start := time.Now()
	_, err = e.s.Send(ctx0, alice, 0, Meta{})
	if !errors.Is(err, ErrMailUnavailable) {
		t.Fatalf("got %v; want ErrMailUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v; want a quick failure", d)
	}
}

func TestEndToEndSMTP(t *testing.T) {
	in := mailtest.Start(t, mailtest.Options{})
	s, err := mailer.NewSMTPSender(mailer.SMTPConfig{Host: "127.0.0.1", Port: in.Port(), TLS: "none", From: "stepgate <no-reply@example.com>", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.Sender = s })
	if _, err := e.s.Send(ctx0, alice, 0, Meta{}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := in.Next(t)
	text := got.Text(t)
	if msg, err := mail.ReadMessage(bytes.NewReader(got.Raw)); err != nil || msg.Header.Get("Subject") != "Your verification code" {
		t.Errorf("Subject: got %v (%v); want the configured one", msg, err)
	}
	code := codeFromText(t, text, 6)
	g, err := e.s.Verify(ctx0, alice, code, Meta{})
	if err != nil {
		t.Fatalf("Verify with the mailed code: %v", err)
	}
	if _, err := e.s.cfg.Tokens.Validate(ctx0, g.Token, alice); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
