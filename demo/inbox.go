package demo

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/stepgate/stepgate/challenge"
	"github.com/stepgate/stepgate/challenge/mailer"
	"github.com/stepgate/stepgate/respond"
)

//go:embed templates
var files embed.FS

// DefaultInboxSize is how many messages an Inbox keeps when asked for 0.
const DefaultInboxSize = 50

// Mail is one message in the inbox.
type Mail struct {
	Received time.Time
	To       string
	Subject  string
	Text     string
	// Code is the verification code found in Text, "" when none was found;
	// the page shows it large so nobody has to search the text.
	Code string
}

// Inbox is a challenge.Sender that keeps the last messages in memory and
// an http.Handler that shows them: the demo's stand-in for a mail server.
// It shows every user's codes to whoever can reach it, so it must never be
// mounted outside `stepgate demo`.
type Inbox struct {
	mu   sync.Mutex
	msgs []Mail // oldest first, at most max
	max  int

	page   *template.Template
	prefix string
	log    *slog.Logger
	now    func() time.Time
}

var (
	_ challenge.Sender = (*Inbox)(nil)
	_ http.Handler     = (*Inbox)(nil)
)

// NewInbox keeps the last size messages (0 means DefaultInboxSize). prefix
// is stepgate's reserved path, whose style.css the page uses; log receives
// template errors (nil means slog.Default()).
func NewInbox(size int, prefix string, log *slog.Logger) (*Inbox, error) {
	if size <= 0 {
		size = DefaultInboxSize
	}
	if log == nil {
		log = slog.Default()
	}
	t, err := template.ParseFS(files, "templates/inbox.html")
	if err != nil {
		return nil, err
	}
	return &Inbox{max: size, page: t, prefix: prefix, log: log, now: time.Now}, nil
}

// codeLine finds the code: the mail text puts it alone on an indented line.
var codeLine = regexp.MustCompile(`(?m)^\s+([0-9]{6,10})\s*$`)

// Send implements challenge.Sender. Like the real drivers it refuses a
// recipient that is not exactly one bare address.
func (i *Inbox) Send(ctx context.Context, m mailer.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a, err := mail.ParseAddress(m.To)
	if err != nil || a.Address != m.To || strings.ContainsAny(m.To, "\r\n") {
		return errors.New("inbox: recipient is not one bare address")
	}
	mm := Mail{Received: i.now(), To: m.To, Subject: m.Subject, Text: m.Text}
	if c := codeLine.FindStringSubmatch(m.Text); c != nil {
		mm.Code = c[1]
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if len(i.msgs) == i.max {
		i.msgs = append(i.msgs[:0], i.msgs[1:]...)
	}
	i.msgs = append(i.msgs, mm)
	return nil
}

// Messages returns the kept messages, newest first.
func (i *Inbox) Messages() []Mail {
	i.mu.Lock()
	defer i.mu.Unlock()
	out := make([]Mail, len(i.msgs))
	for k, m := range i.msgs {
		out[len(i.msgs)-1-k] = m
	}
	return out
}

// ServeHTTP renders the inbox, newest first, with stepgate's page headers
// (strict CSP, no-store: the page holds codes).
func (i *Inbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	respond.SecureHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	d := struct {
		Prefix   string
		Messages []Mail
	}{i.prefix, i.Messages()}
	var buf bytes.Buffer
	if err := i.page.ExecuteTemplate(&buf, "inbox", d); err != nil {
		i.log.Error("inbox: render", "err", err)
		http.Error(w, "page error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}
