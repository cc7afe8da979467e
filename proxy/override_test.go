package proxy

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stepgate/stepgate/policy"
)

// formRules allows POST but denies DELETE under /posts: the policy of an
// app whose HTML forms delete with `_method=delete`.
func formRules() policy.Config {
	return policy.Config{
		Default: policy.Allow,
		Rules: []policy.Rule{
			{Name: "posts-post", Methods: []string{"POST"}, Paths: []string{"/posts/**"}, Action: policy.Allow},
			{Name: "posts-delete", Methods: []string{"DELETE"}, Paths: []string{"/posts/**"}, Action: policy.Deny},
		},
	}
}

// bodyUpstream records the body and Content-Length of every request.
type bodyUpstream struct {
	*httptest.Server
	got chan bodySeen
}

type bodySeen struct {
	method        string
	body          []byte
	contentLength int64
	chunked       bool
}

func newBodyUpstream(t *testing.T) *bodyUpstream {
	t.Helper()
	u := &bodyUpstream{got: make(chan bodySeen, 4)}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("upstream read body: %v", err)
		}
		u.got <- bodySeen{method: r.Method, body: b, contentLength: r.ContentLength, chunked: slices.Contains(r.TransferEncoding, "chunked")}
		io.WriteString(w, "upstream ok")
	}))
	t.Cleanup(u.Close)
	return u
}

// post sends a POST to the gate with a known length (or chunked when
// chunked is set) and returns the status.
func post(t *testing.T, srv *httptest.Server, path, contentType string, body []byte, chunked bool) int {
	t.Helper()
	var rd io.Reader = bytes.NewReader(body)
	if chunked {
		rd = io.MultiReader(rd) // hides the length: the client sends chunks
	}
	req, err := http.NewRequest("POST", srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	c := *srv.Client()
	c.Timeout = 10 * time.Second
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// multipartBody builds a multipart/form-data body from fields in order.
func multipartBody(t *testing.T, fields ...[2]string) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, f := range fields {
		var w io.Writer
		var err error
		if f[0] == "file" {
			w, err = mw.CreateFormFile("file", "big.bin")
		} else {
			w, err = mw.CreateFormField(f[0])
		}
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, f[1])
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), mw.FormDataContentType()
}

// TestFormMethodOverrideEndToEnd posts HTML-form bodies through a Gate
// whose policy allows POST and denies DELETE.
func TestFormMethodOverrideEndToEnd(t *testing.T) {
	up := newBodyUpstream(t)
	_, srv := newGate(t, Config{Policy: mustPolicy(t, formRules()), Upstream: mustURL(t, up.URL)})

	big := strings.Repeat("a", maxFormPeek+10)
	mpDelete, mpDeleteCT := multipartBody(t, [2]string{"title", "x"}, [2]string{"_method", "delete"})
	mpBig, mpBigCT := multipartBody(t, [2]string{"title", "x"}, [2]string{"file", big})
	mpSmall, mpSmallCT := multipartBody(t, [2]string{"title", "x"}, [2]string{"file", "small file"})
	// A late `_method` wins in Rack and PHP, so an earlier one inside the
	// inspected bytes does not settle the method.
	mpLate, mpLateCT := multipartBody(t, [2]string{"_method", "patch"}, [2]string{"file", big}, [2]string{"_method", "delete"})
	const form = "application/x-www-form-urlencoded"
	tests := []struct {
		name        string
		path        string
		contentType string
		body        []byte
		chunked     bool
		want        int
	}{
		{"urlencoded _method=delete", "/posts/1", form, []byte("title=x&_method=delete"), false, 403},
		{"urlencoded, chunked", "/posts/1", form, []byte("_method=DELETE"), true, 403},
		{"urlencoded with charset", "/posts/1", form + "; charset=UTF-8", []byte("_method=delete"), false, 403},
		{"no Content-Type is a form to Rack", "/posts/1", "", []byte("_method=delete"), false, 403},
		{"PHP array key", "/posts/1", form, []byte("_method[]=delete"), false, 403},
		{"encoded key", "/posts/1", form, []byte("%5Fmethod=delete"), false, 403},
		{"_method beyond the inspected bytes", "/posts/1", form, []byte("big=" + big + "&_method=DELETE"), false, 403},
		{"_method beyond the inspected bytes, chunked", "/posts/1", form, []byte("big=" + big + "&_method=DELETE"), true, 403},
		{"multipart _method part", "/posts/1", mpDeleteCT, mpDelete, false, 403},
		{"multipart _method after a big file", "/posts/1", mpLateCT, mpLate, false, 403},
		// The trade-off: an upload longer than maxFormPeek could hide a
		// `_method` after it, so it gets the strictest decision for its
		// path (here deny, as DELETE).
		{"multipart upload over the limit", "/posts/1", mpBigCT, mpBig, false, 403},
		{"multipart upload under the limit", "/posts/1", mpSmallCT, mpSmall, false, 200},
		{"urlencoded without _method", "/posts/1", form, []byte("title=hello+world&body=%E2%9C%93&method=x"), false, 200},
		{"urlencoded _method=put", "/posts/1", form, []byte("_method=put"), false, 200},
		// Laravel reads _method from a JSON body (Request::isJson).
		{"JSON _method", "/posts/1", "application/json", []byte(`{"title":"x","_method":"delete"}`), false, 403},
		{"JSON +json type", "/posts/1", "application/vnd.api+json; charset=utf-8", []byte(`{"_method":"DELETE"}`), false, 403},
		{"JSON escaped key", "/posts/1", "application/json", []byte(`{"\u005fmethod":"delete"}`), false, 403},
		{"JSON repeated key", "/posts/1", "application/json", []byte(`{"_method":"put","_method":"delete"}`), false, 403},
		{"JSON beside a form type", "/posts/1", "application/x-www-form-urlencoded, application/json", []byte(`{"_method":"delete"}`), false, 403},
		{"JSON non-string _method", "/posts/1", "application/json", []byte(`{"_method":["delete"]}`), false, 403},
		{"JSON malformed", "/posts/1", "application/json", []byte(`{"_method":"put"`), false, 403},
		{"JSON without _method", "/posts/1", "application/json", []byte(`{"title":"x","nested":{"_method":"delete"}}`), false, 200},
		{"JSON _method=put", "/posts/1", "application/json", []byte(`{"_method":"put"}`), false, 200},
		{"JSON array", "/posts/1", "application/json", []byte(`[{"_method":"delete"}]`), false, 200},
		{"JSON too big", "/posts/1", "application/json", []byte(`{"big":"` + big + `","_method":"delete"}`), false, 403},
		{"a big form where no method is stricter", "/other/1", form, []byte("big=" + big + "&_method=DELETE"), false, 200},
		{"a big upload where no method is stricter", "/other/1", mpBigCT, mpBig, true, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := post(t, srv, tt.path, tt.contentType, tt.body, tt.chunked)
			// Take what the upstream received before any check fails, so
			// that a failing case cannot fill the channel and block later ones.
			var s bodySeen
			var forwarded bool
			select {
			case s = <-up.got:
				forwarded = true
			default:
			}
			if got != tt.want {
				t.Fatalf("got status %d; want %d", got, tt.want)
			}
			switch {
			case forwarded:
				if tt.want != 200 {
					t.Fatalf("upstream received %s; want nothing forwarded", s.method)
				}
				// What the policy saw is what the upstream gets: every
				// byte, with the length as sent.
				if !bytes.Equal(s.body, tt.body) {
					t.Errorf("upstream body: got %d bytes %.40q; want the %d bytes sent %.40q", len(s.body), s.body, len(tt.body), tt.body)
				}
				wantCL := int64(len(tt.body))
				if tt.chunked {
					wantCL = -1
				}
				if s.contentLength != wantCL || s.chunked != tt.chunked {
					t.Errorf("upstream Content-Length: got %d (chunked %v); want %d (chunked %v)", s.contentLength, s.chunked, wantCL, tt.chunked)
				}
			case tt.want == 200:
				t.Fatal("upstream received nothing; want the request forwarded")
			}
		})
	}
}

// countingBody records how many bytes were read from it and whether it was
// read at all.
type countingBody struct {
	r     io.Reader
	reads atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	b.reads.Add(1)
	return b.r.Read(p)
}
func (b *countingBody) Close() error { return nil }

// TestFormBodyNotReadWhenUnneeded checks that the body is left alone when
// it cannot change the decision. Each request is denied, so any read is
// the Gate's own, not the upstream's.
func TestFormBodyNotReadWhenUnneeded(t *testing.T) {
	noMethods := mustPolicy(t, policy.Config{Default: policy.Allow, Rules: []policy.Rule{
		{Name: "posts", Paths: []string{"/posts/**"}, Action: policy.Deny},
	}})
	getDenied := mustPolicy(t, policy.Config{Default: policy.Allow, Rules: []policy.Rule{
		{Name: "posts-get", Methods: []string{"GET"}, Paths: []string{"/posts/**"}, Action: policy.Deny},
		{Name: "posts", Paths: []string{"/posts/**"}, Action: policy.Deny},
	}})
	tests := []struct {
		name   string
		policy *policy.Policy
		method string
		ct     string
	}{
		{"policy without methods", noMethods, "POST", "application/x-www-form-urlencoded"},
		{"GET with a form body", getDenied, "GET", "application/x-www-form-urlencoded"},
		{"PUT with a form body", getDenied, "PUT", "application/x-www-form-urlencoded"},
		{"POST with text/plain", getDenied, "POST", "text/plain"},
		{"POST with XML", getDenied, "POST", "application/xml"},
	}
	for _, tt := range tests {
		g, err := New(Config{Policy: tt.policy, Upstream: mustURL(t, "http://upstream.invalid"), Transport: fixedTransport{}, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		body := &countingBody{r: strings.NewReader("_method=delete")}
		r := httptest.NewRequest(tt.method, "/posts/1", nil)
		r.Body, r.ContentLength = body, int64(len("_method=delete"))
		r.Header.Set("Content-Type", tt.ct)
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code != 403 {
			t.Errorf("%s: got status %d; want 403", tt.name, w.Code)
		}
		if n := body.reads.Load(); n != 0 || r.Body != io.ReadCloser(body) {
			t.Errorf("%s: body read %d times (replaced: %v); want it untouched", tt.name, n, r.Body != io.ReadCloser(body))
		}
	}
}

// TestFormBodyReadError checks that a body that fails to read is refused
// with 400 and never forwarded.
func TestFormBodyReadError(t *testing.T) {
	g, err := New(Config{Policy: mustPolicy(t, formRules()), Upstream: mustURL(t, "http://upstream.invalid"), Transport: failTransport{t}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/posts/1", nil)
	r.Body = io.NopCloser(io.MultiReader(strings.NewReader("title=x&"), iotest.ErrReader(errors.New("connection reset"))))
	r.ContentLength = -1
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Code != 400 {
		t.Errorf("got status %d; want 400", w.Code)
	}
	if strings.Contains(w.Body.String(), "connection reset") {
		t.Errorf("response leaks the read error: %q", w.Body.String())
	}
}

// failTransport fails the test if anything is forwarded.
type failTransport struct{ t *testing.T }

func (f failTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.t.Errorf("forwarded %s %s; want nothing forwarded", r.Method, r.URL)
	return nil, errors.New("not forwarded")
}

// TestFormOverrides checks what formOverrides reads from each kind of body.
func TestFormOverrides(t *testing.T) {
	p := mustPolicy(t, formRules())
	mp, mpCT := multipartBody(t, [2]string{"title", "x"}, [2]string{"_method", "delete"}, [2]string{"payment_method", "card"})
	mpLong, mpLongCT := multipartBody(t, [2]string{"_method", strings.Repeat("D", maxMethodValue+1)})
	mpPlain, mpPlainCT := multipartBody(t, [2]string{"payment_method", "PUT"})
	boundaryOf := func(ct string) string { return ct[strings.Index(ct, "boundary=")+len("boundary="):] }
	// Go's parser stops at the closing boundary; another one could read
	// the part after it.
	smuggled := append(slices.Clone(mpPlain), []byte("--"+boundaryOf(mpPlainCT)+"\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--"+boundaryOf(mpPlainCT)+"--\r\n")...)
	const form = "application/x-www-form-urlencoded"
	tests := []struct {
		name      string
		method    string
		header    http.Header
		body      string
		overrides []string
		any       bool
	}{
		{"urlencoded", "POST", http.Header{"Content-Type": {form}}, "a=1&_method=delete", []string{"delete"}, false},
		{"lower-case post (Symfony upper-cases it)", "post", http.Header{"Content-Type": {form}}, "_method=delete", []string{"delete"}, false},
		{"upper-case type", "POST", http.Header{"Content-Type": {"Application/X-WWW-Form-Urlencoded"}}, "_method=put", []string{"put"}, false},
		{"PHP-mangled key", "POST", http.Header{"Content-Type": {form}}, ".method=delete&+method=put", []string{"delete", "put"}, false},
		{"two values", "POST", http.Header{"Content-Type": {form}}, "_method=PUT&_method=DELETE", []string{"PUT", "DELETE"}, false},
		{"undecodable value", "POST", http.Header{"Content-Type": {form}}, "_method=%zz", nil, true},
		{"no _method", "POST", http.Header{"Content-Type": {form}}, "a=1&payment_method=card", nil, false},
		{"several Content-Type lines", "POST", http.Header{"Content-Type": {form, "text/plain"}}, "a=1", nil, true},
		{"compressed", "POST", http.Header{"Content-Type": {form}, "Content-Encoding": {"gzip"}}, "\x1f\x8b", nil, true},
		{"multipart", "POST", http.Header{"Content-Type": {mpCT}}, string(mp), []string{"delete"}, false},
		{"multipart/mixed is parsed too", "POST", http.Header{"Content-Type": {strings.Replace(mpCT, "form-data", "mixed", 1)}}, string(mp), []string{"delete"}, false},
		{"multipart without _method", "POST", http.Header{"Content-Type": {mpPlainCT}}, string(mpPlain), nil, false},
		{"multipart value too long", "POST", http.Header{"Content-Type": {mpLongCT}}, string(mpLong), nil, true},
		{"multipart part after the closing boundary", "POST", http.Header{"Content-Type": {mpPlainCT}}, string(smuggled), nil, true},
		{"multipart without boundary", "POST", http.Header{"Content-Type": {"multipart/form-data"}}, string(mp), nil, true},
		{"multipart with another boundary", "POST", http.Header{"Content-Type": {"multipart/form-data; boundary=other"}}, string(mp), nil, true},
		{"multipart cut short", "POST", http.Header{"Content-Type": {mpCT}}, string(mp[:len(mp)-10]), []string{"delete"}, true},
		{"GET", "GET", http.Header{"Content-Type": {form}}, "_method=delete", nil, false},
		{"text/plain", "POST", http.Header{"Content-Type": {"text/plain"}}, "_method=delete", nil, false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, "/posts/1", strings.NewReader(tt.body))
		r.Header = tt.header
		tg, err := policy.ParseTarget(r.RequestURI)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := buildRequest(r, tg, p)
		if err != nil {
			t.Errorf("%s: got error %v", tt.name, err)
			continue
		}
		if !slices.Equal(pr.Overrides, tt.overrides) || pr.AnyMethod != tt.any {
			t.Errorf("%s: got overrides %q, AnyMethod %v; want %q, %v", tt.name, pr.Overrides, pr.AnyMethod, tt.overrides, tt.any)
		}
		if b, _ := io.ReadAll(r.Body); string(b) != tt.body {
			t.Errorf("%s: body after inspection: got %q; want %q", tt.name, b, tt.body)
		}
	}
}

// TestReplayBody checks the replayed body with iotest's reader checks, for
// bodies shorter than, equal to and longer than the inspected bytes, with
// and without a known length.
func TestReplayBody(t *testing.T) {
	p := mustPolicy(t, formRules())
	for _, size := range []int{1, 100, maxFormPeek - 1, maxFormPeek, maxFormPeek + 1, 3*maxFormPeek + 7} {
		for _, known := range []bool{true, false} {
			body := []byte("_method=put&x=" + strings.Repeat("y", max(size-14, 0)))[:size]
			r := httptest.NewRequest("POST", "/posts/1", nil)
			r.Body = io.NopCloser(iotest.HalfReader(bytes.NewReader(body)))
			r.ContentLength = -1
			if known {
				r.ContentLength = int64(size)
			}
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			tg, _ := policy.ParseTarget(r.RequestURI)
			pr, err := buildRequest(r, tg, p)
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			wantAny := size > maxFormPeek || size == maxFormPeek && !known
			if pr.AnyMethod != wantAny {
				t.Errorf("size %d known %v: AnyMethod got %v; want %v", size, known, pr.AnyMethod, wantAny)
			}
			if wantCL := map[bool]int64{true: int64(size), false: -1}[known]; r.ContentLength != wantCL {
				t.Errorf("size %d: ContentLength got %d; want %d", size, r.ContentLength, wantCL)
			}
			if err := iotest.TestReader(r.Body, body); err != nil {
				t.Errorf("size %d known %v: replayed body: %v", size, known, err)
			}
		}
	}
}

// TestFormOverrideDecision checks the policy decision for AnyMethod on the
// route to the Gate's decision: a POST form to a path where no method rule
// applies keeps its own decision.
func TestFormOverrideDecision(t *testing.T) {
	p := mustPolicy(t, formRules())
	body := "big=" + strings.Repeat("a", maxFormPeek) + "&_method=DELETE"
	for _, tt := range []struct{ path, rule string }{{"/posts/1", "posts-delete"}, {"/other", "default"}} {
		r := httptest.NewRequest("POST", tt.path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		tg, _ := policy.ParseTarget(r.RequestURI)
		pr, err := buildRequest(r, tg, p)
		if err != nil {
			t.Fatal(err)
		}
		if d := p.Match(pr); d.Rule != tt.rule {
			t.Errorf("%s: got rule %q; want %q", tt.path, d.Rule, tt.rule)
		}
	}
}
