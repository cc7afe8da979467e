// Package pgtest starts a real, throwaway PostgreSQL server for tests, the
// way redistest starts redis-server: Debian's postgresql package
// (/usr/lib/postgresql/N/bin), a fresh data directory under the system
// temp dir, a free 127.0.0.1 port, no durability, stopped and removed when
// the test ends. PostgreSQL refuses to run as root, so as root the server
// runs as the "postgres" user the package creates.
//
// When no PostgreSQL binaries are found the test is skipped with a loud
// reason, unless STEPGATE_REQUIRE_POSTGRES=1, in which case it fails.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stepgate/stepgate/internal/proctest"
)

// startTimeout bounds initdb plus the server's start.
const startTimeout = 60 * time.Second

// Server is a running PostgreSQL owned by one test.
type Server struct {
	// DSN connects as the superuser "postgres" to the database "postgres".
	DSN  string
	Port int

	proc   *proctest.Process
	output *proctest.Buffer
}

// Start starts a server and stops it in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := findBin()
	if err != nil {
		proctest.SkipOrFail(t, "STEPGATE_REQUIRE_POSTGRES", err.Error()+": install it (apt-get install postgresql) to run the PostgreSQL tests")
	}
	cred, err := credential()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	dir, err := os.MkdirTemp("", "stepgate-pgtest-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	data := filepath.Join(dir, "data")
	var out proctest.Buffer
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = procAttr(cred)
	proctest.DieWithTest(initdb)
	initdb.Stdout, initdb.Stderr = &out, &out
	if err := initdb.Run(); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out.String())
	}
	var errs []error
	for range 3 {
		s, err := start(t, bin, dir, data, cred)
		if err == nil {
			return s
		}
		errs = append(errs, err)
	}
	t.Fatalf("pgtest: starting postgres: %v", errors.Join(errs...))
	return nil
}

func start(t testing.TB, bin, dir, data string, cred *syscall.Credential) (*Server, error) {
	port, err := proctest.FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+dir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=100",
	)
	cmd.Dir = dir
	cmd.SysProcAttr = procAttr(cred)
	out := &proctest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	proc, err := proctest.Start(cmd)
	if err != nil {
		return nil, err
	}
	s := &Server{
		DSN:    fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		Port:   port,
		proc:   proc,
		output: out,
	}
	if err := proc.WaitReady("postgres", startTimeout, 20*time.Millisecond, s.ping); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w; output:\n%s", err, out.String())
	}
	t.Cleanup(s.Stop)
	return s, nil
}

// NewDatabase creates a fresh, empty database and returns its DSN, so that
// tests needing an empty schema share one server.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, name)
}

// Exec runs one statement on the database at dsn (for tests that set up
// what a newer binary would have left).
func Exec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// ping connects and pings once, for WaitReady.
func (s *Server) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// Stop shuts the server down (fast shutdown, then a kill) and waits for it
// to exit. It is idempotent, so a test may stop the database early to see
// how stepgate behaves without it.
func (s *Server) Stop() { s.proc.Stop(10 * time.Second) }

// Output is what the server has logged so far.
func (s *Server) Output() string { return s.output.String() }

// findBin returns the directory holding initdb and postgres: the newest
// /usr/lib/postgresql/N/bin, else PATH.
func findBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
				return d, nil
			}
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or PATH")
}

// credential is nil when not root, else the postgres user's.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and there is no postgres user to run the server as: %w", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
