package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serverConfig is a runnable config whose server section has the extra
// lines given (indented by two spaces) and whose paths are all allowed.
func serverConfig(upstream, timeout string, server ...string) string {
	return baseSections + `
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
` + "  " + strings.Join(server, "\n  ") + `
upstream:
  url: ` + upstream + `
  timeout: ` + timeout + `
policies:
  default: allow
  rules:
    - name: x
      paths: ["/x"]
      action: allow
`
}

// rawGet sends a GET for path on conn and reads the response.
func rawGet(t *testing.T, conn net.Conn, br *bufio.Reader, path string) (*http.Response, string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: app.example.com\r\n\r\n", path); err != nil {
		t.Fatalf("write: %v", err)
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

// TestShutdownDelayOrder checks the order of events on SIGTERM with
// server.shutdown_delay (SPEC §13): /readyz fails at once; for the delay
// the proxy still accepts and serves new connections; then it stops
// accepting, and a request that started during the delay drains.
func TestShutdownDelayOrder(t *testing.T) {
	const delay = 1500 * time.Millisecond
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "upstream")
	}))
	t.Cleanup(up.Close)
	path := writeConfig(t, serverConfig(up.URL, "30s", "shutdown_delay: "+delay.String(), "shutdown_grace: 10s"))
	s := startOps(t, path, noEnv)
	if r, _ := do(t, "GET", "http://"+s.admin+"/readyz", nil, nil); r.StatusCode != 200 {
		t.Fatalf("readyz before SIGTERM: got %d; want 200", r.StatusCode)
	}

	stopped := make(chan error, 1)
	sigterm := time.Now()
	go func() { stopped <- s.stop() }()

	// 1. Readiness fails at once.
	waitFor(t, 5*time.Second, "readyz to fail", func() bool {
		r, err := http.Get("http://" + s.admin + "/readyz")
		if err != nil {
			t.Fatalf("readyz during the delay: %v; want a 503 answer, the admin port still serving", err)
		}
		r.Body.Close()
		return r.StatusCode == http.StatusServiceUnavailable
	})
	notReady := time.Since(sigterm)
	if notReady > delay/2 {
		t.Errorf("readyz failed %v after SIGTERM; want at once (well before the %v delay)", notReady, delay)
	}

	// 2. New connections are still accepted and served during the delay.
	conn, err := net.Dial("tcp", s.listen)
	if err != nil {
		t.Fatalf("dial during the delay (%v after SIGTERM): %v; want accepted", time.Since(sigterm), err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	if res, body := rawGet(t, conn, br, "/x"); res.StatusCode != 200 || body != "upstream" {
		t.Fatalf("request on a new connection during the delay: got %d %q; want 200 upstream", res.StatusCode, body)
	}
	served := time.Since(sigterm)
	if served >= delay {
		t.Fatalf("the check ran %v after SIGTERM, past the delay; the machine is too slow for this test", served)
	}
	// A request that starts during the delay and outlives it.
	slow := make(chan string, 1)
	go func() {
		r, err := http.Get("http://" + s.listen + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		slow <- strconv.Itoa(r.StatusCode) + " " + string(b)
	}()
	<-started

	// 3. After the delay, new connections are refused.
	waitFor(t, delay+5*time.Second, "the proxy port to stop accepting", func() bool {
		c, err := net.DialTimeout("tcp", s.listen, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	refused := time.Since(sigterm)
	if refused < delay {
		t.Errorf("new connections refused %v after SIGTERM; want no sooner than the %v delay", refused, delay)
	}

	// 4. The request in flight drains.
	close(release)
	if got := <-slow; got != "200 upstream" {
		t.Errorf("request in flight across the delay: got %q; want 200 upstream", got)
	}
	if err := <-stopped; err != nil {
		t.Errorf("serve: %v", err)
	}
	t.Logf("readyz 503 after %v, new connection served after %v, refused after %v (delay %v)", notReady, served, refused, delay)
}

// TestMaxConnections: with server.max_connections open, another
// connection is answered 503 (Retry-After, Connection: close) and closed;
// once one closes, a new one is served again (SPEC §13).
func TestMaxConnections(t *testing.T) {
	up := newUpstream(t)
	const max = 3
	s := startOps(t, writeConfig(t, serverConfig(up.URL, "30s", "max_connections: "+strconv.Itoa(max))), noEnv)
	var open []net.Conn
	for i := range max {
		c, err := net.Dial("tcp", s.listen)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if res, _ := rawGet(t, c, bufio.NewReader(c), "/x"); res.StatusCode != 200 {
			t.Fatalf("connection %d: got %d; want 200", i+1, res.StatusCode)
		}
		open = append(open, c)
	}

	extra, err := net.Dial("tcp", s.listen)
	if err != nil {
		t.Fatalf("dial beyond the limit: %v; want accepted and answered", err)
	}
	defer extra.Close()
	res, body := rawGet(t, extra, bufio.NewReader(extra), "/x")
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || !res.Close {
		t.Fatalf("connection beyond max_connections: got %d %q (Retry-After %q, close %v); want 503 with Retry-After, closed",
			res.StatusCode, body, res.Header.Get("Retry-After"), res.Close)
	}
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := extra.Read(make([]byte, 1)); err == nil {
		t.Errorf("refused connection still open (read %d bytes); want closed", n)
	}
	if v := metricValue(scrape(t, s.admin), "stepgate_connections_refused_total"); v < 1 {
		t.Errorf("stepgate_connections_refused_total: got %v; want >= 1", v)
	}

	open[0].Close()
	waitFor(t, 5*time.Second, "a free slot after a close", func() bool {
		c, err := net.Dial("tcp", s.listen)
		if err != nil {
			return false
		}
		defer c.Close()
		res, _ := rawGet(t, c, bufio.NewReader(c), "/x")
		return res.StatusCode == 200
	})
}

// uploadUpstream answers 200 with the number of body bytes it read, or 400
// when the body broke off; each outcome is also sent on got.
func uploadUpstream(t *testing.T) (*httptest.Server, chan string) {
	t.Helper()
	got := make(chan string, 8)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			got <- "broken after " + strconv.FormatInt(n, 10)
			http.Error(w, "broken body", http.StatusBadRequest)
			return
		}
		got <- "read " + strconv.FormatInt(n, 10)
		fmt.Fprint(w, n)
	}))
	t.Cleanup(up.Close)
	return up, got
}

// upload POSTs n chunks of size bytes to /upload over conn, one every
// gap; after stallAfter chunks (if > 0) it stops sending. It returns the
// response, or the error that ended the exchange.
func upload(conn net.Conn, n, size int, gap time.Duration, stallAfter int) (*http.Response, string, error) {
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: app.example.com\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", n*size)
	chunk := bytes.Repeat([]byte{'u'}, size)
	tick := time.NewTicker(gap)
	defer tick.Stop()
	for i := range n {
		if stallAfter > 0 && i == stallAfter {
			break
		}
		if i > 0 {
			<-tick.C // the client's pace
		}
		if _, err := conn.Write(chunk); err != nil {
			break
		}
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, "", err
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b), nil
}

// TestUploadTimeouts runs uploads through the real server (SPEC §13):
// upstream.timeout never counts the client's upload; read_idle_timeout
// cuts a stalled one; read_timeout bounds the whole request.
func TestUploadTimeouts(t *testing.T) {
	up, got := uploadUpstream(t)
	const n, size, gap = 16, 4096, 100 * time.Millisecond // 1.5s, 64 KiB
	tests := []struct {
		name    string
		server  []string
		stall   int
		status  int    // 200, or 408 when a response can be read at all (the client may see a reset)
		upSaw   string // what the upstream saw
		minTook time.Duration
		maxTook time.Duration
	}{
		{name: "steady upload 5x upstream.timeout", server: []string{"read_timeout: 0s", "read_idle_timeout: 300ms"},
			status: 200, upSaw: "read " + strconv.Itoa(n*size), minTook: 1400 * time.Millisecond, maxTook: 10 * time.Second},
		{name: "stalled upload cut by read_idle_timeout", server: []string{"read_timeout: 0s", "read_idle_timeout: 300ms"}, stall: 4,
			status: 408, upSaw: "broken after " + strconv.Itoa(4*size), minTook: 600 * time.Millisecond, maxTook: 5 * time.Second},
		{name: "steady upload beyond read_timeout is cut", server: []string{"read_timeout: 700ms", "read_idle_timeout: 30s"},
			status: 408, minTook: 600 * time.Millisecond, maxTook: 5 * time.Second},
		{name: "stalled upload cut by read_timeout alone", server: []string{"read_timeout: 700ms", "read_idle_timeout: 0s"}, stall: 2,
			status: 408, minTook: 600 * time.Millisecond, maxTook: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startOps(t, writeConfig(t, serverConfig(up.URL, "300ms", tt.server...)), noEnv)
			conn, err := net.Dial("tcp", s.listen)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			res, body, err := upload(conn, n, size, gap, tt.stall)
			took := time.Since(start)
			switch {
			case tt.status == 200:
				if err != nil || res.StatusCode != 200 || body != strconv.Itoa(n*size) {
					t.Fatalf("after %v: got %v %q (%v); want 200 %d", took, res, body, err, n*size)
				}
			case err == nil && res.StatusCode != tt.status:
				t.Fatalf("after %v: got %d %q; want %d (the upload cut)", took, res.StatusCode, body, tt.status)
			}
			if took < tt.minTook || took > tt.maxTook {
				t.Errorf("the exchange took %v; want %v..%v", took, tt.minTook, tt.maxTook)
			}
			if tt.upSaw != "" {
				select {
				case saw := <-got:
					if saw != tt.upSaw {
						t.Errorf("upstream: %s; want %s", saw, tt.upSaw)
					}
				case <-time.After(5 * time.Second):
					t.Errorf("upstream saw nothing; want %s", tt.upSaw)
				}
			}
			// Drain what the upstream saw so the next case starts clean.
			for len(got) > 0 {
				<-got
			}
			t.Logf("%s: %v (err %v)", tt.name, took, err)
		})
	}
}

// TestServerKeysValidated: the new server keys refuse what would leave a
// request unbounded or make no sense.
func TestServerKeysValidated(t *testing.T) {
	tests := []struct {
		lines []string
		key   string
	}{
		{[]string{"shutdown_delay: -1s"}, "server.shutdown_delay"},
		{[]string{"read_timeout: -1s"}, "server.read_timeout"},
		{[]string{"read_idle_timeout: -1s"}, "server.read_idle_timeout"},
		{[]string{"read_timeout: 0s", "read_idle_timeout: 0s"}, "server.read_idle_timeout"},
		{[]string{"max_connections: 0"}, "server.max_connections"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.lines, ","), func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, serverConfig("http://127.0.0.1:1", "30s", tt.lines...)), noEnv)
			if err == nil || !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("got %v; want a problem at %s", err, tt.key)
			}
		})
	}
	cfg, err := loadConfig(writeConfig(t, serverConfig("http://127.0.0.1:1", "30s", "read_timeout: 0s")), noEnv)
	if err != nil {
		t.Fatalf("read_timeout 0 with the default read_idle_timeout: %v; want accepted (long uploads)", err)
	}
	if s := cfg.Server; s.ShutdownDelay != 0 || s.ReadIdleTimeout != 30*time.Second || s.MaxConnections != 10000 {
		t.Errorf("defaults: shutdown_delay %v, read_idle_timeout %v, max_connections %d; want 0, 30s, 10000",
			s.ShutdownDelay, s.ReadIdleTimeout, s.MaxConnections)
	}
}
