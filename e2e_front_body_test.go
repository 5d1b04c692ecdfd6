package main

import (
	"fmt"
	"strings"
	"testing"
)

// A chat body far larger than what fasthttp reads ahead of the handler (8 KiB) and than its read buffer
// (max_header_bytes, 64 KiB) is read whole, whether it comes with a Content-Length or chunked: the upstream
// gets it byte for byte, and the same request misses once, then hits, whichever way it was sent.
func TestLargeRequestBodyIsReadWhole(t *testing.T) {
	t.Parallel()
	p := newTestProxy(t, nil)
	content := strings.Repeat("a long message about caching proxies and eval harnesses. ", 5000) // ~285 KB
	body := chatBody(content)

	resp, got := p.Post("/v1/chat/completions", body)
	expectCache(t, "with a Content-Length", resp, got, 200, "MISS")
	if sent := p.Fake.Requests(); len(sent) != 1 || string(sent[0].Body) != body {
		t.Fatalf("the upstream got %d requests; want 1 with the client's %d-byte body", len(sent), len(body))
	}
	answer := string(got)

	var chunked strings.Builder
	for rest := body; len(rest) > 0; {
		n := min(len(rest), 5000)
		fmt.Fprintf(&chunked, "%x\r\n%s\r\n", n, rest[:n])
		rest = rest[n:]
	}
	chunked.WriteString("0\r\n\r\n")
	resp, got = rawExchange(t, p, "POST", "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"+
		"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked.String())
	expectCache(t, "chunked", resp, got, 200, "HIT")
	if string(got) != answer {
		t.Error("the chunked request's hit is not the first answer's bytes")
	}

	resp, got = p.Post("/v1/chat/completions", body)
	expectCache(t, "with a Content-Length again", resp, got, 200, "HIT")
	expectCalls(t, p, 1)
}
