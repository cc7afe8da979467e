// Command memstore-rss measures, end to end, the memory a stepgate with the
// embedded store takes for many users with a pending code: it starts a real
// `stepgate serve` (memory store, log mail driver, the default runtime
// settings), sends -n codes through the JSON API (POST
// /.stepup/api/email-otp), each for another user with its own HS256 access
// token — so that everything a real send leaves behind counts: the pending
// code, the send throttle, the cached identity — and prints the process's
// resident memory from /proc/PID/status (Linux only).
//
//	go run ./bench/memstore-rss                 # -n 100000, builds stepgate from this repo
//	go run ./bench/memstore-rss -stepgate ./stepgate -n 200000
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "memstore-rss:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("memstore-rss", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 100_000, "users, each sent one code through the API")
	bin := fs.String("stepgate", "", "stepgate binary (default: go build . into a temporary directory)")
	workers := fs.Int("c", 16, "concurrent API clients")
	extra := fs.String("config", "", "YAML appended to the generated config (e.g. a runtime: section)")
	gctrace := fs.String("gctrace", "", "write stepgate's GODEBUG=gctrace=1 lines to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *workers < 1 {
		return errors.New("-n and -c: want at least 1")
	}
	dir, err := os.MkdirTemp("", "memstore-rss")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *bin == "" {
		*bin = filepath.Join(dir, "stepgate")
		build := exec.Command("go", "build", "-o", *bin, ".")
		build.Stdout, build.Stderr = stderr, stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build . (run from the repository root): %w", err)
		}
	}

	secret := randomHex(32)
	port, admin := freePort(), freePort()
	cfg := fmt.Sprintf(`server:
  listen: "127.0.0.1:%d"
  admin_listen: "127.0.0.1:%d"
  public_url: "http://127.0.0.1:%d"
upstream:
  url: "http://127.0.0.1:9"
identity:
  login_url: ""
  jwt:
    hmac_secret: %q
second_factor:
  secret: %q
  cookie: stepgate
mail:
  driver: log
store:
  driver: memory
log:
  level: error
policies:
  default: authenticate
  rules:
    - {name: public, paths: ["/public/**"], action: allow}
%s`, port, admin, port, secret, randomHex(32), *extra)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(*bin, "serve", "-config", cfgPath)
	// The log mail driver writes every code (at warn) to stderr.
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no STEPGATE_* from the caller
	if *gctrace != "" {
		// stderr also carries the log mail driver's codes: keep only the
		// collector's lines.
		f, err := os.Create(*gctrace)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd.Env = append(cmd.Env, "GODEBUG=gctrace=1")
		pr, pw := io.Pipe()
		cmd.Stderr = pw
		go func() {
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "gc ") {
					fmt.Fprintln(f, sc.Text())
				}
			}
		}()
		defer pw.Close()
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitHealthy(fmt.Sprintf("http://127.0.0.1:%d/healthz", admin)); err != nil {
		return err
	}
	before, err := procStatus(cmd.Process.Pid)
	if err != nil {
		return err
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *workers}}
	var next, failed atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	exp := time.Now().Add(time.Hour).Unix()
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(*n) {
					return
				}
				if err := send(client, base, secret, i, exp); err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d sends failed, the first: %w", f, *n, firstErr)
	}
	// Let the runtime settle (a collection, the scavenger) as it would
	// between bursts, then read the process's memory.
	time.Sleep(2 * time.Second)
	after, err := procStatus(cmd.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "users (codes sent through the API): %d in %.1fs\n", *n, elapsed.Seconds())
	fmt.Fprintf(stdout, "VmRSS before:                       %d kB\n", before["VmRSS"])
	fmt.Fprintf(stdout, "VmRSS after:                        %d kB (%.1f MiB)\n", after["VmRSS"], float64(after["VmRSS"])/1024)
	fmt.Fprintf(stdout, "VmHWM (peak RSS):                   %d kB (%.1f MiB)\n", after["VmHWM"], float64(after["VmHWM"])/1024)
	fmt.Fprintf(stdout, "peak RSS growth per user:           %.0f bytes\n", float64(after["VmHWM"]-before["VmRSS"])*1024/float64(*n))
	return nil
}

// send asks for a code for user i.
func send(c *http.Client, base, secret string, i, exp int64) error {
	sub := "user" + strconv.FormatInt(i, 10)
	at, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "sid": "s" + sub, "email": sub + "@example.com", "exp": exp,
	}).SignedString([]byte(secret))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(context.Background(), "POST", base+"/.stepup/api/email-otp", strings.NewReader(`{"index":0}`))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+at)
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("user %d: %s %s", i, res.Status, bytes.TrimSpace(body))
	}
	return nil
}

func waitHealthy(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("stepgate did not become healthy within 30s")
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// procStatus reads the kB fields of /proc/PID/status.
func procStatus(pid int) (map[string]int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, fmt.Errorf("needs Linux /proc: %w", err)
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !strings.HasSuffix(v, " kB") {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, " kB")), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, sc.Err()
}
