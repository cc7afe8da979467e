// Package mailer sends the one-time-code mails: over SMTP (go-mail), as
// .eml files, or to the log; it is the only importer of go-mail.
package mailer

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	gomail "github.com/wneessen/go-mail"
)

// SMTPConfig configures the smtp mail driver.
type SMTPConfig struct {
	Host     string
	Port     int    // 0 means 587 for starttls, 465 for tls, 25 for none
	Username string // "" means no SMTP AUTH
	Password string
	// TLS is starttls (STARTTLS required, RFC 3207), tls (TLS from the
	// first byte, RFC 8314) or none (plain text; for a relay on the same
	// host or network only).
	TLS     string        // starttls | tls | none
	Timeout time.Duration // every SMTP call; 0 means 10s
	From    string
	// TLSConfig overrides the TLS client settings (for example a private
	// CA). Nil means the system roots, ServerName = Host, TLS 1.2 or later.
	TLSConfig *tls.Config
	// Logger receives the warnings of NewSMTPSender. Nil means slog.Default().
	Logger *slog.Logger
}

// SMTPSender sends mail with wneessen/go-mail. It opens one connection per
// message: codes are rare and a pooled connection would need keep-alive
// handling for little gain.
type SMTPSender struct {
	opts    []gomail.Option
	host    string
	from    string
	timeout time.Duration
}

// NewSMTPSender checks c and prepares the client options.
//
// Credentials are sent with AUTH PLAIN (RFC 4616), which go-mail only
// allows over TLS or to localhost. With tls: none and a username, the
// password would cross the network in clear text, so that combination is
// refused unless Host is a loopback address (a local relay), and even then
// it is logged as a warning.
func NewSMTPSender(c SMTPConfig) (*SMTPSender, error) {
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	if c.Host == "" {
		return nil, errors.New("mailer: no SMTP host")
	}
	if err := checkFrom(c.From); err != nil {
		return nil, err
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	tc := c.TLSConfig
	if tc == nil {
		tc = &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12}
	}
	opts := []gomail.Option{
		gomail.WithTimeout(c.Timeout),
		gomail.WithTLSConfig(tc),
	}
	port := c.Port
	switch c.TLS {
	case "starttls", "":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
		if port == 0 {
			port = 587
		}
	case "tls":
		opts = append(opts, gomail.WithSSL())
		if port == 0 {
			port = 465
		}
	case "none":
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
		if port == 0 {
			port = 25
		}
		if c.Username != "" {
			if !isLoopbackHost(c.Host) {
				return nil, fmt.Errorf("mailer: a username with TLS none would send the password in clear text to %s; use starttls or tls", c.Host)
			}
			log.Warn("mailer: authenticating without TLS to a loopback relay", slog.String("host", c.Host))
		}
	default:
		return nil, fmt.Errorf("mailer: TLS mode %q is not starttls, tls or none", c.TLS)
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("mailer: port %d out of range", port)
	}
	opts = append(opts, gomail.WithPort(port))
	if c.Username != "" {
		opts = append(opts,
			gomail.WithSMTPAuth(gomail.SMTPAuthPlain),
			gomail.WithUsername(c.Username),
			gomail.WithPassword(c.Password))
	}
	return &SMTPSender{opts: opts, host: c.Host, from: c.From, timeout: c.Timeout}, nil
}

// isLoopbackHost reports whether host names this machine.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkFrom accepts a From such as "stepgate <no-reply@example.com>".
func checkFrom(from string) error {
	if from == "" || strings.ContainsAny(from, "\r\n") {
		return errors.New("mailer: from address required, one line")
	}
	if err := gomail.NewMsg().From(from); err != nil {
		return fmt.Errorf("mailer: from address: %w", err)
	}
	return nil
}

// buildMsg builds a multipart/alternative message: text first, then HTML
// (RFC 2046 §5.1.4: the last part is the preferred one).
func buildMsg(from string, m Message) (*gomail.Msg, error) {
	if err := CheckAddress(m.To); err != nil {
		return nil, fmt.Errorf("recipient: %w", err)
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		return nil, errors.New("subject: more than one line")
	}
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := msg.From(from); err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	if err := msg.To(m.To); err != nil {
		return nil, fmt.Errorf("recipient: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	// RFC 3834 §5: automatic replies must not answer this message.
	msg.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

// Send delivers m. It returns when the server accepted the message,
// on error, or when ctx ends, whichever is first; the SMTP exchange itself
// is bounded by the configured timeout.
func (s *SMTPSender) Send(ctx context.Context, m Message) error {
	msg, err := buildMsg(s.from, m)
	if err != nil {
		return err
	}
	timeout := s.timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout <= 0 {
		return fmt.Errorf("smtp: %w", context.DeadlineExceeded)
	}
	opts := append(append([]gomail.Option(nil), s.opts...), gomail.WithTimeout(timeout))
	client, err := gomail.NewClient(s.host, opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- client.DialAndSendWithContext(ctx, msg) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("smtp: %w", err)
		}
		return nil
	case <-ctx.Done():
		// The goroutine ends at the latest when the connection deadline
		// (timeout) passes; the buffered channel lets it exit.
		return fmt.Errorf("smtp: %w", ctx.Err())
	}
}

// FileSender writes one .eml file per message into a directory.
type FileSender struct {
	dir  string
	from string
}

// NewFileSender creates dir (0700) when missing; files are 0600 since
// they hold codes.
func NewFileSender(dir, from string) (*FileSender, error) {
	if dir == "" {
		return nil, errors.New("mailer: no directory")
	}
	if err := checkFrom(from); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mailer: %w", err)
	}
	return &FileSender{dir: dir, from: from}, nil
}

// Send delivers m. Each file gets a unique name (time and 64 random
// bits) and is created exclusively, then renamed from a temporary name so
// that a reader never sees half a message.
func (f *FileSender) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	msg, err := buildMsg(f.from, m)
	if err != nil {
		return err
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	name := time.Now().UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(rnd[:]) + ".eml"
	tmp := filepath.Join(f.dir, "."+name+".tmp")
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("mail file: %w", err)
	}
	_, werr := msg.WriteTo(fh)
	cerr := fh.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mail file: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(f.dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mail file: %w", err)
	}
	return nil
}

// LogSender writes messages, codes included, to the log: local use only.
type LogSender struct {
	log  *slog.Logger
	from string
}

// NewLogSender logs a warning that codes will be logged.
func NewLogSender(log *slog.Logger, from string) *LogSender {
	if log == nil {
		log = slog.Default()
	}
	log.Warn("log mail driver prints codes; for local use only")
	return &LogSender{log: log, from: from}
}

// Send implements Sender: the message, code included, at WARN. This is the
// one place a code reaches a log (SPEC §9), which is why the driver warns
// at start.
func (l *LogSender) Send(ctx context.Context, m Message) error {
	if err := CheckAddress(m.To); err != nil {
		return fmt.Errorf("recipient: %w", err)
	}
	l.log.LogAttrs(ctx, slog.LevelWarn, "mail (log driver, local use only)",
		slog.String("from", l.from), slog.String("to", m.To),
		slog.String("subject", m.Subject), slog.String("text", m.Text))
	return nil
}

// Message is one mail.
type Message struct {
	To      string
	Subject string
	Text    string
	HTML    string
}

var errBadAddress = errors.New("address is not one plain mailbox")

// CheckAddress re-validates an address before any mail is built (SPEC §9):
// exactly one bare mailbox, no display name, no control characters (no
// CR/LF header injection), no list.
func CheckAddress(addr string) error {
	if addr == "" || len(addr) > 254 {
		return errBadAddress
	}
	for _, r := range addr {
		if r < 0x20 || r == 0x7f || r == ',' || r == ';' || r == '<' || r == '>' || unicode.IsSpace(r) {
			return errBadAddress
		}
	}
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Name != "" || a.Address != addr {
		return errBadAddress
	}
	return nil
}
