// Package proctest runs a real server binary for one test, the way
// net/http/httptest runs a real HTTP server: what redistest (redis-server)
// and pgtest (PostgreSQL) share. It finds a free loopback port, starts the
// process so that it dies with the test binary, collects its output, polls
// it until it is ready and stops it exactly once. What the server is, how
// it is configured and how readiness is probed stay with each caller.
package proctest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SkipOrFail ends t because a binary it needs is missing (missing says
// which, and how to install it): a loud skip, or a failure when the
// environment variable env is "1" (STEPGATE_REQUIRE_REDIS, ...), as CI
// sets it.
func SkipOrFail(t testing.TB, env, missing string) {
	t.Helper()
	if os.Getenv(env) == "1" {
		t.Fatalf("%s=1 but %s", env, missing)
	}
	t.Skipf("!!! SKIPPING: %s; set %s=1 to make this a failure !!!", missing, env)
}

// FreePort returns a 127.0.0.1 port that was free a moment ago. Another
// process may take it before the server binds it, so callers retry a
// failed start with a new port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Process is a started server process.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

// Start starts cmd (see DieWithTest) and reaps it when it exits.
func Start(cmd *exec.Cmd) (*Process, error) {
	DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", cmd.Path, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop ends the process and waits for it to exit: with grace zero a
// SIGKILL (as a crash or an OOM kill would), else SIGINT and a SIGKILL if
// it has not exited after grace. It is idempotent, so a test may stop a
// server early to see how clients fail.
func (p *Process) Stop(grace time.Duration) {
	p.once.Do(func() {
		if grace <= 0 {
			_ = p.cmd.Process.Kill()
			<-p.done
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// WaitReady calls ready every interval until it returns nil, the process
// exits, or timeout passes; name (the server's) is for the error.
func (p *Process) WaitReady(name string, timeout, interval time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w", name, timeout, err)
		}
		select {
		case <-p.done:
			return errors.New(name + " exited before it was ready")
		case <-tick.C:
		}
	}
}

// Buffer is a bytes.Buffer safe for the process's writer goroutines and a
// reading test at once: a server's output, for failure messages.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
