package challenge

import (
	"context"
	"log/slog"

	"github.com/stepgate/stepgate/challenge/mailer"
	"github.com/stepgate/stepgate/identity"
)

// notify mails every address of id about a change to its second factors;
// a failure is logged, not returned (the change is done).
func (s *Service) notify(ctx context.Context, id identity.Identity, subject, text string) {
	text += "\n\nIf this was not you, contact your administrator at once: someone signed in as you has changed how you prove it's you.\n"
	for _, addr := range id.Emails {
		if mailer.CheckAddress(addr) != nil {
			continue
		}
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.mailTimeout)
		err := s.cfg.Sender.Send(mctx, mailer.Message{To: addr, Subject: subject, Text: text})
		cancel()
		if err != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "factor change notification not sent",
				slog.String("user", id.Subject), slog.String("error", err.Error()))
		}
	}
}
