package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// These tests pin what UpstreamTimeout measures (SPEC §13): the upstream's
// slowness, never the client's steady upload. The timeout is short (300ms)
// and the uploads longer than it.

const uploadTimeout = 300 * time.Millisecond

// steadyUpload sends a POST to path on srv over a raw connection (Go's
// client buffers small writes): the headers at once, then n chunks of size
// bytes, one every gap, as a client on a slow link does; chunked uses
// Transfer-Encoding: chunked instead of a Content-Length. It returns the
// response and when the last byte of the body was written.
func steadyUpload(t *testing.T, srv *httptest.Server, path string, n, size int, gap time.Duration, chunked bool) (*http.Response, []byte, time.Time) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	head := "POST " + path + " HTTP/1.1\r\nHost: app.example.com\r\nContent-Type: application/octet-stream\r\n"
	if chunked {
		head += "Transfer-Encoding: chunked\r\n\r\n"
	} else {
		head += "Content-Length: " + strconv.Itoa(n*size) + "\r\n\r\n"
	}
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{'x'}, size)
	if chunked {
		chunk = append([]byte(fmt.Sprintf("%x\r\n", size)), append(chunk, "\r\n"...)...)
	}
	tick := time.NewTicker(gap)
	defer tick.Stop()
	for i := range n {
		if i > 0 {
			<-tick.C // the client's pace
		}
		if _, err := conn.Write(chunk); err != nil {
			// The gate answered and closed early; read what it said.
			break
		}
	}
	if chunked {
		io.WriteString(conn, "0\r\n\r\n")
	}
	sent := time.Now()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, body, sent
}

// countingUpstream answers 200 with the number of body bytes it read.
func countingUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, n)
	}))
	t.Cleanup(up.Close)
	return up
}

// TestUpstreamTimeoutSteadyUpload: an upload that takes 1.5s, five times
// the timeout, at a steady pace reaches a healthy upstream whole, with a
// known length and chunked alike.
func TestUpstreamTimeoutSteadyUpload(t *testing.T) {
	up := countingUpstream(t)
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL), Transport: NewTransport(uploadTimeout), UpstreamTimeout: uploadTimeout})
			const n, size = 16, 1024
			start := time.Now()
			res, got, _ := steadyUpload(t, srv, "/public/upload", n, size, 100*time.Millisecond, chunked)
			took := time.Since(start)
			if res.StatusCode != 200 || string(got) != strconv.Itoa(n*size) {
				t.Fatalf("after %v: got %d %q; want 200 %d (the upload was cut)", took, res.StatusCode, got, n*size)
			}
			if took < 5*uploadTimeout {
				t.Errorf("the upload took %v; the test wants it longer than 5 × %v", took, uploadTimeout)
			}
		})
	}
}

// TestUpstreamTimeoutUpstreamStopsReading: an upstream that stops reading
// the body is slow, and the exchange ends with 504 about one timeout later,
// although the client would send the whole body at once.
func TestUpstreamTimeoutUpstreamStopsReading(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.CopyN(io.Discard, r.Body, 1024) // then nothing
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(release) })
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL), Transport: NewTransport(uploadTimeout), UpstreamTimeout: uploadTimeout})
	// 64 MiB: far more than the socket buffers between gate and upstream.
	const size = 64 << 20
	req, err := http.NewRequest("POST", srv.URL+"/public/upload", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	start := time.Now()
	res, err := srv.Client().Do(req)
	took := time.Since(start)
	if err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("got %d after %v; want 504", res.StatusCode, took)
		}
	}
	// The gate may answer 504 and close before the client has sent its
	// body, which the client sees as an error on write; either way the
	// exchange must end about one timeout after the upstream stopped.
	if took > 5*time.Second {
		t.Errorf("the exchange ended after %v; want about %v", took, uploadTimeout)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestUpstreamTimeoutAfterBody: an upstream that reads the whole body and
// then hangs gets 504 one timeout after the body's end, not after the
// upload's start.
func TestUpstreamTimeoutAfterBody(t *testing.T) {
	release := make(chan struct{})
	read := make(chan time.Time, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		read <- time.Now()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(release) })
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL), Transport: NewTransport(uploadTimeout), UpstreamTimeout: uploadTimeout})
	res, _, _ := steadyUpload(t, srv, "/public/upload", 8, 512, 100*time.Millisecond, false)
	end := time.Now()
	if res.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("got %d; want 504", res.StatusCode)
	}
	select {
	case at := <-read:
		if wait := end.Sub(at); wait < uploadTimeout-50*time.Millisecond || wait > 5*time.Second {
			t.Errorf("504 came %v after the body was read; want about %v", wait, uploadTimeout)
		}
	default:
		t.Fatal("the upstream never read the whole body")
	}
}
