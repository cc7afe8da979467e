package challenge

import (
	"log/slog"
	"time"
)

// SMTPConfig configures the smtp mail driver.
type SMTPConfig struct {
	Host     string
	Port     int
	Username string
	Password string
	TLS      string        // starttls | tls | none
	Timeout  time.Duration // every SMTP call; 0 means 10s
	From     string
}

// SMTPSender sends mail with wneessen/go-mail.
type SMTPSender struct{}

func NewSMTPSender(c SMTPConfig) (*SMTPSender, error) { panic("unimplemented") }

// FileSender writes one .eml file per message into a directory.
type FileSender struct{}

func NewFileSender(dir, from string) (*FileSender, error) { panic("unimplemented") }

// LogSender writes messages, codes included, to the log: local use only.
type LogSender struct{}

// NewLogSender logs a warning that codes will be logged.
func NewLogSender(log *slog.Logger, from string) *LogSender { panic("unimplemented") }
