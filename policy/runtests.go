package policy

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// RunTests runs tests against p and returns one *TestError per failure.
// Each test's request is "METHOD URL", with
// URL absolute (http://host/path?query) or origin-form ("/path", no host).
// The target goes through ParseTarget like a real request; a `_method`
// query parameter is an override, as the proxy collects it. A fragment is
// dropped, as clients never send it.
func (p *Policy) RunTests(tests []Test) []error {
	var errs []error
	for i, t := range tests {
		if err := p.runTest(t); err != nil {
			errs = append(errs, &TestError{Test: i, Request: t.Request, Err: err})
		}
	}
	return errs
}

func (p *Policy) runTest(t Test) error {
	if !t.Expect.valid() {
		return errors.New("expect is missing or not an action: want allow, authenticate, step_up or deny")
	}
	req, err := testRequest(t.Request)
	if err != nil {
		return err
	}
	d := p.Match(req)
	if d.Action != t.Expect || (t.Rule != "" && d.Rule != t.Rule) {
		want := t.Expect.String()
		if t.Rule != "" {
			want += fmt.Sprintf(" by rule %q", t.Rule)
		}
		return fmt.Errorf("got %s by rule %q; want %s", d.Action, d.Rule, want)
	}
	return nil
}

// testRequest turns "METHOD URL" into the Request the proxy would build.
func testRequest(line string) (Request, error) {
	method, rawURL, ok := strings.Cut(strings.TrimSpace(line), " ")
	rawURL = strings.TrimSpace(rawURL)
	if !ok || method == "" || rawURL == "" {
		return Request{}, errors.New(`request must be "METHOD URL", as in "GET http://app.example.com/admin"`)
	}
	var host, target string
	if strings.HasPrefix(rawURL, "/") {
		target = rawURL
	} else {
		u, err := url.Parse(rawURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return Request{}, fmt.Errorf("URL %q must be absolute (http://host/path) or a path starting with '/'", rawURL)
		}
		host = u.Host
		// The target as the client sends it: everything after the
		// authority, not u.RequestURI(), which would re-escape the path.
		rest := rawURL[len(u.Scheme)+3:]
		i := strings.IndexAny(rest, "/?#")
		if i < 0 {
			i = len(rest)
		}
		target = rest[i:]
	}
	target, _, _ = strings.Cut(target, "#")
	if target == "" || target[0] == '?' {
		target = "/" + target
	}
	tg, err := ParseTarget(target)
	if err != nil {
		return Request{}, fmt.Errorf("the proxy would refuse this request (400): %w", err)
	}
	req := Request{Method: method, Host: host, Path: tg.MatchPath}
	if tg.RawQuery != "" {
		if q, err := url.ParseQuery(tg.RawQuery); err == nil {
			req.Overrides = q["_method"]
		}
	}
	return req, nil
}
