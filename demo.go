package main

import (
	"context"
	"errors"
	"io"
)

// runDemo runs `stepgate demo` (SPEC §2): the proxy, a sample upstream and a
// dev inbox with no setup. It is a stub until the demo lands.
func runDemo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return errors.New("demo: not yet implemented")
}
