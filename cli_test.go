package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge/redisstore/redistest"
	"github.com/stepgate/stepgate/internal/proctest"
)

func runCmd(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = run(context.Background(), args, envMap(env), &out, &errb)
	return out.String(), errb.String(), err
}

func TestCheckGoodConfig(t *testing.T) {
	text := baseSections + baseRules + `  tests:
    - request: "GET http://app.example.com/admin/users"
      expect: step_up
      rule: admin
    - request: "GET http://app.example.com/home"
      expect: authenticate
`
	out, errOut, err := runCmd(t, nil, "check", "-config", writeConfig(t, text))
	if err != nil {
		t.Fatalf("check: %v\n%s", err, errOut)
	}
	if want := "config OK: 1 rule, 2 policy tests passed\n"; out != want {
		t.Errorf("got %q; want %q", out, want)
	}
}

func TestCheckBadConfigReportsEveryProblem(t *testing.T) {
	text := baseSections + `
otp:
  ttl: soon
server:
  prefix: stepup
policies:
  rules:
    - name: admin
      paths: ["/admin/**"]
      action: stepup
`
	path := writeConfig(t, text)
	out, errOut, err := runCmd(t, nil, "check", "-config", path)
	if err == nil {
		t.Fatalf("check succeeded; want failure (stdout %q)", out)
	}
	if out != "" {
		t.Errorf("stdout: got %q; want nothing", out)
	}
	for _, want := range []string{
		fmt.Sprintf("%s:%d: otp.ttl: ", path, lineOf(text, "ttl: soon")),
		fmt.Sprintf("%s:%d: server.prefix: ", path, lineOf(text, "prefix: stepup")),
		fmt.Sprintf(`%s:%d: rule "admin": action "stepup": is not an action: want allow, authenticate, step_up or deny (did you mean step_up?)`, path, lineOf(text, "action: stepup")),
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if !strings.Contains(err.Error(), "3 problems") {
		t.Errorf("got %v; want a count of 3 problems", err)
	}
}

// lineOf is the 1-based line of the first line containing sub.
func lineOf(text, sub string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			return i + 1
		}
	}
	return 0
}

func TestCheckMissingFile(t *testing.T) {
	_, _, err := runCmd(t, nil, "check", "-config", "/nonexistent/stepgate.yaml")
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("got %v; want a read error", err)
	}
}

func TestExplainStepUp(t *testing.T) {
	path := writeConfig(t, baseSections+baseRules)
	out, errOut, err := runCmd(t, nil, "explain", "-config", path, "GET", "http://app.example.com/admin//users?x=1")
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, errOut)
	}
	for _, want := range []string{
		"canonical path: /admin/users\n",
		`rule 0 "admin": MATCH`,
		`decision: step_up by rule "admin"`,
		"requires: identity and a second factor no older than 10m\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestExplainNoMatchAndOverride(t *testing.T) {
	text := baseSections + `
policies:
  default: authenticate
  rules:
    - name: delete
      paths: ["/items/*"]
      methods: [DELETE]
      action: step_up
`
	path := writeConfig(t, text)
	out, _, err := runCmd(t, nil, "explain", "-config", path, "POST", "http://app.example.com/items/7")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "decision: authenticate (no rule matched") || !strings.Contains(out, `rule 0 "delete": no match`) {
		t.Errorf("POST without override: got\n%s", out)
	}
	// SPEC §4: a method override is matched too, upper-cased.
	out, _, err = runCmd(t, nil, "explain", "-config", path, "-H", "X-HTTP-Method-Override: delete", "POST", "http://app.example.com/items/7")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `decision: step_up by rule "delete"`) {
		t.Errorf("POST overridden to delete: got\n%s", out)
	}
}

func TestExplainAudit(t *testing.T) {
	text := baseSections + `
policies:
  rules:
    - name: settings
      hosts: ["*.example.com"]
      paths: ["/settings/**"]
      action: step_up
      mode: audit
`
	path := writeConfig(t, text)
	out, _, err := runCmd(t, nil, "explain", "-config", path, "GET", "http://App.Example.com./settings/mfa")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`decision: step_up by rule "settings"`,
		"requires: identity and a second factor no older than 12h\n",
		"mode: audit",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// *.example.com does not match example.com itself (SPEC §4).
	out, _, err = runCmd(t, nil, "explain", "-config", path, "GET", "http://example.com/settings/mfa")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "decision: authenticate (no rule matched") {
		t.Errorf("bare domain: got\n%s", out)
	}
}

func TestExplainRefused(t *testing.T) {
	path := writeConfig(t, baseSections+baseRules)
	out, _, err := runCmd(t, nil, "explain", "-config", path, "GET", "http://app.example.com/public/%2e%2e/admin")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "refused: ") || !strings.Contains(out, "400") || strings.Contains(out, "decision: step_up") {
		t.Errorf("got\n%s\nwant a refusal with 400 and no rule decision", out)
	}
}

func TestExplainUsageErrors(t *testing.T) {
	path := writeConfig(t, baseSections+baseRules)
	for _, args := range [][]string{
		{"explain", "-config", path, "GET"},
		{"explain", "-config", path, "GET", "admin"},
		{"explain", "-config", path, "GET", "ftp://x/admin"},
		{"explain", "-config", path, "-H", "no colon", "GET", "http://x/admin"},
		{"explain", "GET", "http://x/"},
	} {
		if _, _, err := runCmd(t, nil, args...); err == nil {
			t.Errorf("run %q: got nil error; want one", args)
		}
	}
}

func TestVersion(t *testing.T) {
	out, _, err := runCmd(t, nil, "version")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stepgate " + version + "\n", "go: " + runtime.Version()} {
		if !strings.Contains(out, want) {
			t.Errorf("got %q; want it to contain %q", out, want)
		}
	}
}

func TestDispatch(t *testing.T) {
	bad := writeConfig(t, baseSections+"otp:\n  ttl: soon\n")
	cases := []struct {
		args    []string
		wantErr string // "" means success
		wantOut string
	}{
		{nil, "no command", ""},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`, ""},
		{[]string{"-h"}, "", "Usage:"},
		{[]string{"help"}, "", "Usage:"},
		{[]string{"check", "-h"}, "", ""},
		{[]string{"check"}, "-config FILE is required", ""},
		{[]string{"serve"}, "-config FILE is required", ""},
		// SPEC §2: bare -config serves; a bad config stops it before any listen.
		{[]string{"-config", bad}, "otp.ttl", ""},
		{[]string{"serve", "-config", bad}, "otp.ttl", ""},
		// demo runs until cancelled; a stray argument shows it is dispatched.
		{[]string{"demo", "extra"}, "demo: unexpected arguments", ""},
		{[]string{"healthcheck", "extra"}, "healthcheck: unexpected arguments", ""},
	}
	for _, tc := range cases {
		out, _, err := runCmd(t, nil, tc.args...)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("run %q: %v", tc.args, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("run %q: got %v; want an error containing %q", tc.args, err, tc.wantErr)
		}
		if !strings.Contains(out, tc.wantOut) {
			t.Errorf("run %q: stdout %q lacks %q", tc.args, out, tc.wantOut)
		}
	}
}

// served is a running `stepgate serve`.
type served struct {
	listen, admin string
	stop          func() error // cancels and waits for run to return
}

// startServe runs `stepgate serve` on text (which must listen on port 0)
// and waits for its start-up line.
func startServe(t *testing.T, text string) served {
	t.Helper()
	path := writeConfig(t, text)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr proctest.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", path}, noEnv, io.Discard, &stderr) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(30 * time.Second):
				stopErr = fmt.Errorf("serve did not stop after cancel")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { stop() })

	var start struct {
		Listen      string `json:"listen"`
		AdminListen string `json:"admin_listen"`
		Rules       int    `json:"rules"`
		Store       string `json:"store"`
		Version     string `json:"version"`
	}
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for start.Listen == "" {
		select {
		case err := <-done:
			t.Fatalf("serve ended early: %v\n%s", err, stderr.String())
		case <-deadline:
			t.Fatalf("no start-up line:\n%s", stderr.String())
		case <-tick.C:
		}
		for line := range strings.SplitSeq(stderr.String(), "\n") {
			if strings.Contains(line, `"stepgate started"`) {
				if err := json.Unmarshal([]byte(line), &start); err != nil {
					t.Fatalf("start line %q: %v", line, err)
				}
			}
		}
	}
	if start.Rules != len(strings.Split(text, "- name:"))-1 || start.Version != version {
		t.Errorf("start line: got %+v; want the rule count and version %s", start, version)
	}
	return served{listen: start.Listen, admin: start.AdminListen, stop: stop}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// TestServe starts the real servers on free ports, proxies an allowed
// request to an httptest upstream, checks the admin endpoints, and shuts
// down on cancel.
func TestServe(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw %s rule=%s", r.URL.Path, r.Header.Get("X-Stepup-Rule"))
	}))
	defer upstream.Close()
	s := startServe(t, baseSections+`
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
upstream:
  url: `+upstream.URL+`
policies:
  rules:
    - name: public
      paths: ["/public/**"]
      action: allow
    - name: admin
      paths: ["/admin/**"]
      action: step_up
`)
	if code, body := httpGet(t, "http://"+s.listen+"/public/a"); code != 200 || body != "upstream saw /public/a rule=public" {
		t.Errorf("proxied: got %d %q; want 200 from the upstream", code, body)
	}
	if code, _ := httpGet(t, "http://"+s.listen+"/admin/x"); code != http.StatusUnauthorized {
		t.Errorf("step_up without identity: got %d; want 401", code)
	}
	if code, body := httpGet(t, "http://"+s.admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz: got %d %q", code, body)
	}
	if code, _ := httpGet(t, "http://"+s.admin+"/readyz"); code != 200 {
		t.Errorf("readyz: got %d; want 200", code)
	}
	code, body := httpGet(t, "http://"+s.admin+"/metrics")
	if code != 200 || !strings.Contains(body, "stepgate_build_info") || !strings.Contains(body, "stepgate_requests_total") {
		t.Errorf("metrics: got %d without stepgate_build_info or stepgate_requests_total", code)
	}
	// SPEC §3: the admin endpoints are never served on the proxy port.
	if code, body := httpGet(t, "http://"+s.listen+"/metrics"); strings.Contains(body, "stepgate_build_info") {
		t.Errorf("proxy port served metrics (%d)", code)
	}
	if err := s.stop(); err != nil {
		t.Errorf("serve: %v", err)
	}
}

// TestServeRedisReadiness runs on a real redis-server: ready while it
// answers, not ready once it is gone.
func TestServeRedisReadiness(t *testing.T) {
	srv := redistest.StartServer(t, redistest.Config{})
	// /readyz also wants the upstream reachable.
	upstream := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer upstream.Close()
	s := startServe(t, baseSections+baseRules+`
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
upstream:
  url: `+upstream.URL+`
store:
  driver: redis
  redis:
    addr: `+srv.Addr+`
`)
	if code, body := httpGet(t, "http://"+s.admin+"/readyz"); code != 200 {
		t.Errorf("readyz with redis up: got %d %q; want 200", code, body)
	}
	srv.Stop()
	if code, body := httpGet(t, "http://"+s.admin+"/readyz"); code != http.StatusServiceUnavailable || strings.Contains(body, srv.Addr) {
		t.Errorf("readyz with redis down: got %d %q; want 503 without internals", code, body)
	}
}

// TestExplainUndecodableOverride: explain decides like the gate, which
// refuses a `_method` it cannot decode (proxy.BuildRequest) instead of
// matching the request without it.
func TestExplainUndecodableOverride(t *testing.T) {
	path := writeConfig(t, baseSections+baseRules)
	out, _, err := runCmd(t, nil, "explain", "-config", path, "POST", "http://app/x?_method=%zz")
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	if !strings.Contains(out, "refused:") || !strings.Contains(out, "decision: 400") {
		t.Errorf("got %q; want the request refused with 400", out)
	}
}

// TestExplainHostNotOneAuthority: explain refuses a Host that is not one
// authority as the gate does, and says why (issue: Host lists and ports).
func TestExplainHostNotOneAuthority(t *testing.T) {
	path := writeConfig(t, baseSections+baseRules)
	for _, h := range []string{"app.example.com,other.example", "app.example.com:8080:9090"} {
		out, errOut, err := runCmd(t, nil, "explain", "-config", path, "-H", "Host: "+h, "GET", "http://app.example.com/admin")
		if err != nil {
			t.Fatalf("explain: %v\n%s", err, errOut)
		}
		for _, want := range []string{"refused: ", "is not one authority", "decision: 400 Bad Request"} {
			if !strings.Contains(out, want) {
				t.Errorf("Host %q: output lacks %q:\n%s", h, want, out)
			}
		}
	}
	out, _, err := runCmd(t, nil, "explain", "-config", path, "GET", "http://app.example.com,other.example/admin")
	if err != nil || !strings.Contains(out, "list of hosts") {
		t.Errorf("URL host list: got %v\n%s; want a refusal naming the list", err, out)
	}
}
