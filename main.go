// Command stepgate is a reverse proxy that enforces step-up authentication
// (SPEC §1). main only wires the process to run, which tests call directly.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	// The zone database, for ui.time_zone on images without one
	// (distroless).
	_ "time/tzdata"
)

func main() {
	// SIGTERM is how containers are stopped; both signals start a graceful
	// shutdown (SPEC §10).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], processEnv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stepgate:", err)
		os.Exit(1)
	}
}
