package main

import (
	"strings"
	"testing"
)

// Request headers may be as large as real credentials make them: a 5 KB bearer token (a JWT with many
// claims) is forwarded; headers past max_header_bytes get a 431 in OpenAI's shape.
func TestLargeHeadersUpToMaxHeaderBytes(t *testing.T) {
	t.Parallel()
	p := newTestProxy(t, nil)
	token := "Bearer " + strings.Repeat("t", 5000)
	r, b := p.Post("/v1/chat/completions", chatBody("big token"), "Authorization", token)
	expectCache(t, "a 5 KB bearer token", r, b, 200, "MISS")
	reqs := p.Fake.Requests()
	if len(reqs) != 1 || reqs[0].Header["Authorization"] != token {
		t.Fatalf("the upstream did not get the token whole")
	}
	r, b = p.Post("/v1/chat/completions", chatBody("big token"), "X-Big", strings.Repeat("h", 60000))
	expectCache(t, "60 KB of headers (under the default 64 KiB)", r, b, 200, "HIT")
	r, b = p.Post("/v1/chat/completions", chatBody("big token"), "X-Big", strings.Repeat("h", 70000))
	e := expectError(t, "70 KB of headers", r, b, 431)
	if !strings.Contains(e.Error.Message, "max_header_bytes") {
		t.Errorf("message %q does not name max_header_bytes", e.Error.Message)
	}

	small := newTestProxy(t, func(c *fileConfig) { c.MaxHeaderBytes = 8192 })
	r, b = small.Post("/v1/chat/completions", chatBody("small limit"), "Authorization", token)
	expectCache(t, "a 5 KB token under an 8 KiB limit", r, b, 200, "MISS")
	r, b = small.Post("/v1/chat/completions", chatBody("small limit"), "X-Big", strings.Repeat("h", 9000))
	expectError(t, "9 KB of headers over an 8 KiB limit", r, b, 431)
	r, b = small.Get("/healthz")
	if r.StatusCode != 200 {
		t.Errorf("after a 431: /healthz %d %s", r.StatusCode, b)
	}
}
