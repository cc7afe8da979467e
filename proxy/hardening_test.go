package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/internal/proctest"
)

// logBuffer collects JSON log lines; safe for the server's goroutines.
type logBuffer struct{ proctest.Buffer }

// records returns the decoded log lines.
func (l *logBuffer) records(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func newLogBuffer() (*logBuffer, *slog.Logger) {
	lb := &logBuffer{}
	return lb, slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestHostNotOneAuthority sends Host values that Go's server accepts but
// that are not one authority. Each is refused with 400 before matching,
// never forwarded, counted as rejected and audited with the reason.
func TestHostNotOneAuthority(t *testing.T) {
	up := newUpstream(t)
	m := NewMetrics(nil)
	lb, logger := newLogBuffer()
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL), Metrics: m, Logger: logger})
	bad := []struct{ host, why string }{
		{"app.example.com,other.example", "list of hosts"}, // Rails reads the last, Express the first
		{"other.example,app.example.com", "list of hosts"}, // the reverse
		{"app.example.com:8080:9090", "several ports"},     // Express cuts at the first ':'
		{"app.example.com:", "empty port"},                 // no digits
		{"app.example.com:99999", "at most 65535"},         // not a port
		{"app.example.com;x", "character"},                 // a sub-delimiter
		{"app%2eexample.com", "percent-encoding"},          // encoded
		{"[::1]x", "only ':port'"},                         // junk after an IPv6 literal
		{"0x7f.1", "numeric host"},                         // WHATWG reads 127.0.0.1
	}
	for _, tt := range bad {
		res := raw(t, srv, get("/hostonly/x", "Host: "+tt.host))
		if res.Status != 400 {
			t.Errorf("Host %q: got status %d; want 400", tt.host, res.Status)
		}
		up.none(t)
	}
	if got := testutil.ToFloat64(m.Requests.WithLabelValues("none", Rejected)); got != float64(len(bad)) {
		t.Errorf("requests_total{rule=none,decision=rejected}: got %v; want %d", got, len(bad))
	}
	var refused int
	for _, rec := range lb.records(t) {
		if rec["event"] != "request_refused" {
			continue
		}
		reason, _ := rec["reason"].(string)
		if !strings.Contains(reason, bad[refused].why) {
			t.Errorf("refusal %d (Host %q): reason %q; want it to say %q", refused, bad[refused].host, reason, bad[refused].why)
		}
		refused++
	}
	if refused != len(bad) {
		t.Errorf("request_refused audit lines: got %d; want %d", refused, len(bad))
	}

	// One authority in its usual spellings still decides and forwards.
	for _, h := range []string{"other.example.com", "other.example.com:8080", "127.0.0.1:80", "[::1]:8443"} {
		res := raw(t, srv, get("/hostonly/x", "Host: "+h))
		if res.Status != 200 {
			t.Errorf("Host %q: got status %d; want 200", h, res.Status)
			continue
		}
		if got := up.take(t).Header.Get("X-Forwarded-Host"); got != h {
			t.Errorf("Host %q: upstream X-Forwarded-Host %q; want %q", h, got, h)
		}
	}
}

// TestForwardedHostIsDecidedHost: the upstream is only ever told the host
// the policy decided (SPEC §7), whatever a client or a trusted proxy put in
// X-Forwarded-Host or in Forwarded's host=, trusted peer or not. The
// request goes to a path that is denied for app.example.com, with
// Host: other.example.com, so the forwarded headers claim the denied host.
func TestForwardedHostIsDecidedHost(t *testing.T) {
	up := newUpstream(t)
	for _, trusted := range []bool{false, true} {
		cfg := Config{Upstream: mustURL(t, up.URL)}
		if trusted {
			cfg.TrustedProxies = loopback()
		}
		_, srv := newGate(t, cfg)
		tests := []struct {
			name    string
			headers []string
			fwd     string // the Forwarded the upstream must get ("" = none)
		}{
			{name: "X-Forwarded-Host", headers: []string{"X-Forwarded-Host: app.example.com"}},
			{name: "two X-Forwarded-Host", headers: []string{"X-Forwarded-Host: app.example.com", "X-Forwarded-Host: app.example.com"}},
			{name: "X-Forwarded-Host list", headers: []string{"X-Forwarded-Host: other.example.com, app.example.com"}},
			{name: "Forwarded host", headers: []string{"Forwarded: for=203.0.113.7;host=app.example.com;proto=https"},
				fwd: `for=203.0.113.7;host="other.example.com";proto=https`},
			{name: "Forwarded quoted host, two elements", headers: []string{`Forwarded: host="app.example.com", for=198.51.100.1;HOST=app.example.com`},
				fwd: `host="other.example.com", for=198.51.100.1;host="other.example.com"`},
			{name: "Forwarded unparsable", headers: []string{`Forwarded: for=1;host="app.example.com`}},
			{name: "both", headers: []string{"X-Forwarded-Host: app.example.com", "Forwarded: host=app.example.com"},
				fwd: `host="other.example.com"`},
		}
		for _, tt := range tests {
			res := raw(t, srv, get("/hostonly/x", append([]string{"Host: other.example.com"}, tt.headers...)...))
			if res.Status != 200 {
				t.Errorf("trusted=%v %s: got status %d; want 200 (decided for other.example.com)", trusted, tt.name, res.Status)
				continue
			}
			h := up.take(t).Header
			if got := strings.Join(h["X-Forwarded-Host"], "|"); got != "other.example.com" {
				t.Errorf("trusted=%v %s: upstream X-Forwarded-Host %q; want the decided host %q", trusted, tt.name, got, "other.example.com")
			}
			want := tt.fwd
			if !trusted {
				want = "" // an untrusted peer's Forwarded is dropped
			}
			if got := strings.Join(h["Forwarded"], "|"); got != want {
				t.Errorf("trusted=%v %s: upstream Forwarded %q; want %q", trusted, tt.name, got, want)
			}
		}
	}
}

func TestForwardedWithHost(t *testing.T) {
	tests := []struct {
		in   []string
		host string
		want []string // nil: dropped
	}{
		{[]string{"for=1.2.3.4"}, "a.example", []string{"for=1.2.3.4"}},
		{[]string{"for=1.2.3.4;host=b.example"}, "a.example", []string{`for=1.2.3.4;host="a.example"`}},
		{[]string{`host="b.example:80"`}, "[::1]:8080", []string{`host="[::1]:8080"`}},
		{[]string{"for=1, for=2;host=b", "host=c"}, "a", []string{`for=1, for=2;host="a"`, `host="a"`}},
		{[]string{"for=1;host=b"}, "", []string{"for=1;"}},
		{[]string{`for="\"x\\";host=b`}, "a", []string{`for="\"x\\";host="a"`}},
		{[]string{"host=b"}, "", nil},
		{[]string{"host"}, "a", nil},
		{[]string{"host="}, "a", nil},
		{[]string{`host="b`}, "a", nil},
		{[]string{"host=b c"}, "a", nil},
		{[]string{"for=1", "host=b x"}, "a", nil},
		{[]string{"for =1"}, "a", nil},
	}
	for _, tt := range tests {
		got, ok := forwardedWithHost(tt.in, tt.host)
		if strings.Join(got, "|") != strings.Join(tt.want, "|") || ok != (tt.want != nil) {
			t.Errorf("forwardedWithHost(%q, %q): got %q, %v; want %q", tt.in, tt.host, got, ok, tt.want)
		}
	}
}

// TestChunkedClosesConnection: after a request with a chunked body, with or
// without a Content-Length beside it, the connection is closed after the
// response (RFC 9112 §6.1), so a second request in the same bytes, which
// a front end framing by Content-Length took for the body, is never served.
// Raw sockets: Go's client never sends both headers.
func TestChunkedClosesConnection(t *testing.T) {
	up := newUpstream(t)
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL)})
	smuggled := "GET /public/smuggled HTTP/1.1\r\nHost: app.example.com\r\n\r\n"
	tests := []struct{ name, req string }{
		{"CL and TE", "POST /public/a HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: " +
			itoa(len("0\r\n\r\n")+len(smuggled)) + "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE only", "POST /public/a HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + smuggled},
		{"TE refused path", "POST /admin HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE bad target", "POST /a%2fb HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, tt.req); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("first response: %v", err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if !res.Close { // ReadResponse moves Connection: close here
				t.Errorf("first response: no Connection: close")
			}
			if res2, err := http.ReadResponse(br, nil); err == nil {
				t.Errorf("second response on the same connection: %s; want the connection closed", res2.Status)
			}
			for {
				select {
				case s := <-up.got:
					if strings.Contains(s.RequestURI, "smuggled") {
						t.Fatalf("upstream received the smuggled %s %s", s.Method, s.RequestURI)
					}
					continue
				default:
				}
				break
			}
		})
	}
	// A request with a Content-Length keeps the connection open.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "POST /public/a HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 3\r\n\r\nabc"+smuggled)
	br := bufio.NewReader(conn)
	for i := 0; i < 2; i++ {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("keep-alive response %d: %v", i, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestCacheControlPrivate: a response to a request decided authenticate or
// step_up is for one user, so without a Cache-Control of its own it gets
// Cache-Control: private (a shared cache in front must not serve it to
// others); an explicit upstream value, even an empty one, is left alone,
// and allow decisions are not touched.
func TestCacheControlPrivate(t *testing.T) {
	e, send := newStepUpEnv(t, "", nil)
	alice := identity.Identity{Subject: "alice", Emails: []string{"alice@example.com"}, Session: "s1"}
	bearer := "Authorization: Bearer " + e.accessToken(t, alice.Subject, alice.Session, alice.Emails...)
	sf := "X-Second-Factor-Token: " + e.grant(t, alice).Token
	tests := []struct {
		name, req string
		want      []string // nil: no Cache-Control
	}{
		{"allow", get("/public/x"), nil},
		{"allow with upstream value", get("/public/x?cc=max-age%3D60"), []string{"max-age=60"}},
		{"authenticate", get("/profile/me", bearer), []string{"private"}},
		{"authenticate upstream public", get("/profile/me?cc=public,+max-age%3D60", bearer), []string{"public, max-age=60"}},
		{"authenticate upstream empty", get("/profile/me?cc=", bearer), []string{""}},
		{"step_up", get("/account/x", bearer, sf), []string{"private"}},
		{"step_up upstream no-store", get("/account/x?cc=no-store", bearer, sf), []string{"no-store"}},
		{"audit step_up", get("/audit-stepup/x"), []string{"private"}},
		{"default allow", get("/elsewhere"), nil},
	}
	for _, tt := range tests {
		res := send(tt.req)
		if res.Status != 200 {
			t.Errorf("%s: got status %d; want 200", tt.name, res.Status)
			continue
		}
		e.up.take(t)
		if got := res.Header["Cache-Control"]; strings.Join(got, "|") != strings.Join(tt.want, "|") || (got == nil) != (tt.want == nil) {
			t.Errorf("%s: Cache-Control %q; want %q", tt.name, got, tt.want)
		}
	}
}

// TestNoQueryInLogs sends requests whose query carries a secret, in every
// shape the gate logs about (refused targets of each form, a bad Host, a
// refused override, deny, audit, unauthenticated, challenged, upstream
// down), and checks that the secret reaches no log line: log lines name
// the path only (README: query strings are never logged).
func TestNoQueryInLogs(t *testing.T) {
	const secret = "SECRETq7"
	q := "access_token=" + secret
	up := newUpstream(t)
	lb, logger := newLogBuffer()
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL), Logger: logger})
	_, downSrv := newGate(t, Config{Upstream: mustURL(t, "http://127.0.0.1:1"), Logger: logger})
	reqs := []string{
		get("http:app.example.com/x?" + q),               // rootless
		get("http:/x?" + q),                              // rootless with a slash
		get("app.example.com:80?" + q),                   // authority-like
		get("http://app.example.com/x?" + q),             // absolute form
		get("*?" + q),                                    // asterisk-like
		get("/a%2fb?" + q),                               // bad path
		get("/a%zz?" + q),                                // bad escape
		get("/public/x?"+q, "Host: a.example,b.example"), // bad Host
		get("/items/1?_method=DEL%zz&" + q),              // undecodable override value
		get("/items/1?%zz_method=x&" + q),                // undecodable override key
		get("/items/1?_method%zz" + secret + "=1"),       // the secret in a key
		get("/admin?" + q),                               // deny
		get("/audit/x?" + q),                             // audit
		get("/profile/x?" + q),                           // unauthenticated
		get("/account/x?" + q),                           // challenged (no identity configured)
		reqLine("POST", "/items/1?"+q, "Content-Type: application/x-www-form-urlencoded", "Content-Length: 3", "", "a=b"),
	}
	for _, r := range reqs {
		raw(t, srv, r)
		for len(up.got) > 0 {
			<-up.got
		}
	}
	raw(t, downSrv, get("/public/x?"+q))
	out := lb.String()
	if strings.Contains(out, secret) {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, secret) {
				t.Errorf("log line carries the query: %s", line)
			}
		}
	}
	if !strings.Contains(out, "request_refused") || !strings.Contains(out, "upstream unavailable") {
		t.Fatalf("the requests did not log what this test checks:\n%s", out)
	}
}

// rawPost is a raw POST of body with the given Content-Type line (none
// when ct is "-") and extra header lines.
func rawPost(target, ct, body string, headers ...string) string {
	var b strings.Builder
	b.WriteString("POST " + target + " HTTP/1.1\r\nHost: app.example.com\r\n")
	if ct != "-" {
		b.WriteString("Content-Type: " + ct + "\r\n")
	}
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body)
	return b.String()
}

// TestOverrideSpellings sends method overrides spelt the way PHP, Rack,
// Laravel and ASP.NET read them, on raw connections so that the bytes are
// exactly these, to a path where POST is allowed and DELETE denied. Each
// must be decided as DELETE (403) and never forwarded; the controls, which
// no framework reads as DELETE, are forwarded.
func TestOverrideSpellings(t *testing.T) {
	up := newUpstream(t)
	_, srv := newGate(t, Config{Policy: mustPolicy(t, formRules()), Upstream: mustURL(t, up.URL)})
	const form = "application/x-www-form-urlencoded"
	mp := func(disposition string) (string, string) {
		return "multipart/form-data; boundary=XyZ",
			"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nx\r\n" +
				"--XyZ\r\nContent-Disposition: " + disposition + "\r\n\r\nDELETE\r\n--XyZ--\r\n"
	}
	mpCT, mpSingle := mp(`form-data; name='_method'`)
	_, mpSpace := mp(`form-data; name=" _method"`)
	_, mpDot := mp(`form-data; name=".method"`)
	_, mpNul := mp("form-data; name=\"_method\x00x\"")
	_, mpASP := mp(`form-data; name="X-HTTP-Method-Override"`)
	tests := []struct {
		name, req string
		want      int
	}{
		// The form Content-Type as PHP (';' ',' ' ') and Rack (';' ',') cut it.
		{"type cut at comma", rawPost("/posts/1", form+", text/plain", "_method=DELETE"), 403},
		{"type cut at space", rawPost("/posts/1", form+" x", "_method=DELETE"), 403},
		{"type cut at tab", rawPost("/posts/1", form+"\tx", "_method=DELETE"), 403},
		{"type upper case", rawPost("/posts/1", "APPLICATION/X-WWW-FORM-URLENCODED", "_method=DELETE"), 403},
		{"no type", rawPost("/posts/1", "-", "_method=DELETE"), 403},
		// PHP name mangling in form fields.
		{"leading spaces", rawPost("/posts/1", form, "+++_method=DELETE"), 403},
		{"leading encoded spaces", rawPost("/posts/1", form, "%20%20_method=DELETE"), 403},
		{"NUL ends the name", rawPost("/posts/1", form, "_method%00junk=DELETE"), 403},
		{"dot to underscore", rawPost("/posts/1", form, ".method=DELETE"), 403},
		{"space to underscore", rawPost("/posts/1", form, "+method=DELETE"), 403},
		{"PHP array", rawPost("/posts/1", form, "_method[x]=DELETE"), 403},
		{"Rack 2 leading brackets", rawPost("/posts/1", form, "[_method]=DELETE"), 403},
		{"ASP.NET form field", rawPost("/posts/1", form, "X-HTTP-Method-Override=DELETE"), 403},
		// The same in the query.
		{"query leading spaces", rawPost("/posts/1?++_method=DELETE", "-", ""), 403},
		{"query NUL", rawPost("/posts/1?_method%00x=DELETE", "-", ""), 403},
		{"query ASP.NET", rawPost("/posts/1?x-http-method-override=DELETE", "-", ""), 403},
		// Multipart part names, as PHP's rfc1867 reads them.
		{"multipart single quotes", rawPost("/posts/1", mpCT, mpSingle), 403},
		{"multipart leading space", rawPost("/posts/1", mpCT, mpSpace), 403},
		{"multipart dot", rawPost("/posts/1", mpCT, mpDot), 403},
		{"multipart NUL", rawPost("/posts/1", mpCT, mpNul), 403},
		{"multipart ASP.NET", rawPost("/posts/1", mpCT, mpASP), 403},
		{"multipart type cut at comma", rawPost("/posts/1", "multipart/form-data, x; boundary=XyZ", mpSingle), 403},
		{"multipart two boundaries", rawPost("/posts/1", "multipart/form-data; xboundary=XyZ; boundary=other", mpSingle), 403},
		// Laravel's JSON input.
		{"JSON", rawPost("/posts/1", "application/json", `{"_method":"DELETE"}`), 403},
		{"JSON in a form type list", rawPost("/posts/1", "text/plain; x=/json", `{"_method":"DELETE"}`), 403},
		// Controls: no framework reads DELETE here.
		{"plain form", rawPost("/posts/1", form, "title=x&method=DELETE"), 200},
		{"text body", rawPost("/posts/1", "text/plain", "_method=DELETE"), 200},
		{"name elsewhere", rawPost("/posts/1", form, "my_method=DELETE&_methods=DELETE"), 200},
		{"multipart other name", rawPost("/posts/1", mpCT, strings.ReplaceAll(mpSingle, "'_method'", `"title2"`)), 200},
		{"JSON nested", rawPost("/posts/1", "application/json", `{"data":{"_method":"DELETE"}}`), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := raw(t, srv, tt.req)
			if res.Status != tt.want {
				t.Errorf("got status %d; want %d", res.Status, tt.want)
			}
			if tt.want == 200 {
				up.take(t)
			} else {
				up.none(t)
			}
		})
	}
}
