// Package mailtest is for tests only: it starts a real, in-process SMTP
// server (emersion/go-smtp) on 127.0.0.1, the way net/http/httptest starts
// a real HTTP server, and hands each accepted message to the test. Tests
// use it instead of a mock mailer so that the SMTP sender is exercised end
// to end.
package mailtest

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// wait is how long Next waits for a message, and the server's read and
// write timeouts.
const wait = 10 * time.Second

// maxMessage bounds the DATA the server reads, so a runaway sender cannot
// exhaust the test's memory.
const maxMessage = 1 << 20

// queue is how many accepted messages may wait for the test.
const queue = 16

// Options configure Start.
type Options struct {
	// TLS enables STARTTLS with this configuration. Nil offers no
	// STARTTLS, and then AUTH is allowed over the clear connection.
	TLS *tls.Config
	// User and Password, when User is set, make the server advertise AUTH
	// PLAIN, accept only these credentials, and refuse MAIL FROM with 530
	// before authentication. An empty User offers no AUTH at all.
	User, Password string
}

// Message is one message the server accepted.
type Message struct {
	// From is the envelope sender (MAIL FROM).
	From string
	// To holds the envelope recipients (RCPT TO), in order.
	To []string
	// Raw is the message as sent in DATA (headers and body).
	Raw []byte
	// User is the authenticated user; "" without AUTH.
	User string
}

// Server is a running SMTP server. Each message is queued before the
// server answers 250 to DATA, so a message is waiting by the time the
// sender's Send has returned.
type Server struct {
	msgs chan Message
	opts Options
	addr *net.TCPAddr
}

// Start serves SMTP on 127.0.0.1:0 until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{msgs: make(chan Message, queue), opts: o}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{s: s}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = wait
	srv.WriteTimeout = wait
	srv.MaxMessageBytes = maxMessage
	srv.TLSConfig = o.TLS
	// Credentials in the clear only when the test did not ask for TLS;
	// with TLS, AUTH must come after STARTTLS (RFC 4954 §4).
	srv.AllowInsecureAuth = o.TLS == nil
	srv.ErrorLog = discard{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mailtest: listen: %v", err)
	}
	s.addr = ln.Addr().(*net.TCPAddr)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// Port returns the port the server listens on.
func (s *Server) Port() int { return s.addr.Port }

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.addr.String() }

// Next returns the next accepted message, waiting up to 10s for it.
func (s *Server) Next(t testing.TB) Message {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case m := <-s.msgs:
		return m
	case <-timer.C:
		t.Fatalf("mailtest: no mail received within %v", wait)
		return Message{}
	}
}

// None fails the test if a message is waiting. Sends are synchronous (the
// sender returns after the server accepted DATA), so a mail from a request
// that has already answered would be here.
func (s *Server) None(t testing.TB, why string) {
	t.Helper()
	select {
	case m := <-s.msgs:
		t.Errorf("%s: a mail was sent to %q; want none", why, m.To)
	default:
	}
}

var codeRe = regexp.MustCompile(`\b[0-9]{6}\b`)

// Code waits for the next message, checks that it went to exactly to, and
// returns the 6-digit code of its text/plain part. It fails the test if the
// text holds a link: SPEC §9 says the mail never contains a link that logs
// in.
func (s *Server) Code(t testing.TB, to string) string {
	t.Helper()
	m := s.Next(t)
	if len(m.To) != 1 || m.To[0] != to {
		t.Fatalf("mail went to %q; want [%s]", m.To, to)
	}
	text := m.Text(t)
	c := codeRe.FindString(text)
	if c == "" {
		t.Fatalf("no 6-digit code in the mail text:\n%s", text)
	}
	if strings.Contains(strings.ToLower(text), "http") {
		t.Errorf("mail contains a link (SPEC §9 forbids a link that logs in):\n%s", text)
	}
	return c
}

// Text returns the decoded text/plain part of the message: the body of a
// single-part message, or the first text/plain part of a multipart one.
// Quoted-printable and base64 transfer encodings are decoded.
func (m Message) Text(t testing.TB) string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
	if err != nil {
		t.Fatalf("parse mail: %v", err)
	}
	decode := func(cte string, r io.Reader) string {
		switch strings.ToLower(strings.TrimSpace(cte)) {
		case "quoted-printable":
			r = quotedprintable.NewReader(r)
		case "base64":
			r = base64.NewDecoder(base64.StdEncoding, r)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read mail body: %v", err)
		}
		return string(b)
	}
	mt, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if !strings.HasPrefix(mt, "multipart/") {
		return decode(msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no text/plain part: %v", err)
		}
		if pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); pt == "text/plain" {
			// multipart.Part already decodes quoted-printable and drops
			// the header; the switch above handles the rest.
			return decode(p.Header.Get("Content-Transfer-Encoding"), p)
		}
	}
}

// session is one SMTP connection's transaction state.
type session struct {
	s   *Server
	cur Message
}

// AuthMechanisms offers AUTH PLAIN only when Options.User is set.
func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.User == "" {
		return nil
	}
	return []string{sasl.Plain}
}

// Auth accepts only Options.User and Options.Password.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.s.opts.User == "" || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnsupported
	}
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != ss.s.opts.User || pass != ss.s.opts.Password {
			return errors.New("bad credentials")
		}
		ss.cur.User = user
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	// RFC 4954 §6: 530 when the server requires authentication.
	if ss.s.opts.User != "" && ss.cur.User == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	ss.cur.From = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.cur.To = append(ss.cur.To, to)
	return nil
}

// Data queues the message, or answers 452 when the queue is full, so a test
// that sends more than it reads gets a send error instead of a hung server.
func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, maxMessage))
	if err != nil {
		return err
	}
	m := ss.cur
	m.To = append([]string(nil), ss.cur.To...)
	m.Raw = b
	select {
	case ss.s.msgs <- m:
		return nil
	default:
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "test inbox full (" + strconv.Itoa(queue) + " messages unread)"}
	}
}

// Reset ends the transaction; the authenticated user stays, as AUTH holds
// for the whole connection (RFC 4954 §4).
func (ss *session) Reset() { ss.cur = Message{User: ss.cur.User} }

func (ss *session) Logout() error { return nil }

// discard drops the server's error log, which would otherwise print
// expected failures (closed connections, refused AUTH) into test output.
type discard struct{}

func (discard) Printf(string, ...any) {}
func (discard) Println(...any)        {}
