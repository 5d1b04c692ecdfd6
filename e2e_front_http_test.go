package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of the front end's HTTP handling: what fasthttp's parser does with odd requests, HEAD,
// and the headers a client names as hop-by-hop.

// rawExchange writes raw to the proxy on a new TCP connection and reads one answer, under a read
// deadline: no answer at all fails the test instead of hanging it. The body is read unless method is HEAD.
func rawExchange(t *testing.T, p *testProxy, method, raw string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("no answer to %q: %v", raw, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("answer to %q: reading the body: %v", raw, err)
	}
	return resp, body
}

// fasthttp waits for a CRLF CRLF to end a request's header block; a client that ends its lines with a bare
// LF (nc without -C, a hand-written script) used to wait five minutes for an answer (the read timeout).
func TestBareLFRequestGetsA400(t *testing.T) {
	t.Parallel()
	p := newTestProxy(t, nil)
	body := chatBody("bare lf")
	for _, raw := range []string{
		"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n",
		"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\n\n",
		"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\n",
		"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\r\n",
		"POST /v1/chat/completions HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nContent-Length: " +
			strconv.Itoa(len(body)) + "\n\n" + body,
	} {
		resp, got := rawExchange(t, p, "GET", raw)
		e := expectError(t, strconv.Quote(raw), resp, got, 400)
		if !strings.Contains(e.Error.Message, "CRLF") {
			t.Errorf("%q: message %q does not say what is wrong", raw, e.Error.Message)
		}
	}
	if n := p.Fake.CallsTo("chat"); n != 0 {
		t.Errorf("upstream got %d chat calls, want none", n)
	}
	// CRLF requests are unaffected, including one whose request line alone ends in a bare LF, which
	// fasthttp reads, and requests on the same connection after a body with blank lines in it.
	resp, got := rawExchange(t, p, "GET", "GET /healthz HTTP/1.1\nHost: 127.0.0.1\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Errorf("bare-LF request line, CRLF headers: %d %s", resp.StatusCode, got)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	pretty := "{\n\n\"model\": \"" + testModel + "\",\n\n\"messages\": [{\"role\": \"user\", \"content\": \"blank\\n\\nlines\"}]\n\n}\n\n"
	for i := range 3 {
		req := "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(pretty)) + "\r\n\r\n" + pretty
		if _, err := conn.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("keep-alive request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("keep-alive request %d: %d %s", i, resp.StatusCode, b)
		}
	}
}

// HEAD is answered wherever GET is, as HTTP asks: the same status and headers, no body.
func TestHeadIsAnsweredWhereverGetIs(t *testing.T) {
	t.Parallel()
	p := newTestProxy(t, nil)
	for _, path := range []string{"/healthz", "/v1/models", "/models", "/stats", "/metrics", "/dashboard"} {
		get, _ := p.Get(path)
		req, err := http.NewRequest("HEAD", p.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		head, body := p.do(req)
		if head.StatusCode != get.StatusCode || head.StatusCode != 200 {
			t.Errorf("HEAD %s: %d, GET: %d; want 200 for both", path, head.StatusCode, get.StatusCode)
		}
		if len(body) != 0 {
			t.Errorf("HEAD %s: a %d-byte body", path, len(body))
		}
		if got, want := head.Header.Get("Content-Type"), get.Header.Get("Content-Type"); got != want {
			t.Errorf("HEAD %s: Content-Type %q, GET's %q", path, got, want)
		}
	}
}

// Headers a client names in Connection: are hop-by-hop (RFC 9110 section 7.6.1): they are meant for this
// proxy and must not reach the upstream.
func TestHeadersNamedInConnectionAreNotForwarded(t *testing.T) {
	t.Parallel()
	p := newTestProxy(t, nil)
	body := chatBody("connection-named headers")
	raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
		"Connection: keep-alive, X-Hop-One\r\nX-Hop-One: one\r\nX-Hop-Two: two\r\nconnection: x-hop-two ,X-Hop-Three\r\n" +
		"X-Hop-Three: three\r\nX-Kept: kept\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	resp, got := rawExchange(t, p, "POST", raw)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	reqs := p.Fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(reqs))
	}
	h := reqs[0].Header
	for _, name := range []string{"X-Hop-One", "X-Hop-Two", "X-Hop-Three"} {
		if v, ok := h[name]; ok {
			t.Errorf("%s: %q reached the upstream", name, v)
		}
	}
	if h["X-Kept"] != "kept" {
		t.Errorf("X-Kept = %q, want it forwarded (headers: %v)", h["X-Kept"], h)
	}
}
