package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/stepgate/stepgate/policy"
)

// Method overrides (SPEC §4): how stepgate reads them, in one place.
//
// Frameworks behind stepgate run a request as another method when it
// names one; a rule for DELETE must catch every spelling any of them
// honours, or it is bypassed. Every value found is an effective method
// (policy.Request.Overrides) and the strictest decision wins; where the
// request cannot be read for sure, every method is (AnyMethod).
//
//	what                      rule                                                 from
//	------------------------  ---------------------------------------------------  -----------------------------------------------
//	headers                   X-HTTP-Method-Override, X-HTTP-Method,               Symfony, Rack, Express method-override,
//	                          X-Method-Override; any case, '_' read as '-'          ASP.NET (Core), Spring; CGI/PHP merge '_' '-'
//	header values             each value, and each ','-separated part              Express takes the first part, proxies merge lines
//	query                     pairs split at '&' and ';', %XX and '+' decoded      PHP, Rack 2 and Django < 3.2 also split at ';'
//	body: is it a form?       POST (any case) only; Content-Type cut at the        PHP SAPI cuts at ';' ',' ' '; Rack::MediaType at
//	                          first ';' ',' or white space, case ignored           ';' ','; Tomcat, Django at ';'
//	  urlencoded              that type, or no Content-Type at all                 Rack form_data? (POST without type is a form)
//	  multipart               any multipart/* subtype                              Rack parseable_data?, PHP rfc1867
//	  JSON                    Content-Type containing "/json" or "+json", any      Laravel Request::isJson + getInputSource:
//	                          case, even beside a form type: top-level key         Symfony getMethod reads _method from it
//	names (query, form,       `_method` or `X-HTTP-Method-Override`, case          Rails/Rack, Laravel/Symfony, Spring
//	JSON, multipart)          ignored, in any reading of isMethodKey: as is, cut   HiddenHttpMethodFilter, Express; ASP.NET MVC
//	                          at '['; PHP: NUL ends it, leading spaces dropped,    GetHttpMethodOverride (form, query); PHP
//	                          ' ' '.' -> '_'; Rack 2: leading '[' ']' dropped      php_register_variable_ex; Rack normalize_params
//	multipart part names      name= as Go's mime reads it and as PHP's rfc1867     PHP php_ap_getword(_conf): ' quotes too
//	                          does ('"' or '\'' quotes, backslash escapes)
//
// Doubt, decided as every method the rules name (AnyMethod), or refused:
//
//   - a query key that may be an override but does not decode: 400 (the
//     target is refused, as malformed targets are);
//   - several Content-Type lines, a content coding, a multipart type
//     without one usable boundary (Go and PHP take the first "boundary",
//     Rack the last: two are doubt), a body longer than maxFormPeek or cut
//     short, a form, multipart or JSON body that does not parse, a part
//     header naming an override that Go's parser did not read, a JSON
//     override that is not a string: AnyMethod.
//
// Reading the body costs, so it is read only when the answer can change
// the decision: the policy restricts methods (policy.MethodSensitive), the
// request is a POST (any case: Symfony upper-cases the real method before
// it checks for POST), and the body is a form or JSON as above. Only the
// first maxFormPeek bytes are inspected; the upstream gets every byte
// unchanged. The trade-off: a form, upload or JSON document larger than
// maxFormPeek to a path where some method is stricter than POST gets that
// stricter decision.

// maxFormPeek bounds the body bytes inspected for `_method`.
const maxFormPeek = 64 << 10

// maxMethodValue bounds a multipart `_method` value; a longer one is no
// method name, so it is doubt.
const maxMethodValue = 32

// errUnreadableBody means the body could not be inspected because reading
// it failed; the request is refused with 400, never forwarded half-read.
var errUnreadableBody = errors.New("unreadable request body")

// formKind is how a framework parses a POST body.
type formKind uint8

const (
	notForm formKind = iota
	urlencodedForm
	multipartForm
	doubtfulForm // a body whose encoding cannot be read: AnyMethod
)

// bodyKind says how the frameworks may parse a POST body: as a form (of
// kind form, with boundary for multipart), and also as JSON.
type bodyKind struct {
	form     formKind
	boundary string
	json     bool
}

// formOverrides adds to pr the overrides of r's body, or sets pr.AnyMethod
// when they cannot all be known. It replaces r.Body with one that replays
// the inspected bytes, so the upstream gets the body as sent.
func formOverrides(r *http.Request, p *policy.Policy, pr *policy.Request) error {
	if !p.MethodSensitive() || !strings.EqualFold(r.Method, http.MethodPost) {
		return nil
	}
	kind := classifyBody(r.Header)
	if (kind.form == notForm && !kind.json) || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	if kind.form == doubtfulForm {
		pr.AnyMethod = true
		return nil
	}

	// The buffer is the body's size when it is known, so a small form
	// costs a small buffer; BENCHMARKS.md does not show a pool of
	// maxFormPeek buffers to be worth its release-after-replay rule.
	size := maxFormPeek
	if r.ContentLength > 0 && r.ContentLength < maxFormPeek {
		size = int(r.ContentLength)
	}
	buf := make([]byte, size)
	n, eof, complete, err := peekBody(r, buf)
	if err != nil {
		return fmt.Errorf("%w: %v", errUnreadableBody, err)
	}
	head := buf[:n]
	var doubt, d bool
	switch kind.form {
	case urlencodedForm:
		pr.Overrides, doubt = urlencodedOverrides(pr.Overrides, head, complete)
	case multipartForm:
		pr.Overrides, doubt = multipartOverrides(pr.Overrides, head, kind.boundary)
	}
	if kind.json {
		pr.Overrides, d = jsonOverrides(pr.Overrides, head, complete)
		doubt = doubt || d
	}
	// Rack, PHP and Symfony keep the last of repeated fields, so an
	// override beyond the inspected bytes would win over one inside them.
	pr.AnyMethod = pr.AnyMethod || doubt || !complete

	r.Body = &replayBody{head: head, rest: r.Body, eof: eof} // r.ContentLength is unchanged: every byte is still sent.
	return nil
}

// mediaType is the media type of a Content-Type as the most lenient
// framework reads it: cut at the first ';', ',' or white space (PHP's SAPI
// cuts at all three, Rack::MediaType at ';' and ','), spaces trimmed.
func mediaType(ct string) string {
	if i := strings.IndexAny(ct, ";, \t"); i >= 0 {
		ct = ct[:i]
	}
	return strings.TrimSpace(ct)
}

// classifyBody reads Content-Type and Content-Encoding as the frameworks
// would (the table above).
func classifyBody(h http.Header) bodyKind {
	cts := h["Content-Type"]
	if len(cts) > 1 {
		return bodyKind{form: doubtfulForm}
	}
	var ct string
	if len(cts) == 1 {
		ct = cts[0]
	}
	mt := mediaType(ct)
	var k bodyKind
	switch {
	case mt == "", strings.EqualFold(mt, "application/x-www-form-urlencoded"):
		k.form = urlencodedForm
	case len(mt) > len("multipart/") && strings.EqualFold(mt[:len("multipart/")], "multipart/"):
		k.form = multipartForm
	}
	// Laravel's isJson: Str::contains(CONTENT_TYPE, ['/json', '+json']).
	k.json = containsFold(ct, "/json") || containsFold(ct, "+json")
	if k.form == notForm && !k.json {
		return k
	}
	if ce := h["Content-Encoding"]; len(ce) > 0 && (len(ce) > 1 || !strings.EqualFold(strings.TrimSpace(ce[0]), "identity")) {
		return bodyKind{form: doubtfulForm}
	}
	if k.form != multipartForm {
		return k
	}
	// PHP takes the first "boundary" in the header (even inside another
	// parameter's name), Rack's regex the last: two are doubt.
	_, params, err := mime.ParseMediaType(ct)
	if err != nil || params["boundary"] == "" || countFold(ct, "boundary") != 1 {
		return bodyKind{form: doubtfulForm}
	}
	k.boundary = params["boundary"]
	return k
}

// countFold counts the occurrences of sub (lower case) in s, ASCII case
// ignored.
func countFold(s, sub string) int {
	n := 0
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			n++
		}
	}
	return n
}

// jsonOverrides adds the string values of top-level keys of a JSON body
// that may be read as an override (Laravel reads `_method` there). The
// body must be complete and parse; a top-level value that is not an
// object names no override. Doubt: cut, malformed, or an override that is
// not a string (Symfony would then keep POST, older versions fail).
func jsonOverrides(dst []string, body []byte, complete bool) ([]string, bool) {
	if !complete {
		return dst, true
	}
	if !json.Valid(body) {
		return dst, true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, _ := dec.Token()
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return dst, false // a scalar or an array has no key to read
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return dst, true
		}
		key, _ := kt.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return dst, true
		}
		if !isMethodKey(key) {
			continue
		}
		var m string
		if err := json.Unmarshal(v, &m); err != nil {
			return dst, true
		}
		dst = appendOverrides(dst, []string{m})
	}
	return dst, false
}

// peekBody reads the start of r.Body into buf: up to len(buf) bytes, or
// Content-Length when that is smaller. eof says the body reported its end;
// complete says buf[:n] is the whole body.
func peekBody(r *http.Request, buf []byte) (n int, eof, complete bool, err error) {
	limit := len(buf)
	if r.ContentLength > 0 && r.ContentLength < int64(limit) {
		limit = int(r.ContentLength)
	}
	for n < limit {
		k, err := r.Body.Read(buf[n:limit])
		n += k
		if err == io.EOF {
			return n, true, true, nil
		}
		if err != nil {
			return n, false, false, err
		}
	}
	return n, false, r.ContentLength == int64(n), nil
}

// urlencodedOverrides reads `_method` values from a urlencoded body the
// way queryOverrides reads the query. When the body was cut, the last,
// maybe partial, pair is left out. A key or value that does not decode is
// doubt rather than 400: the body is not the request target.
func urlencodedOverrides(dst []string, body []byte, complete bool) ([]string, bool) {
	if !complete {
		i := bytes.LastIndexAny(body, "&;")
		if i < 0 {
			return dst, true
		}
		body = body[:i]
	}
	out, err := queryOverrides(dst, string(body))
	return out, err != nil
}

// multipartOverrides reads override parts from a multipart body, which
// may be cut short. A part counts when any name it has to Go's parser or
// to PHP's (partNames) may be an override. It reports doubt when the body
// does not end with its closing boundary, is malformed, or carries more
// Content-Disposition lines naming an override than the parts it parsed
// (another parser could find parts this one does not, e.g. after the
// closing boundary).
func multipartOverrides(dst []string, body []byte, boundary string) ([]string, bool) {
	found := 0
	doubt := false
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF { // the closing boundary: the body is complete
			break
		}
		if err != nil {
			doubt = true
			break
		}
		isOverride, ok := partNames(part.Header.Get("Content-Disposition"))
		if !ok {
			doubt = true
			break
		}
		if !isOverride {
			continue
		}
		found++
		var v [maxMethodValue + 1]byte
		k, err := io.ReadFull(part, v[:])
		if err == nil || (err != io.EOF && err != io.ErrUnexpectedEOF) {
			doubt = true // too long to be a method, or cut short
			break
		}
		dst = appendOverrides(dst, []string{string(v[:k])})
	}
	if !doubt && methodDispositions(body) > found {
		doubt = true
	}
	return dst, doubt
}

// partNames reports whether a part's Content-Disposition names an override,
// as Go's mime.ParseMediaType reads its name parameter (whatever the
// disposition type: Rack reads the name of any part) or as PHP's rfc1867
// does. ok is false when Go cannot parse the header.
func partNames(cd string) (isOverride, ok bool) {
	if cd == "" {
		return false, true
	}
	var buf [2]string
	for _, n := range phpDispositionNames(cd, buf[:0]) {
		if isMethodKey(n) {
			isOverride = true
		}
	}
	_, params, err := mime.ParseMediaType(cd)
	if err != nil {
		return isOverride, false
	}
	return isOverride || isMethodKey(params["name"]), true
}

// methodDispositions counts the lines of body that are a Content-Disposition
// header naming an override, or one that does not parse but mentions
// "method".
func methodDispositions(body []byte) int {
	const prefix = "content-disposition:"
	count := 0
	for line := range bytes.Lines(body) {
		if len(line) < len(prefix) || !strings.EqualFold(string(line[:len(prefix)]), prefix) {
			continue
		}
		cd := strings.TrimSpace(string(line[len(prefix):]))
		if isOverride, ok := partNames(cd); isOverride || !ok && containsFold(cd, "method") {
			count++
		}
	}
	return count
}

// replayBody is a request body whose first bytes were read already: it
// yields head, then the rest of the original body.
type replayBody struct {
	head []byte        // inspected bytes not yet read
	rest io.ReadCloser // the original body, positioned after head
	eof  bool          // rest already reported io.EOF
}

func (b *replayBody) Read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		return n, nil
	}
	if b.eof {
		return 0, io.EOF
	}
	return b.rest.Read(p)
}

// Close closes the original body.
func (b *replayBody) Close() error { return b.rest.Close() }
