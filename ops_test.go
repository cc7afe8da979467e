package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stepgate/stepgate/internal/proctest"
)

// opsServer is serveWith running in the test process, with its JSON log
// captured and its reload trigger in the test's hands.
type opsServer struct {
	listen, admin string
	logs          *proctest.Buffer
	trigger       chan struct{}
	stop          func() error
	done          chan error
}

// startOps loads path with getenv and runs serveWith until the test ends.
func startOps(t *testing.T, path string, getenv func(string) string) *opsServer {
	t.Helper()
	cfg, err := loadConfig(path, getenv)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	s := &opsServer{logs: &proctest.Buffer{}, trigger: make(chan struct{}, 1), done: make(chan error, 1)}
	cfg.Log.Format = "json" // the tests read the log
	logger, level := newLogger(cfg.Log, s.logs)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		s.done <- serveWith(ctx, serveOptions{
			cfg: cfg, path: path, getenv: getenv, logger: logger, level: level, reload: s.trigger,
		})
	}()
	var stopped bool
	var stopErr error
	s.stop = func() error {
		if stopped {
			return stopErr
		}
		stopped = true
		cancel()
		select {
		case stopErr = <-s.done:
		case <-time.After(30 * time.Second):
			stopErr = fmt.Errorf("serve did not stop after cancel")
		}
		return stopErr
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	waitFor(t, 10*time.Second, "start-up line", func() bool {
		select {
		case err := <-s.done:
			t.Fatalf("serve ended early: %v\n%s", err, s.logs.String())
		default:
		}
		for _, rec := range logRecords(t, s.logs.String()) {
			if rec["msg"] == "stepgate started" {
				s.listen, _ = rec["listen"].(string)
				s.admin, _ = rec["admin_listen"].(string)
				return true
			}
		}
		return false
	})
	return s
}

// waitFor polls cond every 10ms until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}

// logRecords parses a JSON log, one object per line.
func logRecords(t *testing.T, text string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// scrape GETs the admin /metrics.
func scrape(t *testing.T, admin string) string {
	t.Helper()
	code, body := httpGet(t, "http://"+admin+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	return body
}

// metricValue returns the value of the series written exactly as series
// (name{labels} with labels sorted, as client_golang writes them), or -1.
func metricValue(body, series string) float64 {
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return -1
			}
			return f
		}
	}
	return -1
}

// accessToken signs a primary identity as the configured IdP would.
func accessToken(t *testing.T, sub, email, sid string) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "email": email, "sid": sid,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}).SignedString([]byte(testHMACSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// do sends one request through the proxy and returns the response with
// its body read.
func do(t *testing.T, method, u string, body io.Reader, h map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "ops-test/1.0")
	for k, v := range h {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(b)
}

var (
	mailCodeRe = regexp.MustCompile(`is:\s+([0-9]{6})`)
	csrfRe     = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// mailedCode reads the code of the only .eml in dir.
func mailedCode(t *testing.T, dir string) string {
	t.Helper()
	var code string
	waitFor(t, 5*time.Second, "the mailed code", func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		if len(files) != 1 {
			return false
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			return false
		}
		m := mailCodeRe.FindSubmatch(b)
		if m == nil {
			return false
		}
		code = string(m[1])
		return true
	})
	return code
}

// flowConfig is a server on free ports in front of upstream, mailing into
// mailDir, with debug logging so that even debug lines are checked for
// secrets.
func flowConfig(upstream, mailDir string) string {
	return `
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
upstream:
  url: ` + upstream + `
identity:
  login_url: ""
  jwt:
    hmac_secret: "` + testHMACSecret + `"
second_factor:
  secret: "` + testSecret + `"
mail:
  driver: file
  file: { dir: "` + mailDir + `" }
log:
  level: debug
  access: true
policies:
  rules:
    - name: public
      paths: ["/public/**"]
      action: allow
    - name: blocked
      paths: ["/blocked/**"]
      action: deny
    - name: admin
      paths: ["/admin/**"]
      action: step_up
`
}

// TestMetricsAndAuditFlow runs a whole flow through the real servers —
// allowed, denied, refused, unauthenticated, challenged, a code sent, a
// wrong and a right code, a forwarded step-up request, a sign-out — then
// checks the counters on the admin /metrics and the audit records of the
// JSON log, and that no code, token or cookie value was logged.
func TestMetricsAndAuditFlow(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "upstream "+r.URL.Path)
	}))
	defer upstream.Close()
	mailDir := t.TempDir()
	s := startOps(t, writeConfig(t, flowConfig(upstream.URL, mailDir)), noEnv)
	base := "http://" + s.listen
	access := accessToken(t, "alice", "alice@example.com", "sess-1")
	bearer := map[string]string{"Authorization": "Bearer " + access}

	steps := []struct {
		name, method, path string
		h                  map[string]string
		want               int
	}{
		{"allowed", "GET", "/public/a", nil, 200},
		{"denied", "GET", "/blocked/x", nil, 403},
		{"refused", "GET", "/a%2Fb", nil, 400},
		{"unauthenticated", "GET", "/admin/x", nil, 401},
		{"challenged", "GET", "/admin/x", bearer, 401},
	}
	for _, st := range steps {
		if resp, body := do(t, st.method, base+st.path, nil, st.h); resp.StatusCode != st.want {
			t.Fatalf("%s: got %d %q; want %d", st.name, resp.StatusCode, body, st.want)
		}
	}

	jsonBearer := map[string]string{"Authorization": "Bearer " + access, "Content-Type": "application/json"}
	sendResp, body := do(t, "POST", base+"/.stepup/api/email-otp", strings.NewReader(`{"index":0}`), jsonBearer)
	if sendResp.StatusCode != 200 {
		t.Fatalf("send: got %d %q", sendResp.StatusCode, body)
	}
	code := mailedCode(t, mailDir)
	n, _ := strconv.Atoi(code)
	wrong := fmt.Sprintf("%06d", (n+1)%1000000)
	if resp, body := do(t, "PUT", base+"/.stepup/api/email-otp", strings.NewReader(`{"otp":"`+wrong+`"}`), jsonBearer); resp.StatusCode != 401 {
		t.Fatalf("wrong code: got %d %q; want 401", resp.StatusCode, body)
	}
	resp, body := do(t, "PUT", base+"/.stepup/api/email-otp", strings.NewReader(`{"otp":"`+code+`"}`), jsonBearer)
	if resp.StatusCode != 200 {
		t.Fatalf("right code: got %d %q", resp.StatusCode, body)
	}
	var verified struct{ SecondFactorAuthenticationToken string }
	if err := json.Unmarshal([]byte(body), &verified); err != nil || verified.SecondFactorAuthenticationToken == "" {
		t.Fatalf("verify body %q: %v", body, err)
	}
	token := verified.SecondFactorAuthenticationToken
	if resp, body := do(t, "GET", base+"/admin/x", nil, map[string]string{
		"Authorization": "Bearer " + access, "X-Second-Factor-Token": token}); resp.StatusCode != 200 || body != "upstream /admin/x" {
		t.Fatalf("with second factor: got %d %q; want 200 from the upstream", resp.StatusCode, body)
	}

	// Sign out in the browser: the status page's CSRF token, then POST.
	browser := map[string]string{"Authorization": "Bearer " + access, "Accept": "text/html", "Cookie": "stepgate=" + token}
	_, page := do(t, "GET", base+"/.stepup/", nil, browser)
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("status page has no CSRF token:\n%s", page)
	}
	csrf := m[1]
	form := url.Values{"csrf": {csrf}, "rd": {"/"}}.Encode()
	browser["Content-Type"] = "application/x-www-form-urlencoded"
	if resp, body := do(t, "POST", base+"/.stepup/logout", strings.NewReader(form), browser); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: got %d %q; want 303", resp.StatusCode, body)
	}

	// SPEC §3: the metrics page is never served on the proxy port.
	if resp, body := do(t, "GET", base+"/metrics", nil, nil); resp.StatusCode == 200 || strings.Contains(body, "stepgate_") || strings.Contains(body, "# HELP") {
		t.Errorf("proxy port /metrics: got %d %q; want the policy's answer, not the metrics page", resp.StatusCode, body)
	}

	metrics := scrape(t, s.admin)
	for _, tc := range []struct {
		series string
		want   float64
	}{
		{`stepgate_requests_total{decision="forwarded",rule="public"}`, 1},
		{`stepgate_requests_total{decision="denied",rule="blocked"}`, 1},
		{`stepgate_requests_total{decision="rejected",rule="none"}`, 1},
		{`stepgate_requests_total{decision="unauthenticated",rule="admin"}`, 1},
		{`stepgate_requests_total{decision="challenged",rule="admin"}`, 1},
		{`stepgate_requests_total{decision="forwarded",rule="admin"}`, 1},
		{`stepgate_requests_total{decision="unauthenticated",rule="default"}`, 1}, // proxy /metrics
		{`stepgate_otp_sent_total{result="ok"}`, 1},
		{`stepgate_otp_sent_total{result="throttled"}`, 0},
		{`stepgate_otp_verify_total{result="invalid"}`, 1},
		{`stepgate_otp_verify_total{result="ok"}`, 1},
		{`stepgate_otp_verify_total{result="locked"}`, 0},
		{`stepgate_upstream_duration_seconds_count`, 2},
		{`stepgate_http_responses_total{code="400"}`, 1},
		{`stepgate_http_responses_total{code="403"}`, 1},
		{`stepgate_config_reloads_total{result="success"}`, 0},
		{`stepgate_config_reloads_total{result="error"}`, 0},
		{fmt.Sprintf(`stepgate_build_info{goversion=%q,version=%q}`, runtime.Version(), version), 1},
	} {
		if got := metricValue(metrics, tc.series); got != tc.want {
			t.Errorf("%s: got %v; want %v", tc.series, got, tc.want)
		}
	}
	if v := metricValue(metrics, "stepgate_config_last_reload_success_timestamp_seconds"); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last reload success timestamp: got %v; want the start time", v)
	}
	for _, name := range []string{"go_goroutines ", "process_resident_memory_bytes ", "stepgate_upstream_duration_seconds_bucket{le=\"0.005\"} "} {
		if !strings.Contains(metrics, "\n"+name) {
			t.Errorf("metrics lack %q", name)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("/metrics (stepgate_ lines):\n%s", grepLines(metrics, "stepgate_"))
	}

	logs := s.logs.String()
	// SPEC §9: no code, token or cookie value in any log line, debug
	// included.
	for what, secret := range map[string]string{
		"code": code, "second-factor token": token, "access token": access, "csrf token": csrf,
		"token signature": token[strings.LastIndexByte(token, '.')+1:],
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains the %s", what)
		}
	}
	wantEvents := map[string]struct{ user, rule, outcome string }{
		"denied":           {"", "blocked", "denied"},
		"request_refused":  {"", "none", "rejected"},
		"step_up_required": {"alice", "admin", "challenged"},
		"code_sent":        {"alice", "", "ok"},
		"code_failed":      {"alice", "", "invalid"},
		"code_verified":    {"alice", "", "ok"},
		"token_revoked":    {"alice", "", "ok"},
	}
	seen := map[string]int{}
	for _, rec := range logRecords(t, logs) {
		ev, _ := rec["event"].(string)
		want, ok := wantEvents[ev]
		if !ok {
			continue
		}
		seen[ev]++
		for _, k := range []string{"time", "request_id", "client", "user_agent", "outcome"} {
			if v, _ := rec[k].(string); v == "" {
				t.Errorf("audit %s: %s is empty: %v", ev, k, rec)
			}
		}
		for k, w := range map[string]string{"user": want.user, "rule": want.rule, "outcome": want.outcome, "client": "127.0.0.1", "user_agent": "ops-test/1.0"} {
			if got, _ := rec[k].(string); got != w {
				t.Errorf("audit %s: %s: got %q; want %q", ev, k, got, w)
			}
		}
		if _, ok := rec["rule"]; !ok {
			t.Errorf("audit %s: no rule field: %v", ev, rec)
		}
		if ev == "code_sent" && rec["request_id"] != sendResp.Header.Get("X-Request-Id") {
			t.Errorf("code_sent request_id: got %v; want the response's X-Request-Id %q", rec["request_id"], sendResp.Header.Get("X-Request-Id"))
		}
	}
	for ev := range wantEvents {
		if seen[ev] != 1 {
			t.Errorf("audit event %s: got %d records; want 1", ev, seen[ev])
		}
	}
	// Units in the names or values: duration_ms is a number of
	// milliseconds; step_up_required says why and for what max_age.
	for _, rec := range logRecords(t, logs) {
		switch {
		case rec["msg"] == "access":
			if _, ok := rec["duration_ms"].(float64); !ok || rec["duration"] != nil {
				t.Errorf("access record: want a numeric duration_ms and no bare duration: %v", rec)
			}
		case rec["event"] == "step_up_required":
			if rec["reason"] != "no_second_factor" || rec["max_age"] != "12h0m0s" {
				t.Errorf("step_up_required: got reason %v max_age %v; want no_second_factor, 12h0m0s (second_factor.ttl)", rec["reason"], rec["max_age"])
			}
		}
	}
	if !strings.Contains(logs, `"msg":"access"`) || strings.Contains(logs, `"path":"/.stepup/api/email-otp?`) {
		t.Errorf("log.access: want access lines without query strings")
	}
}

func grepLines(text, prefix string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// TestOptionsStarRefused sends `OPTIONS *` on a raw connection: net/http
// would answer it 200 itself unless DisableGeneralOptionsHandler is set;
// SPEC §4 refuses it with 400 like every target that is not origin-form.
func TestOptionsStarRefused(t *testing.T) {
	s := startOps(t, writeConfig(t, baseSections+baseRules+`
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
`), noEnv)
	assertOptionsStarRefused(t, s.listen)
}

// assertOptionsStarRefused sends `OPTIONS *` to addr on a raw connection
// (Go's client cannot send it) and wants 400.
func assertOptionsStarRefused(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 400 ") {
		t.Errorf("OPTIONS *: got %q; want 400", strings.TrimSpace(status))
	}
}

// TestGracefulShutdown cancels serve while a request is in flight: new
// connections are refused at once, the in-flight request still completes,
// and serve returns nil.
func TestGracefulShutdown(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "finished")
	}))
	defer upstream.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	s := startOps(t, writeConfig(t, baseSections+`
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
upstream:
  url: `+upstream.URL+`
policies:
  default: allow
`), noEnv)
	type result struct {
		code int
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + s.listen + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{resp.StatusCode, string(b), err}
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	// Shutdown closes the listener first: once dials fail, the server is
	// draining while our request is still held by the upstream.
	waitFor(t, 10*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", s.listen, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-stopped:
		t.Fatalf("serve returned (%v) before the in-flight request finished", err)
	default:
	}
	close(release)
	r := <-got
	if r.err != nil || r.code != 200 || r.body != "finished" {
		t.Errorf("in-flight request: got %d %q %v; want 200 finished", r.code, r.body, r.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("serve: got %v; want nil", err)
	}
	if !strings.Contains(s.logs.String(), `"msg":"stepgate stopped"`) {
		t.Errorf("no stop line in the log")
	}
}

// TestShutdownGraceExpires: a request that outlives server.shutdown_grace
// is cut, and serve still returns nil promptly.
func TestShutdownGraceExpires(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	var once atomic.Bool
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if once.CompareAndSwap(false, true) {
			close(entered)
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer upstream.Close()
	s := startOps(t, writeConfig(t, baseSections+`
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  shutdown_grace: 200ms
upstream:
  url: `+upstream.URL+`
policies:
  default: allow
`), noEnv)
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + s.listen + "/hang")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	<-entered
	start := time.Now()
	if err := s.stop(); err != nil {
		t.Fatalf("serve: got %v; want nil after the grace period", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stop took %v; want about the 200ms grace", d)
	}
	if err := <-done; err == nil {
		t.Errorf("the hanging request completed; want it cut after the grace period")
	}
	if !strings.Contains(s.logs.String(), "grace period over") {
		t.Errorf("no warning about the cut connections")
	}
}
