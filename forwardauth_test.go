package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The forward-auth tests run real outer proxies (nginx, Caddy) from the
// configurations in deploy/, with stepgate as their decision service in
// front of a recording upstream (SPEC §12).

// faUpstream records what reached the application.
type faUpstream struct {
	*httptest.Server
	got chan faSeen
}

type faSeen struct {
	method, uri, host string
	header            http.Header
}

func newFAUpstream(t *testing.T) *faUpstream {
	t.Helper()
	u := &faUpstream{got: make(chan faSeen, 64)}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.got <- faSeen{method: r.Method, uri: r.RequestURI, host: r.Host, header: r.Header.Clone()}
		io.WriteString(w, "app "+r.RequestURI)
	}))
	t.Cleanup(u.Close)
	return u
}

// take returns the one request the upstream got since the last call.
func (u *faUpstream) take(t *testing.T, what string) faSeen {
	t.Helper()
	select {
	case s := <-u.got:
		return s
	default:
		t.Fatalf("%s: the upstream received nothing; want the request", what)
		return faSeen{}
	}
}

// none fails when anything reached the upstream.
func (u *faUpstream) none(t *testing.T, what string) {
	t.Helper()
	select {
	case s := <-u.got:
		t.Errorf("%s: the upstream received %s %s; want nothing", what, s.method, s.uri)
	default:
	}
}

// faConfig is stepgate in forward-auth mode for a proxy on loopback.
func faConfig(upstream, mailDir string) string {
	return `
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  trusted_proxies: ["127.0.0.1/32"]
  forward_auth: true
upstream:
  url: ` + upstream + `
identity:
  login_url: "/login?rd={rd}"
  jwt:
    hmac_secret: "` + testHMACSecret + `"
second_factor:
  secret: "` + testSecret + `"
  cookie: stepgate_2fa
mail:
  driver: file
  file: { dir: "` + mailDir + `" }
policies:
  default: authenticate
  rules:
    - name: admin-host
      hosts: ["admin.example"]
      paths: ["/**"]
      action: deny
    - name: login
      paths: ["/login"]
      action: allow
    - name: public
      paths: ["/public/**"]
      action: allow
    - name: blocked
      paths: ["/blocked/**"]
      action: deny
    - name: items-delete
      paths: ["/items/**"]
      methods: [DELETE]
      action: deny
    - name: items
      paths: ["/items/**"]
      action: allow
    - name: admin
      paths: ["/admin/**"]
      action: step_up
      max_age: 10m
`
}

// faStack is the application and stepgate, for an outer proxy to join.
type faStack struct {
	up      *faUpstream
	sg      *opsServer
	mailDir string
}

func startFAStack(t *testing.T) *faStack {
	t.Helper()
	s := &faStack{up: newFAUpstream(t), mailDir: t.TempDir()}
	s.sg = startOps(t, writeConfig(t, faConfig(s.up.URL, s.mailDir)), noEnv)
	return s
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).AddrPort().String()
}

// requireBinary finds a proxy binary, or skips loudly unless env is 1.
func requireBinary(t *testing.T, env, pkg string, paths ...string) string {
	t.Helper()
	for _, p := range paths {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := fmt.Sprintf("!!! SKIPPING THE REAL %s FORWARD-AUTH TEST: %s not found. Install it (apt-get install %s) or set %s=1 to make this a failure. !!!",
		strings.ToUpper(pkg), strings.Join(paths, " or "), pkg, env)
	if os.Getenv(env) == "1" {
		t.Fatal(strings.Replace(msg, "SKIPPING", "FAILING", 1))
	}
	t.Skip(msg)
	return ""
}

// deployFile reads a file of deploy/ and replaces each old string, which
// must occur exactly once, so that the tested file is the shipped one.
func deployFile(t *testing.T, path string, repl ...string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(repl); i += 2 {
		if n := strings.Count(s, repl[i]); n != 1 {
			t.Fatalf("%s: %q occurs %d times; the test replaces exactly one", path, repl[i], n)
		}
		s = strings.Replace(s, repl[i], repl[i+1], 1)
	}
	return s
}

// startProcess runs cmd until the test ends, then stops it by its pid
// and waits for it. ready polls until the process serves.
func startProcess(t *testing.T, cmd *exec.Cmd, logFile string, ready func() bool) {
	t.Helper()
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		out.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for !ready() {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logFile)
			t.Fatalf("%s exited during start-up (%v):\n%s", cmd.Path, err, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("%s did not serve within 15s:\n%s", cmd.Path, log)
		}
		time.Sleep(20 * time.Millisecond) // polling a port; no event to wait on
	}
}

// serves reports whether an HTTP server answers at addr.
func serves(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// startNginx runs deploy/nginx/stepgate.conf in front of the stack and
// returns nginx's address.
func startNginx(t *testing.T, s *faStack) string {
	t.Helper()
	bin := requireBinary(t, "STEPGATE_REQUIRE_NGINX", "nginx-light", "/usr/sbin/nginx", "nginx")
	dir := t.TempDir()
	addr := freePort(t)
	site := deployFile(t, "deploy/nginx/stepgate.conf",
		"server 127.0.0.1:8080;", "server "+s.sg.listen+";",
		"server 127.0.0.1:3000;", "server "+s.up.Listener.Addr().String()+";",
		"listen 80;", "listen "+addr+";")
	if err := os.WriteFile(filepath.Join(dir, "stepgate.conf"), []byte(site), 0o600); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root root;" // workers as "nobody" could not enter the temporary directory
	}
	main := user + `
daemon off;
worker_processes 1;
pid ` + dir + `/nginx.pid;
error_log ` + dir + `/error.log info;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path ` + dir + `/client_body;
    proxy_temp_path ` + dir + `/proxy;
    fastcgi_temp_path ` + dir + `/fastcgi;
    uwsgi_temp_path ` + dir + `/uwsgi;
    scgi_temp_path ` + dir + `/scgi;
    include ` + dir + `/stepgate.conf;
}
`
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", conf, "-e", dir+"/error.log").CombinedOutput(); err != nil {
		t.Fatalf("nginx -t rejected deploy/nginx/stepgate.conf: %v\n%s", err, out)
	}
	startProcess(t, exec.Command(bin, "-p", dir, "-c", conf, "-e", dir+"/error.log"), filepath.Join(dir, "stdout.log"),
		func() bool { return serves(addr) })
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", log)
		}
	})
	return addr
}

// rawHTTP sends one request exactly as written (Go's client would
// normalise many of the targets) and reads the response.
func rawHTTP(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", strings.SplitN(req, "\r\n", 2)[0], err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res, string(b)
}

func rawReq(method, target, host string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.String()
}

// faProxyCases checks, through the outer proxy at addr, the answers that
// need no second factor: allow, deny, API 401s, the login redirect, method
// overrides, ambiguous targets and forged headers. browserLogin is where
// a browser without identity is sent.
func faProxyCases(t *testing.T, s *faStack, addr, browserLogin string, outsideAuthz int) {
	t.Helper()
	access := accessToken(t, "alice", "alice@example.com", "sess-1")
	bearer := "Authorization: Bearer " + access
	const rfc9470 = `Bearer error="insufficient_user_authentication", error_description="A second factor is required", max_age="600"`
	tests := []struct {
		name    string
		req     string
		status  int
		forward bool   // reaches the upstream
		loc     string // Location, when set
		www     string // WWW-Authenticate, when set
		jsonErr string // the JSON body's error, when set
	}{
		{name: "allow", req: rawReq("GET", "/public/a?x=1", addr), status: 200, forward: true},
		{name: "deny", req: rawReq("GET", "/blocked/x", addr), status: 403},
		{name: "deny, forged X-Original-URL", req: rawReq("GET", "/blocked/x", addr, "X-Original-URL: http://"+addr+"/public/x", "X-Forwarded-Uri: /public/x", "X-Original-Method: GET"), status: 403},
		{name: "no identity API", req: rawReq("GET", "/admin/x", addr), status: 401, www: `Bearer realm="stepgate"`, jsonErr: "unauthorized"},
		{name: "no identity browser", req: rawReq("GET", "/admin/x?y=1", addr, "Accept: text/html"), status: 302, loc: browserLogin + "/login?rd=%2Fadmin%2Fx%3Fy%3D1"},
		{name: "step_up API", req: rawReq("GET", "/admin/x", addr, bearer), status: 401, www: rfc9470, jsonErr: "insufficient_user_authentication"},
		{name: "authenticate", req: rawReq("GET", "/other", addr, bearer), status: 200, forward: true},
		{name: "method rule", req: rawReq("DELETE", "/items/1", addr), status: 403},
		{name: "method rule other method", req: rawReq("PUT", "/items/1", addr, "Content-Length: 0"), status: 200, forward: true},
		{name: "override header", req: rawReq("PUT", "/items/1", addr, "X-HTTP-Method-Override: delete", "Content-Length: 0"), status: 403},
		{name: "override query", req: rawReq("GET", "/items/1?_method=DELETE", addr), status: 403},
		{name: "override query PHP key", req: rawReq("GET", "/items/1?.method=delete", addr), status: 403},
		{name: "form POST decided strictest", req: rawReq("POST", "/items/1", addr, "Content-Type: application/x-www-form-urlencoded", "Content-Length: 3", "") + "a=b", status: 403},
		{name: "JSON POST decided strictest", req: rawReq("POST", "/items/1", addr, "Content-Type: application/json", "Content-Length: 2", "") + "{}", status: 403},
		{name: "text POST", req: rawReq("POST", "/items/1", addr, "Content-Type: text/plain", "Content-Length: 1", "") + "x", status: 200, forward: true},
		{name: "encoded slash", req: rawReq("GET", "/public/..%2Fblocked/x", addr), status: 400},
		{name: "encoded slash 2", req: rawReq("GET", "/blocked%2Fx", addr), status: 400},
		{name: "encoded backslash", req: rawReq("GET", "/public/..%5Cblocked", addr), status: 400},
		{name: "dot segments", req: rawReq("GET", "/public/../blocked/x", addr), status: 400},
		{name: "encoded dot segments", req: rawReq("GET", "/public/%2e%2e/blocked/x", addr), status: 400},
		{name: "double encoding", req: rawReq("GET", "/public/%252e%252e/blocked", addr), status: 400},
		{name: "encoded NUL", req: rawReq("GET", "/public/x%00.txt", addr), status: 400},
		{name: "duplicated slashes", req: rawReq("GET", "//public/x", addr), status: 400},
		{name: "duplicated slashes inside", req: rawReq("GET", "/public//x", addr), status: 400},
		{name: "host list", req: rawReq("GET", "/public/x", "a.example,"+addr), status: 400},
		{name: "host rule", req: rawReq("GET", "/public/x", "admin.example"), status: 403},
		{name: "host rule, upper case and port", req: rawReq("GET", "/public/x", "ADMIN.example:8443"), status: 403},
		{name: "decision endpoint from outside", req: rawReq("GET", "/.stepup/authz/auth-request", addr, "X-Original-Method: GET", "X-Original-URL: http://"+addr+"/public/x"), status: outsideAuthz},
	}
	for _, tt := range tests {
		res, body := rawHTTP(t, addr, tt.req)
		if res.StatusCode != tt.status {
			t.Errorf("%s: got %d; want %d (body %q)", tt.name, res.StatusCode, tt.status, body)
		}
		if tt.loc != "" && res.Header.Get("Location") != tt.loc {
			t.Errorf("%s: Location: got %q; want %q", tt.name, res.Header.Get("Location"), tt.loc)
		}
		if tt.www != "" {
			if got := res.Header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != tt.www {
				t.Errorf("%s: WWW-Authenticate: got %q; want exactly %q", tt.name, got, tt.www)
			}
		}
		if tt.jsonErr != "" {
			var v struct{ Error string }
			if err := json.Unmarshal([]byte(body), &v); err != nil || v.Error != tt.jsonErr {
				t.Errorf("%s: body %q: want JSON with error %q", tt.name, body, tt.jsonErr)
			}
		}
		if tt.forward {
			s.up.take(t, tt.name)
		} else {
			s.up.none(t, tt.name)
		}
	}

	// An absolute-form request line names another host than Host: either
	// it is refused, or the app is told the host the policy decided.
	for _, tt := range []struct{ name, target, host string }{
		{"absolute form, allowed Host", "http://admin.example/public/x", addr},
		{"absolute form, denied Host", "http://" + addr + "/public/x", "admin.example"},
	} {
		res, _ := rawHTTP(t, addr, rawReq("GET", tt.target, tt.host))
		if res.StatusCode != http.StatusOK {
			s.up.none(t, tt.name)
			continue
		}
		got := s.up.take(t, tt.name)
		if xfh := got.header.Get("X-Forwarded-Host"); strings.Contains(got.host+xfh, "admin.example") {
			t.Errorf("%s: forwarded with Host %q and X-Forwarded-Host %q: the app was told a host the policy denies", tt.name, got.host, xfh)
		}
	}
}

// faStepUpFlow is the browser flow through the outer proxy at base: the
// challenge, the code from the mail, the cookie, then the upstream with
// stepgate's headers and none of the client's. challengeLoc is the
// Location the proxy sends a browser to first.
func faStepUpFlow(t *testing.T, s *faStack, base, challengeLoc string, postRedirected bool) {
	t.Helper()
	b := newBrowser(t, base)
	u, _ := url.Parse(base)
	access := accessToken(t, "alice", "alice@example.com", "sess-1")
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "access_token", Value: access, Path: "/"}})
	forged := http.Header{"X-Stepup-User": {"mallory"}, "X-Stepup-Auth-Time": {"1"}, "X-Stepup-Token": {"forged"}, "X_Stepup_Rule": {"forged"}, "X-Original-Url": {"/public/x"}}

	if got, loc, body, _ := b.doWith("GET", "/admin/x", nil, forged); got != http.StatusFound || loc != challengeLoc {
		t.Fatalf("GET /admin/x without a second factor: got %d to %q; want 302 to %q\n%s", got, loc, challengeLoc, body)
	}
	// A browser form POST: its body is never replayed. nginx cannot show
	// stepgate's 401 page linking to the challenge, so it redirects.
	got, loc, body, _ := b.do("POST", "/admin/x", url.Values{"a": {"b"}})
	switch {
	case postRedirected && (got != http.StatusFound || !strings.Contains(loc, "/.stepup/challenge?rd=%2Fadmin%2Fx")):
		t.Errorf("POST /admin/x without a second factor: got %d to %q; want 302 to the challenge", got, loc)
	case !postRedirected && (got != http.StatusUnauthorized || !strings.Contains(body, `href="/.stepup/challenge?rd=%2Fadmin%2Fx"`)):
		t.Errorf("POST /admin/x without a second factor: got %d %q; want stepgate's 401 page linking to the challenge", got, body)
	}
	s.up.none(t, "before the challenge")

	page := b.expect("GET", "/.stepup/challenge?rd=%2Fadmin%2Fx", nil, http.StatusOK, "")
	if !strings.Contains(page, "a***e@example.com") {
		t.Fatalf("challenge page lacks the masked address:\n%s", page)
	}
	b.expect("POST", "/.stepup/send", url.Values{"email": {"0"}, "rd": {"/admin/x"}, "csrf": {csrfOf(t, page)}}, http.StatusSeeOther, "/.stepup/verify?rd=%2Fadmin%2Fx")
	verify := b.expect("GET", "/.stepup/verify?rd=%2Fadmin%2Fx", nil, http.StatusOK, "")
	code := mailedCode(t, s.mailDir)
	b.expect("POST", "/.stepup/verify", url.Values{"code": {code}, "rd": {"/admin/x"}, "csrf": {csrfOf(t, verify)}}, http.StatusSeeOther, "/admin/x")
	s.up.none(t, "the challenge")

	got, _, body, _ = b.doWith("GET", "/admin/x", nil, forged)
	if got != http.StatusOK || body != "app /admin/x" {
		t.Fatalf("GET /admin/x with the second factor: got %d %q; want 200 from the upstream", got, body)
	}
	seen := s.up.take(t, "GET /admin/x with the second factor")
	if seen.uri != "/admin/x" {
		t.Errorf("upstream request target: got %q; want /admin/x", seen.uri)
	}
	for k, want := range map[string]string{"X-Stepup-User": "alice", "X-Stepup-Email": "alice@example.com", "X-Stepup-Rule": "admin"} {
		if got := seen.header.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s: got %q; want exactly [%q]", k, got, want)
		}
	}
	if at := seen.header.Values("X-Stepup-Auth-Time"); len(at) != 1 || !regexp.MustCompile(`^[0-9]{10}$`).MatchString(at[0]) {
		t.Errorf("upstream X-Stepup-Auth-Time: got %q; want stepgate's unix time, not the client's", at)
	}
	for _, k := range []string{"X_Stepup_Rule", "X-Stepup-Token", "X-Original-Url", "X-Original-Method"} {
		if v, ok := seen.header[k]; ok {
			t.Errorf("upstream got %s: %q; want it dropped", k, v)
		}
	}
	// An allowed path gets no identity, whatever the client sends.
	if got, _, _, _ := b.doWith("GET", "/public/x", nil, forged); got != http.StatusOK {
		t.Fatalf("GET /public/x: got %d", got)
	}
	if h := s.up.take(t, "GET /public/x").header; h.Get("X-Stepup-User") != "" || h.Get("X-Stepup-Rule") != "public" {
		t.Errorf("upstream for /public/x: X-Stepup-User %q, X-Stepup-Rule %q; want none and public", h.Get("X-Stepup-User"), h.Get("X-Stepup-Rule"))
	}

	// The decisions were counted as in proxy mode.
	metrics := scrape(t, s.sg.admin)
	for _, series := range []string{
		`stepgate_requests_total{decision="challenged",rule="admin"}`,
		`stepgate_requests_total{decision="forwarded",rule="admin"}`,
	} {
		if metricValue(metrics, series) < 1 {
			t.Errorf("%s: not counted", series)
		}
	}
}

// TestForwardAuthNginx runs deploy/nginx/stepgate.conf in a real nginx
// with stepgate as its auth_request service.
func TestForwardAuthNginx(t *testing.T) {
	s := startFAStack(t)
	addr := startNginx(t, s)
	base := "http://" + addr
	t.Run("cases", func(t *testing.T) { faProxyCases(t, s, addr, base, http.StatusNotFound) })
	t.Run("browser flow", func(t *testing.T) {
		faStepUpFlow(t, s, base, base+"/.stepup/challenge?rd=%2Fadmin%2Fx", true)
	})
}

// startCaddy runs deploy/caddy/Caddyfile in front of the stack and returns
// Caddy's address.
func startCaddy(t *testing.T, s *faStack) string {
	t.Helper()
	bin := requireBinary(t, "STEPGATE_REQUIRE_CADDY", "caddy", "/usr/bin/caddy", "caddy")
	dir := t.TempDir()
	addr := freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "run", "--config", "deploy/caddy/Caddyfile", "--adapter", "caddyfile")
	// Every host, so that a malformed Host reaches stepgate instead of
	// Caddy's empty answer for a site it does not serve.
	cmd.Env = []string{"HOME=" + dir, "XDG_CONFIG_HOME=" + dir, "XDG_DATA_HOME=" + dir,
		"SITE=http://127.0.0.1:" + port + ", http://:" + port, "STEPGATE=" + s.sg.listen, "APP=" + s.up.Listener.Addr().String()}
	startProcess(t, cmd, filepath.Join(dir, "caddy.log"), func() bool { return serves(addr) })
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "caddy.log"))
			t.Logf("caddy log:\n%s", log)
		}
	})
	return addr
}

// TestForwardAuthCaddy runs deploy/caddy/Caddyfile in a real Caddy with
// stepgate as its forward_auth service; stepgate's redirects pass through.
func TestForwardAuthCaddy(t *testing.T) {
	s := startFAStack(t)
	addr := startCaddy(t, s)
	base := "http://" + addr
	t.Run("cases", func(t *testing.T) { faProxyCases(t, s, addr, base, http.StatusNotFound) })
	t.Run("browser flow", func(t *testing.T) {
		faStepUpFlow(t, s, base, base+"/.stepup/challenge?rd=%2Fadmin%2Fx", false)
	})
}

// TestForwardAuthNginxShed: deploy/nginx/stepgate.conf passes stepgate's
// 503 (a token verification shed by identity.jwt.verify_concurrency) on to
// the client with Retry-After, instead of the 500 nginx makes of any other
// auth_request status, and forwards nothing. The auth service here answers
// as stepgate's gate does when shed (TestShedVerification in proxy checks
// the gate's answer), since holding a real stepgate's verification slot
// from outside takes a test hook the config does not have.
func TestForwardAuthNginxShed(t *testing.T) {
	shedder := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.stepup/authz/auth-request" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"temporarily_unavailable","error_description":"identity could not be checked; try again"}`)
	}))
	defer shedder.Close()
	s := &faStack{up: newFAUpstream(t), sg: &opsServer{listen: shedder.Listener.Addr().String()}}
	addr := startNginx(t, s)
	for _, accept := range []string{"application/json", "text/html"} {
		req, err := http.NewRequest("GET", "http://"+addr+"/admin/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", accept)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") != "1" {
			t.Errorf("Accept %s: got %d, Retry-After %q; want 503 with Retry-After: 1", accept, res.StatusCode, res.Header.Get("Retry-After"))
		}
		s.up.none(t, "a shed decision")
	}
}
