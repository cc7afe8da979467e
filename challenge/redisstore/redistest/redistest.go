// Package redistest starts a real, throwaway redis-server for tests, the
// way net/http/httptest starts a real HTTP server. Tests that need Redis
// call Start; the server is killed when the test ends.
//
// When redis-server is not on PATH the test is skipped with a loud reason,
// unless STEPGATE_REQUIRE_REDIS=1, in which case it fails.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/proctest"
)

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// Config configures a server started by StartServer.
type Config struct {
	// Password sets requirepass. Empty means no password.
	Password string
	// AppendOnly turns on the append-only file with a sync after every
	// write (appendonly yes, appendfsync always), as
	// deploy/kubernetes/redis.yaml runs it, so that Restart keeps the
	// data. False means no persistence: Restart empties the server.
	AppendOnly bool
}

// Server is a running redis-server owned by one test.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string

	bin  string
	conf string
	dir  string
	port int
	cfg  Config

	mu     sync.Mutex // guards proc across Restart
	proc   *proctest.Process
	output *proctest.Buffer
}

// Start starts a redis-server without a password and returns its address.
func Start(t testing.TB) (addr string) {
	t.Helper()
	return StartServer(t, Config{}).Addr
}

// StartServer starts a redis-server on a free 127.0.0.1 port (with no
// persistence unless c.AppendOnly), waits until it answers PING and stops it in t.Cleanup.
func StartServer(t testing.TB, c Config) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		proctest.SkipOrFail(t, "STEPGATE_REQUIRE_REDIS", "redis-server not found in PATH: install it (apt-get install redis-server) to run the Redis tests")
	}
	// The free port is found by binding :0 and closing; another process
	// may take it before redis-server binds it, so a failed start retries
	// with a new port.
	var errs []error
	for range 3 {
		s, err := start(t, bin, c)
		if err == nil {
			return s
		}
		errs = append(errs, err)
	}
	t.Fatalf("redistest: starting redis-server: %v", errors.Join(errs...))
	return nil
}

func start(t testing.TB, bin string, c Config) (*Server, error) {
	port, err := proctest.FreePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	// The password goes in a 0600 config file rather than argv, where
	// every local user could read it with ps.
	conf := filepath.Join(dir, "redis.conf")
	var cfg strings.Builder
	if c.Password != "" {
		fmt.Fprintf(&cfg, "requirepass %q\n", c.Password)
	}
	if err := os.WriteFile(conf, []byte(cfg.String()), 0o600); err != nil {
		return nil, err
	}
	s := &Server{
		Addr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		bin:    bin,
		conf:   conf,
		dir:    dir,
		port:   port,
		cfg:    c,
		output: &proctest.Buffer{},
	}
	if err := s.launch(); err != nil {
		return nil, err
	}
	t.Cleanup(s.Stop)
	return s, nil
}

// launch starts the process on s's port and waits until it answers PING.
func (s *Server) launch() error {
	aof := "no"
	if s.cfg.AppendOnly {
		aof = "yes"
	}
	cmd := exec.Command(s.bin, s.conf,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", aof,
		"--appendfsync", "always",
		"--dir", s.dir,
	)
	cmd.Stdout, cmd.Stderr = s.output, s.output
	proc, err := proctest.Start(cmd)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.proc = proc
	s.mu.Unlock()
	if err := proc.WaitReady("redis-server on "+s.Addr, startTimeout, 10*time.Millisecond, func() error { return ping(s.Addr) }); err != nil {
		s.Stop()
		return fmt.Errorf("%w; output:\n%s", err, s.output.String())
	}
	return nil
}

// Restart kills the server (SIGKILL, as a crash or an OOM kill would) and
// starts it again on the same address and directory. Without AppendOnly it
// comes back empty, as a Redis without persistence does after a restart;
// with it, it comes back with every acknowledged write. Clients see their
// pooled connections closed.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	// The port was the old process's; another process may have taken it
	// in between, which fails the test rather than silently moving.
	if err := s.launch(); err != nil {
		t.Fatalf("redistest: restarting redis-server on %s: %v", s.Addr, err)
	}
}

// ping dials addr and pings it (Ping).
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	return Ping(conn)
}

// Ping sends an inline PING on conn (plain or TLS) and reads the reply,
// within a second. A server requiring a password answers -NOAUTH, which
// also shows it is up.
func Ping(conn net.Conn) error {
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
		return nil
	}
	return fmt.Errorf("unexpected reply %q", strings.TrimSpace(line))
}

// Stop kills the server and waits for it to exit. It is idempotent, so a
// test may stop the server early to see how clients fail.
func (s *Server) Stop() {
	s.mu.Lock()
	proc := s.proc
	s.mu.Unlock()
	proc.Stop(0)
}

// Output is what the server has logged so far, for test failure messages.
func (s *Server) Output() string { return s.output.String() }
