package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzForwardAuthSameRefusal checks, for any method and request target,
// that the forward-auth endpoints never let pass what proxy mode would not
// forward: a 200 from auth-request or ext-authz means proxy mode forwards
// the same request too. (Forward-auth may be stricter: raw "//", and POSTs
// whose body it cannot see.)
func FuzzForwardAuthSameRefusal(f *testing.F) {
	for _, s := range [][2]string{
		{"GET", "/public/x"}, {"GET", "/admin/x"}, {"DELETE", "/items/1"}, {"PUT", "/items/1?_method=delete"},
		{"GET", "/public/..%2Fadmin"}, {"GET", "/public/%2e%2e/admin"}, {"GET", "/%2561dmin"}, {"GET", "//admin"},
		{"GET", "/public/x%00"}, {"GET", "/public;x/../admin"}, {"POST", "/items/1"}, {"get", "/items/1"},
		{"GET", "/public/x?%5Fmethod=DELETE"}, {"GET", "/hostonly/x#frag"}, {"GET", "/public/%C3%A9"},
	} {
		f.Add(s[0], s[1])
	}
	p := mustPolicy(f, testRules())
	g, err := New(Config{
		Policy: p, Upstream: mustURL(f, "http://upstream.invalid"), Metrics: NewMetrics(nil), Logger: quietLogger(),
		TrustedProxies: loopback(), ForwardAuth: true,
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
		}),
	})
	if err != nil {
		f.Fatal(err)
	}
	serve := func(method, uri string, h http.Header) int {
		r := &http.Request{Method: method, RequestURI: uri, URL: &url.URL{Path: "/"}, Host: "app.example.com",
			Header: h, RemoteAddr: "127.0.0.1:1234", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: http.NoBody}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		return w.Code
	}
	f.Fuzz(func(t *testing.T, method, target string) {
		if !isToken(method) || strings.ContainsAny(target, "\r\n\x00") {
			return // no server or header carries these
		}
		proxied := serve(method, target, http.Header{})
		if !strings.HasPrefix(target, "/") {
			// A proxy's X-Original-URL and Envoy's path always have the
			// "/" after the host; proxy mode refuses such targets anyway.
			if proxied != http.StatusBadRequest {
				t.Errorf("proxy mode answers %d to %s %q; want 400", proxied, method, target)
			}
			return
		}
		ar := serve("GET", "/.stepup/authz/auth-request", http.Header{
			"X-Original-Method": {method}, "X-Original-Url": {"http://app.example.com" + target}})
		if ar == http.StatusOK && proxied != http.StatusOK {
			t.Errorf("auth-request lets %s %q pass; proxy mode answers %d", method, target, proxied)
		}
		ea := serve(method, "/.stepup/authz/ext-authz"+target, http.Header{})
		if ea == http.StatusOK && proxied != http.StatusOK {
			t.Errorf("ext-authz lets %s %q pass; proxy mode answers %d", method, target, proxied)
		}
	})
}

// roundTripFunc is an in-memory upstream.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
