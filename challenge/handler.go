package challenge

import "net/http"

// handlerState is the Handler's parsed pages and routes, built once by
// initHandler, which New calls after validating the config.
type handlerState struct{}

// initHandler parses the pages (Config.Templates or the embedded ones).
func (s *Service) initHandler() error { panic("unimplemented") }

// Handler serves stepgate's pages and API; it expects the full path
// (with Prefix) and answers 404 outside it.
func (s *Service) Handler() http.Handler { panic("unimplemented") }

// SetCookie sets the second-factor cookie for g (SPEC §8 attributes).
func (s *Service) SetCookie(w http.ResponseWriter, g Grant) { panic("unimplemented") }
