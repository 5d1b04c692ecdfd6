package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"llmcache/bench/fakeupstream"
)

// longChat is a system message and n-1 alternating user/assistant turns of English, Chinese, Japanese
// and emoji text, about 60 tokens each, ending with a user question; plus extra top-level fields.
func longChat(n int, extra string) (string, []json.RawMessage) {
	texts := []string{
		"Tell me more about the history of the Silk Road and its trading cities, briefly please.",
		"丝绸之路连接了中国和地中海，沿途的城市因贸易而繁荣，例如撒马尔罕和喀什。",
		"シルクロードは東西の文化交流を促進し、多くの都市が栄えました。🐫🏜️",
		"Emoji check 👩‍👩‍👧‍👦 🇯🇵 🇨🇳 — families and flags must arrive whole, never split in half.",
	}
	msgs := []json.RawMessage{json.RawMessage(`{"role":"system","content":"You are a patient history teacher."}`)}
	for i := 1; i < n; i++ {
		role := "user"
		if i%2 == 0 {
			role = "assistant"
		}
		content := "turn " + strconv.Itoa(i) + ": " + texts[i%len(texts)]
		b, _ := json.Marshal(map[string]string{"role": role, "content": content})
		msgs = append(msgs, b)
	}
	if n%2 == 0 { // end on a user message
		msgs[n-1] = json.RawMessage(`{"role":"user","content":"And what should I read next? 📚"}`)
	}
	all, _ := json.Marshal(msgs)
	return `{"model":"` + testModel + `","messages":` + string(all) + extra + `}`, msgs
}

// upstreamMessages decodes the messages of the i-th request the fake upstream received.
func upstreamMessages(t *testing.T, p *testProxy, i int) []json.RawMessage {
	t.Helper()
	reqs := p.Fake.Requests()
	if len(reqs) <= i {
		t.Fatalf("the upstream received %d requests, want at least %d", len(reqs), i+1)
	}
	var body struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(reqs[i].Body, &body); err != nil {
		t.Fatalf("upstream body: %v", err)
	}
	return body.Messages
}

func trimRuns(t *testing.T, p *testProxy) int64 {
	t.Helper()
	_, all := getByRoute(t, p)
	var ct struct {
		Runs int64 `json:"runs"`
	}
	json.Unmarshal(all["context_trim"], &ct)
	return ct.Runs
}

func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestE2EContextTrim: a 200-message chat over the window reaches the upstream as its system message plus
// the newest turns, each message byte for byte (CJK and emoji whole); the client is told how many messages
// were dropped; the same request again is a hit that does not tokenize.
func TestE2EContextTrim(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.ContextTrim.Enabled, c.ContextTrim.MaxContextTokens = true, 3000
	})
	body, sent := longChat(200, `,"max_tokens":500`)
	resp, b := p.Post("/v1/chat/completions", body)
	if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("status %d X-Cache %q: %s", resp.StatusCode, resp.Header.Get("X-Cache"), b)
	}
	got := upstreamMessages(t, p, 0)
	dropped, _ := strconv.Atoi(resp.Header.Get("X-Context-Trimmed"))
	if len(got) >= 200 || len(got) < 10 || dropped != 200-len(got) {
		t.Fatalf("upstream got %d messages, X-Context-Trimmed %q; want a trimmed chat and the count of what was dropped", len(got), resp.Header.Get("X-Context-Trimmed"))
	}
	if compact(t, got[0]) != compact(t, sent[0]) {
		t.Errorf("the system message was not kept first: %s", got[0])
	}
	// The kept history is the newest messages, contiguous, each as the client wrote it.
	for i := 1; i < len(got); i++ {
		want := sent[len(sent)-len(got)+i]
		if compact(t, got[i]) != compact(t, want) {
			t.Fatalf("upstream message %d = %s, want %s", i, got[i], want)
		}
	}
	if runs := trimRuns(t, p); runs != 1 {
		t.Fatalf("context_trim.runs = %d after one miss, want 1", runs)
	}

	resp, b2 := p.Post("/v1/chat/completions", body)
	if resp.Header.Get("X-Cache") != "HIT" || string(b2) != string(b) {
		t.Fatalf("the same request again: X-Cache %q, same bytes %v; want a hit", resp.Header.Get("X-Cache"), string(b2) == string(b))
	}
	if runs := trimRuns(t, p); runs != 1 {
		t.Errorf("context_trim.runs = %d after a hit, want still 1: hits must not tokenize", runs)
	}
	expectCalls(t, p, 1)

	// A chat that fits goes as it is, without the header.
	small, _ := longChat(6, "")
	resp, _ = p.Post("/v1/chat/completions", small)
	if resp.StatusCode != 200 || resp.Header.Get("X-Context-Trimmed") != "" {
		t.Errorf("a short chat: status %d, X-Context-Trimmed %q; want it untouched", resp.StatusCode, resp.Header.Get("X-Context-Trimmed"))
	}
	if got := upstreamMessages(t, p, 1); len(got) != 6 {
		t.Errorf("a short chat reached the upstream with %d of its 6 messages", len(got))
	}
}

// TestE2EContextTrimStreamed: a streamed miss that was trimmed says so on its live stream.
func TestE2EContextTrimStreamed(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.ContextTrim.Enabled, c.ContextTrim.MaxContextTokens = true, 2000
	})
	body, _ := longChat(120, `,"stream":true`)
	r := send(testClient, p.URL+"/v1/chat/completions", body)
	if r.err != nil || r.status != 200 || !strings.Contains(string(r.body), "data: [DONE]") {
		t.Fatalf("status %d err %v: %.300s", r.status, r.err, r.body)
	}
	if n, _ := strconv.Atoi(r.header.Get("X-Context-Trimmed")); n == 0 || n != 120-len(upstreamMessages(t, p, 0)) {
		t.Errorf("X-Context-Trimmed %q on the stream; the upstream got %d of 120 messages", r.header.Get("X-Context-Trimmed"), len(upstreamMessages(t, p, 0)))
	}
}

// TestE2EContextTrimOverflow: when the system message and the last message alone exceed the window, the
// client gets a 400 context_length_exceeded and the upstream is not called (reject, the default), or the
// request goes untrimmed (on_overflow = "pass").
func TestE2EContextTrimOverflow(t *testing.T) {
	huge := strings.Repeat("far too long a question ", 400) // ~2,000 tokens
	body := `{"model":"` + testModel + `","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"` + huge + `"}]}`
	t.Run("reject", func(t *testing.T) {
		p := newTestProxy(t, func(c *fileConfig) { c.ContextTrim.Enabled, c.ContextTrim.MaxContextTokens = true, 1000 })
		for range 2 {
			resp, b := p.Post("/v1/chat/completions", body)
			if resp.StatusCode != 400 || !strings.Contains(string(b), `"code":"context_length_exceeded"`) || !strings.Contains(string(b), `"type":"invalid_request_error"`) {
				t.Fatalf("status %d body %s, want 400 context_length_exceeded", resp.StatusCode, b)
			}
		}
		expectCalls(t, p, 0)
	})
	t.Run("pass", func(t *testing.T) {
		p := newTestProxy(t, func(c *fileConfig) {
			c.ContextTrim.Enabled, c.ContextTrim.MaxContextTokens, c.ContextTrim.OnOverflow = true, 1000, "pass"
		})
		resp, b := p.Post("/v1/chat/completions", body)
		if resp.StatusCode != 200 || resp.Header.Get("X-Context-Trimmed") != "" {
			t.Fatalf("status %d, X-Context-Trimmed %q: %s; want the request sent as it was", resp.StatusCode, resp.Header.Get("X-Context-Trimmed"), b)
		}
		if got := upstreamMessages(t, p, 0); len(got) != 4 {
			t.Errorf("the upstream got %d messages, want all 4", len(got))
		}
	})
}

// TestE2EContextTrimEndpointWindow: an endpoint's max_context_tokens wins over the global one.
func TestE2EContextTrimEndpointWindow(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.ContextTrim.Enabled, c.ContextTrim.MaxContextTokens = true, 1_000_000
		c.APIEndpoints[0].MaxContextTokens = 1500
	})
	body, _ := longChat(100, "")
	resp, _ := p.Post("/v1/chat/completions", body)
	if resp.StatusCode != 200 || resp.Header.Get("X-Context-Trimmed") == "" || len(upstreamMessages(t, p, 0)) >= 100 {
		t.Fatalf("status %d, X-Context-Trimmed %q, %d messages upstream; want the endpoint's 1,500-token window applied",
			resp.StatusCode, resp.Header.Get("X-Context-Trimmed"), len(upstreamMessages(t, p, 0)))
	}
}

// TestE2EContextTrimLargerWindowElsewhere: a chat whose last message alone overflows one endpoint's window
// goes to an endpoint whose window holds it, instead of a 400; one too long for every window gets the 400.
func TestE2EContextTrimLargerWindowElsewhere(t *testing.T) {
	fakes := startFakes(t, 2, fakeupstream.Options{})
	p := newTestProxy(t, func(c *fileConfig) {
		c.ContextTrim.Enabled, c.ContextTrim.MaxContextTokens = true, 1000
		c.APIEndpoints = []endpointConfig{
			{Name: "small", URL: fakes[0].URL(), Weight: 5},
			{Name: "large", URL: fakes[1].URL(), Weight: 1, MaxContextTokens: 8000},
		}
	})
	long := strings.Repeat("a question that needs a large window ", 150) // ~1,200 tokens
	for i := range 4 {
		body := `{"model":"` + testModel + `","messages":[{"role":"user","content":"` + long + strconv.Itoa(i) + `"}]}`
		resp, b := p.Post("/v1/chat/completions", body)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d: %s; want the large endpoint's answer", i, resp.StatusCode, b)
		}
	}
	if small, large := fakes[0].CallsTo("chat"), fakes[1].CallsTo("chat"); small != 0 || large != 4 {
		t.Errorf("calls: small %d, large %d; want every long chat on the large endpoint", small, large)
	}
	huge := strings.Repeat("far too long for any window ", 3000)
	resp, b := p.Post("/v1/chat/completions", `{"model":"`+testModel+`","messages":[{"role":"user","content":"`+huge+`"}]}`)
	if resp.StatusCode != 400 || !strings.Contains(string(b), "context_length_exceeded") {
		t.Errorf("a chat too long for every window: status %d: %s; want 400 context_length_exceeded", resp.StatusCode, b)
	}
	// Short chats still follow the weights.
	expectAll200(t, sendPool(p.URL+"/v1/chat/completions", distinctBodies("short", 12), 1, nil))
	if small := fakes[0].CallsTo("chat"); small < 8 {
		t.Errorf("short chats: small got %d of 12, want its weighted share (10)", small)
	}
}
