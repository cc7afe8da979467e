package proxy

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/policy"
)

// seen is what the test upstream received.
type seen struct {
	Method     string
	RequestURI string
	RawPath    string
	Host       string
	Header     http.Header
}

// upstream is an httptest server that records every request it gets.
type upstream struct {
	*httptest.Server
	got chan seen
}

// newUpstream starts a recording upstream. Its handler records the request
// before answering, so once a client has the response the record is there.
// ?cc=VALUE answers with Cache-Control: VALUE.
// /ws answers a websocket upgrade by hijacking and echoing; /block waits
// until the request's context ends.
func newUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{got: make(chan seen, 16)}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.got <- seen{Method: r.Method, RequestURI: r.RequestURI, RawPath: r.URL.RawPath, Host: r.Host, Header: r.Header.Clone()}
		switch r.URL.Path {
		case "/ws", "/account/ws":
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			line, _ := brw.ReadString('\n')
			brw.WriteString("echo " + line)
			brw.Flush()
			return
		case "/block":
			<-r.Context().Done()
			return
		}
		w.Header().Set("X-Request-Id", "from-upstream")
		if cc := r.URL.Query()["cc"]; len(cc) > 0 {
			w.Header()["Cache-Control"] = cc // ?cc=VALUE sets it, ?cc= sets it empty
		}
		io.WriteString(w, "upstream ok")
	}))
	t.Cleanup(u.Close)
	return u
}

// take returns the request the upstream received, failing when none was.
func (u *upstream) take(t testing.TB) seen {
	t.Helper()
	select {
	case s := <-u.got:
		return s
	default:
		t.Fatalf("upstream received nothing; want a forwarded request")
		return seen{}
	}
}

// none fails when the upstream received a request.
func (u *upstream) none(t testing.TB) {
	t.Helper()
	select {
	case s := <-u.got:
		t.Fatalf("upstream received %s %s; want nothing forwarded", s.Method, s.RequestURI)
	default:
	}
}

// testRules is the policy behind most tests; the default allows, so every
// path not named here reaches the upstream and its exact form can be
// checked.
func testRules() policy.Config {
	return policy.Config{
		Default:       policy.Allow,
		DefaultMaxAge: time.Hour,
		Rules: []policy.Rule{
			{Name: "admin", Paths: []string{"/admin/**"}, Action: policy.Deny},
			{Name: "hostonly", Hosts: []string{"app.example.com"}, Paths: []string{"/hostonly/**"}, Action: policy.Deny},
			{Name: "items-delete", Methods: []string{"DELETE"}, Paths: []string{"/items/**"}, Action: policy.Deny},
			{Name: "public", Paths: []string{"/public/**"}, Action: policy.Allow},
			{Name: "audit", Paths: []string{"/audit/**"}, Action: policy.Deny, Mode: policy.Audit},
			{Name: "profile", Paths: []string{"/profile/**"}, Action: policy.Authenticate},
			{Name: "account", Paths: []string{"/account/**"}, Action: policy.StepUp, MaxAge: 10 * time.Minute, ACR: "urn:stepgate:email-otp"},
			{Name: "audit-stepup", Paths: []string{"/audit-stepup/**"}, Action: policy.StepUp, Mode: policy.Audit},
			{Name: "pay", Paths: []string{"/pay/**"}, Action: policy.StepUp, MaxAge: 5 * time.Minute},
		},
	}
}

func mustPolicy(t testing.TB, c policy.Config) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(c)
	if err != nil {
		t.Fatalf("policy.Compile: %v", err)
	}
	return p
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// quietLogger discards logs unless -v, where they help to debug.
func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newGate builds a Gate in front of up with cfg's gaps filled, and serves
// it on a real listener (raw-request tests need one).
func newGate(t testing.TB, cfg Config) (*Gate, *httptest.Server) {
	t.Helper()
	if cfg.Policy == nil {
		cfg.Policy = mustPolicy(t, testRules())
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewUnstartedServer(g)
	// main must set this too: otherwise net/http answers "OPTIONS *"
	// itself (200, never forwarded) instead of letting the Gate refuse it.
	srv.Config.DisableGeneralOptionsHandler = true
	srv.Start()
	t.Cleanup(srv.Close)
	return g, srv
}

// rawResponse is a response read from a raw connection.
type rawResponse struct {
	Status int
	Header http.Header
	Body   string
}

// raw sends req (a whole request, "\r\n" line ends) on a new connection to
// srv and reads one response. It exists because net/http's client refuses
// or rewrites many of the targets the bypass table needs.
func raw(t testing.TB, srv *httptest.Server, req string) rawResponse {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", firstLine(req), err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return rawResponse{Status: res.StatusCode, Header: res.Header, Body: string(b)}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

// get builds a raw GET for target with extra header lines.
func get(target string, headers ...string) string {
	return reqLine("GET", target, headers...)
}

func reqLine(method, target string, headers ...string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\n")
	host := "app.example.com"
	for _, h := range headers {
		if strings.HasPrefix(strings.ToLower(h), "host:") {
			host = ""
		}
	}
	if host != "" {
		b.WriteString("Host: " + host + "\r\n")
	}
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.String()
}

func loopback() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}
