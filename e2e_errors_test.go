package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

// TestE2EBadRequests: every bad input gets its status and an OpenAI error body, nothing goes upstream, and
// the proxy still answers a good request afterwards.
func TestE2EBadRequests(t *testing.T) {
	p := newTestProxy(t, nil)
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	cases := []struct {
		name, path, body string
		status           int
		param            string // when set, error.param must be this
	}{
		{"malformed JSON", "/v1/chat/completions", `{"model":"fake-model",` + msgs, 400, ""},
		{"not JSON at all", "/v1/chat/completions", `hello`, 400, ""},
		{"empty body", "/v1/chat/completions", ``, 400, ""},
		{"trailing garbage", "/v1/chat/completions", `{"model":"fake-model",` + msgs + `} x`, 400, ""},
		{"top-level array", "/v1/chat/completions", `[{"model":"fake-model",` + msgs + `}]`, 400, ""},
		{"top-level string", "/v1/chat/completions", `"fake-model"`, 400, ""},
		{"missing model", "/v1/chat/completions", `{` + msgs + `}`, 400, "model"},
		{"model a number", "/v1/chat/completions", `{"model":7,` + msgs + `}`, 400, "model"},
		{"model null", "/v1/chat/completions", `{"model":null,` + msgs + `}`, 400, "model"},
		{"model empty", "/v1/chat/completions", `{"model":"",` + msgs + `}`, 400, "model"},
		{"missing messages", "/v1/chat/completions", `{"model":"fake-model"}`, 400, "messages"},
		{"messages an object", "/v1/chat/completions", `{"model":"fake-model","messages":{"role":"user","content":"hi"}}`, 400, "messages"},
		{"messages a string", "/v1/chat/completions", `{"model":"fake-model","messages":"hi"}`, 400, "messages"},
		{"messages empty", "/v1/chat/completions", `{"model":"fake-model","messages":[ ]}`, 400, "messages"},
		{"stream a string", "/v1/chat/completions", `{"model":"fake-model","stream":"yes",` + msgs + `}`, 400, "stream"},
		{"stream a number", "/v1/chat/completions", `{"model":"fake-model","stream":1,` + msgs + `}`, 400, "stream"},
		{"invalid UTF-8", "/v1/chat/completions", "{\"model\":\"fake-model\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", 400, ""},
		{"overlong UTF-8", "/v1/chat/completions", "{\"model\":\"fake-model\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc0\xaf\"}]}", 400, ""},
		{"duplicate key", "/v1/chat/completions", `{"model":"fake-model","model":"other",` + msgs + `}`, 400, ""},
		{"duplicate nested key", "/v1/chat/completions", `{"model":"fake-model","messages":[{"role":"user","role":"system","content":"hi"}]}`, 400, ""},
		{"lone high surrogate", "/v1/chat/completions", `{"model":"fake-model","messages":[{"role":"user","content":"\ud800"}]}`, 400, ""},
		{"lone low surrogate", "/v1/chat/completions", `{"model":"fake-model","messages":[{"role":"user","content":"x\udc00y"}]}`, 400, ""},
		{"completion without prompt", "/v1/completions", `{"model":"fake-model"}`, 400, "prompt"},
		{"unknown route", "/nothing/here", `{}`, 404, ""},
		{"unknown root route", "/chat", `{}`, 404, ""},
	}
	for _, c := range cases {
		r, b := p.Post(c.path, c.body)
		e := expectError(t, c.name, r, b, c.status)
		if c.param != "" && str(e.Error.Param) != c.param {
			t.Errorf("%s: error.param %s, want %q", c.name, e.Error.Param, c.param)
		}
	}

	r, b := p.Get("/v1/chat/completions")
	expectError(t, "GET on chat completions", r, b, 405)
	r, b = p.Get("/chat/completions")
	expectError(t, "GET on chat completions without /v1", r, b, 405)

	if n := p.Fake.Calls(); n != 0 {
		t.Fatalf("bad requests made %d upstream calls", n)
	}
	r, b = p.Post("/v1/chat/completions", chatBody("still alive"))
	expectCache(t, "a good request afterwards", r, b, 200, "MISS")
	if err := checkEcho(b, "still alive"); err != nil {
		t.Fatal(err)
	}
}

// TestE2EBodyTooLarge: a body over max_body_bytes is a 413 in OpenAI's shape; smaller bodies still work.
func TestE2EBodyTooLarge(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.MaxBodyBytes = 1024 })
	big := chatBody(strings.Repeat("x", 2048))
	r, b := p.Post("/v1/chat/completions", big)
	expectError(t, "over max_body_bytes", r, b, 413)
	expectCalls(t, p, 0)
	r, b = p.Post("/v1/chat/completions", chatBody("small enough"))
	expectCache(t, "a small request afterwards", r, b, 200, "MISS")
}

// TestE2EWithoutV1Prefix: the routes also answer without /v1, sharing entries with the /v1 spelling.
func TestE2EWithoutV1Prefix(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatBody("no prefix")
	r1, b1 := p.Post("/chat/completions", body)
	expectCache(t, "without /v1", r1, b1, 200, "MISS")
	if err := checkEcho(b1, "no prefix"); err != nil {
		t.Fatal(err)
	}
	r2, b2 := p.Post("/v1/chat/completions", body)
	expectCache(t, "with /v1", r2, b2, 200, "HIT")
	if !bytes.Equal(b1, b2) {
		t.Error("the /v1 hit differs from the answer without /v1")
	}
	expectCalls(t, p, 1)

	comp := `{"model":"fake-model","prompt":"once upon","max_tokens":8}`
	r3, b3 := p.Post("/completions", comp)
	expectCache(t, "completions without /v1", r3, b3, 200, "MISS")
	r4, b4 := p.Post("/v1/completions", comp)
	expectCache(t, "completions with /v1", r4, b4, 200, "HIT")
	if !bytes.Equal(b3, b4) {
		t.Error("completion hit differs from the miss")
	}
	if n := p.Fake.CallsTo("completions"); n != 1 {
		t.Errorf("upstream completions calls = %d, want 1", n)
	}
	// A completion and a chat never share an entry, even for look-alike bodies.
	if cacheKey(t, r3) == cacheKey(t, r1) {
		t.Error("a completion and a chat share a key")
	}
}

// TestE2EHealthz: /healthz answers 200 {"status":"ok"}.
func TestE2EHealthz(t *testing.T) {
	p := newTestProxy(t, nil)
	r, b := p.Get("/healthz")
	if r.StatusCode != 200 || string(b) != `{"status":"ok"}` {
		t.Fatalf("/healthz = %d %s, want 200 {\"status\":\"ok\"}", r.StatusCode, b)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("/healthz Content-Type %q", ct)
	}
}

// TestE2EUpstreamErrorStatus: an upstream error status and body pass through and are not cached.
func TestE2EUpstreamErrorStatus(t *testing.T) {
	p := newTestProxy(t, noRetries)
	body := chatBody("fails first")
	const upstreamBody = `{"error":{"message":"the model is overloaded","type":"server_error","param":null,"code":"overloaded_x"}}`
	p.Fake.FailNext(1, 500, upstreamBody, nil)
	r, b := p.Post("/v1/chat/completions", body)
	if r.StatusCode != 500 || string(b) != upstreamBody {
		t.Fatalf("upstream 500: client got %d %s, want 500 with the upstream body", r.StatusCode, b)
	}
	expectCalls(t, p, 1)
	r, b = p.Post("/v1/chat/completions", body)
	expectCache(t, "after a 500", r, b, 200, "MISS")
	expectCalls(t, p, 2)

	const rateBody = `{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}`
	p.Fake.FailNext(1, 429, rateBody, map[string]string{"Retry-After": "7"})
	body = chatBody("rate limited")
	r, b = p.Post("/v1/chat/completions", body)
	if r.StatusCode != 429 || string(b) != rateBody {
		t.Fatalf("upstream 429: client got %d %s, want 429 with the upstream body", r.StatusCode, b)
	}
	if ra := r.Header.Get("Retry-After"); ra != "7" {
		t.Errorf("upstream 429: Retry-After %q, want 7", ra)
	}
	r, b = p.Post("/v1/chat/completions", body)
	expectCache(t, "after a 429", r, b, 200, "MISS")
	expectCalls(t, p, 4)

	// A 4xx the upstream chose (here through the fake's X-Fake-Status) passes through too, uncached.
	r, b = p.Post("/v1/chat/completions", chatBody("bad for upstream"), "X-Fake-Status", "400")
	expectError(t, "upstream 400", r, b, 400)
	r, b = p.Post("/v1/chat/completions", chatBody("bad for upstream"))
	expectCache(t, "after an upstream 400", r, b, 200, "MISS")
	expectCalls(t, p, 6)
}

// TestE2EUpstreamHangUp: an upstream that drops the connection without answering is a 502 error; nothing
// is cached. (The built-in transport resends once a call whose connection closed before any byte of the
// answer, as a kept-alive connection the upstream closed while idle looks the same; curl does not.)
func TestE2EUpstreamHangUp(t *testing.T) {
	p := newTestProxy(t, noRetries)
	body := chatBody("hang up")
	p.Fake.HangUpNext(100)
	r, b := p.Post("/v1/chat/completions", body)
	expectError(t, "hang-up", r, b, 502)
	p.Fake.HangUpNext(0)
	r, b = p.Post("/v1/chat/completions", body)
	expectCache(t, "after a hang-up", r, b, 200, "MISS")
}

// TestE2EUpstreamUnreachable: an endpoint nobody listens on is a 502 error.
func TestE2EUpstreamUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	p := newTestProxy(t, func(c *fileConfig) { c.APIEndpoints[0].URL = closed })
	for range 2 {
		r, b := p.Post("/v1/chat/completions", chatBody("nobody home"))
		expectError(t, "unreachable upstream", r, b, 502)
	}
}

// TestE2EUpstreamTimeout: an upstream slower than timeout_seconds is a 504 error; nothing is cached.
func TestE2EUpstreamTimeout(t *testing.T) {
	// 2 s fits a normal answer (curl's start included) on a loaded machine; the slow one takes a minute.
	p := newTestProxy(t, func(c *fileConfig) { c.APIEndpoints[0].TimeoutSeconds = 2; c.MaxRetries = 0 })
	body := chatBody("too slow")
	r, b := p.Post("/v1/chat/completions", body, "X-Fake-Delay-Ms", "60000")
	expectError(t, "slow upstream", r, b, 504)
	r, b = p.Post("/v1/chat/completions", body)
	expectCache(t, "after a timeout", r, b, 200, "MISS")
	expectCalls(t, p, 2)
}

// TestE2EEmptyAnswerNotStored: an empty answer is passed through but never stored.
func TestE2EEmptyAnswerNotStored(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatBody("EMPTY")
	r1, b1 := p.Post("/v1/chat/completions", body)
	expectCache(t, "empty answer", r1, b1, 200, "MISS")
	if c, err := answerContent(b1); err != nil || c != "" {
		t.Fatalf("the fake's EMPTY answer has content %q (%v)", c, err)
	}
	if cs := r1.Header.Get("Cache-Status"); strings.Contains(cs, "stored") {
		t.Errorf("empty answer: Cache-Status %q says stored", cs)
	}
	r2, b2 := p.Post("/v1/chat/completions", body)
	expectCache(t, "empty answer again", r2, b2, 200, "MISS")
	if bytes.Equal(b1, b2) {
		t.Error("the second empty answer is the first's bytes: it was served from a cache")
	}
	expectCalls(t, p, 2)
	p.Stop()
	if n := openCacheDB(t, p.DBPath).count(); n != 0 {
		t.Fatalf("%d rows on disk after empty answers only", n)
	}
}

// TestE2ENonEmptyAnswersStored: tool calls and refusals are answers, so they are stored.
func TestE2ENonEmptyAnswersStored(t *testing.T) {
	p := newTestProxy(t, nil)
	for _, content := range []string{"TOOL: weather in Paris", "REFUSE this"} {
		body := chatBody(content)
		r, b := p.Post("/v1/chat/completions", body)
		expectCache(t, content, r, b, 200, "MISS")
		r, b2 := p.Post("/v1/chat/completions", body)
		expectCache(t, content+" again", r, b2, 200, "HIT")
		if !bytes.Equal(b, b2) {
			t.Errorf("%s: hit differs from miss", content)
		}
	}
	expectCalls(t, p, 2)
}

// TestE2EFirstByteTimeout: an upstream that sends nothing within first_byte_timeout_seconds is a 504 naming
// that timeout, although the whole-call timeout is far away.
func TestE2EFirstByteTimeout(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.MaxRetries = 0
		c.APIEndpoints[0].FirstByteTimeoutSeconds = 1
		c.APIEndpoints[0].TimeoutSeconds = 600
	})
	r, b := p.Post("/v1/chat/completions", chatBody("slow to start"), "X-Fake-Delay-Ms", "60000")
	expectError(t, "first byte timeout", r, b, 504)
	if !strings.Contains(string(b), "first byte") {
		t.Errorf("the error does not say which timeout fired: %s", b)
	}
}
