package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"

	"github.com/stepgate/stepgate/policy"
)

// Method overrides in form bodies (SPEC §4).
//
// Rails (Rack::MethodOverride), Laravel and Symfony
// (Request::getMethod with enableHttpMethodParameterOverride) run a POST
// as the method named by a `_method` field of the form body, which is how
// their HTML forms send PUT, PATCH and DELETE. The header and query forms
// are read by BuildRequest; without reading the body too, a rule for
// DELETE would be bypassed by a plain form POST carrying `_method=delete`.
//
// Reading the body costs, so it is read only when the answer can change
// the decision: the policy restricts methods (policy.MethodSensitive), the
// request is a POST (any case: Symfony upper-cases the real method before
// it checks for POST), and the body is a form the frameworks parse. Only
// the first maxFormPeek bytes are inspected; the upstream gets every byte
// unchanged. When what was inspected cannot rule out a `_method` (the
// body is longer, or malformed), the request is decided as if it could be
// any method (policy.Request.AnyMethod): deny on doubt. The trade-off: a
// form or upload larger than maxFormPeek to a path where some method is
// stricter than POST gets that stricter decision.

// maxFormPeek bounds the body bytes inspected for `_method`.
const maxFormPeek = 64 << 10

// maxMethodValue bounds a multipart `_method` value; a longer one is no
// method name, so it is doubt.
const maxMethodValue = 32

// peekPool holds the maxFormPeek buffers, so that form posts do not
// allocate one each. A buffer goes back once its bytes were replayed.
var peekPool = sync.Pool{New: func() any {
	b := make([]byte, maxFormPeek)
	return &b
}}

// errUnreadableBody means the body could not be inspected because reading
// it failed; the request is refused with 400, never forwarded half-read.
var errUnreadableBody = errors.New("unreadable request body")

// formKind is how a framework parses a POST body.
type formKind uint8

const (
	notForm formKind = iota
	urlencodedForm
	multipartForm
	doubtfulForm // a form whose encoding cannot be read: AnyMethod
)

// formOverrides adds to pr the `_method` values of r's form body, or sets
// pr.AnyMethod when they cannot all be known. It replaces r.Body with one
// that replays the inspected bytes, so the upstream gets the body as sent.
func formOverrides(r *http.Request, p *policy.Policy, pr *policy.Request) error {
	if !p.MethodSensitive() || !strings.EqualFold(r.Method, http.MethodPost) {
		return nil
	}
	kind, boundary := classifyForm(r.Header)
	if kind == notForm || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	if kind == doubtfulForm {
		pr.AnyMethod = true
		return nil
	}

	bp := peekPool.Get().(*[]byte)
	n, eof, complete, err := peekBody(r, *bp)
	if err != nil {
		peekPool.Put(bp)
		return fmt.Errorf("%w: %v", errUnreadableBody, err)
	}
	head := (*bp)[:n]
	var doubt bool
	if kind == urlencodedForm {
		pr.Overrides, doubt = urlencodedOverrides(pr.Overrides, head, complete)
	} else {
		pr.Overrides, doubt = multipartOverrides(pr.Overrides, head, boundary)
	}
	// Rack, PHP and Symfony keep the last of repeated fields, so a
	// `_method` beyond the inspected bytes would win over one inside them.
	pr.AnyMethod = pr.AnyMethod || doubt || !complete

	rb := &replayBody{bp: bp, head: head, rest: r.Body, eof: eof}
	if n == 0 {
		rb.release()
	}
	r.Body = rb // r.ContentLength is unchanged: every byte is still sent.
	return nil
}

// classifyForm reads Content-Type and Content-Encoding as the frameworks
// would. Rack parses a POST without Content-Type as a urlencoded form, and
// any multipart type with its multipart parser. A body whose form cannot be
// read here (several Content-Type lines, a content coding, a multipart type
// without a usable boundary) is doubtful.
func classifyForm(h http.Header) (formKind, string) {
	cts := h["Content-Type"]
	if len(cts) > 1 {
		return doubtfulForm, ""
	}
	var ct string
	if len(cts) == 1 {
		ct = cts[0]
	}
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	var kind formKind
	switch {
	case mt == "", strings.EqualFold(mt, "application/x-www-form-urlencoded"):
		kind = urlencodedForm
	case len(mt) > len("multipart/") && strings.EqualFold(mt[:len("multipart/")], "multipart/"):
		kind = multipartForm
	default:
		return notForm, ""
	}
	if ce := h["Content-Encoding"]; len(ce) > 0 && (len(ce) > 1 || !strings.EqualFold(strings.TrimSpace(ce[0]), "identity")) {
		return doubtfulForm, ""
	}
	if kind == urlencodedForm {
		return kind, ""
	}
	_, params, err := mime.ParseMediaType(ct)
	if err != nil || params["boundary"] == "" {
		return doubtfulForm, ""
	}
	return kind, params["boundary"]
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

// multipartOverrides reads `_method` parts from a multipart body, which
// may be cut short. It reports doubt when the body does not end with its
// closing boundary, is malformed, or carries more Content-Disposition
// lines naming a `_method` than the parts it parsed (another parser could
// find parts this one does not, e.g. after the closing boundary).
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
		name, ok := partName(part.Header.Get("Content-Disposition"))
		if !ok {
			doubt = true
			break
		}
		if !isMethodKey(name) {
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

// partName returns the name parameter of a part's Content-Disposition,
// whatever its disposition type (Rack reads the name of any part). ok is
// false when the header does not parse.
func partName(cd string) (name string, ok bool) {
	if cd == "" {
		return "", true
	}
	_, params, err := mime.ParseMediaType(cd)
	if err != nil {
		return "", false
	}
	return params["name"], true
}

// methodDispositions counts the lines of body that are a Content-Disposition
// header naming a `_method` field, or one that does not parse but mentions
// "method".
func methodDispositions(body []byte) int {
	const prefix = "content-disposition:"
	count := 0
	for line := range bytes.Lines(body) {
		if len(line) < len(prefix) || !strings.EqualFold(string(line[:len(prefix)]), prefix) {
			continue
		}
		cd := strings.TrimSpace(string(line[len(prefix):]))
		if name, ok := partName(cd); ok && isMethodKey(name) || !ok && containsFold(cd, "method") {
			count++
		}
	}
	return count
}

// replayBody is a request body whose first bytes were read already: it
// yields head, then the rest of the original body. Its head lives in a
// pooled buffer, which goes back to the pool as soon as head was read.
// That happens inside Read, which the transport calls from one goroutine,
// so no Read can touch the buffer after; Close (maybe from another
// goroutine) never touches it.
type replayBody struct {
	bp   *[]byte       // pooled buffer holding head; nil once released
	head []byte        // inspected bytes not yet read
	rest io.ReadCloser // the original body, positioned after head
	eof  bool          // rest already reported io.EOF
}

func (b *replayBody) Read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		if len(b.head) == 0 {
			b.release()
		}
		return n, nil
	}
	if b.eof {
		return 0, io.EOF
	}
	return b.rest.Read(p)
}

// Close closes the original body.
func (b *replayBody) Close() error { return b.rest.Close() }

func (b *replayBody) release() {
	if b.bp != nil {
		b.head = nil
		peekPool.Put(b.bp)
		b.bp = nil
	}
}
