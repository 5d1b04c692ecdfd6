package fakeupstream

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, url, body string, hdr map[string]string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return result{resp.StatusCode, resp.Header, b}
}

func post(t *testing.T, s *Server, path, body string) result {
	t.Helper()
	return do(t, http.MethodPost, s.URL()+path, body, nil)
}

type chatResponse struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	Created           int64  `json:"created"`
	Model             string `json:"model"`
	SystemFingerprint string `json:"system_fingerprint"`
	Choices           []struct {
		Index   int `json:"index"`
		Message struct {
			Role             string  `json:"role"`
			Content          *string `json:"content"`
			Refusal          *string `json:"refusal"`
			ReasoningContent *string `json:"reasoning_content"`
			ToolCalls        []struct {
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"message"`
		Logprobs     any    `json:"logprobs"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

func decodeChat(t *testing.T, r result) chatResponse {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var c chatResponse
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatalf("bad JSON %v: %s", err, r.body)
	}
	return c
}

func userChat(model, content string, extra string) string {
	b, _ := json.Marshal(content)
	return `{"model":"` + model + `","messages":[{"role":"system","content":"be brief"},{"role":"user","content":` +
		string(b) + `}]` + extra + `}`
}

func idSeq(t *testing.T, id, prefix string) int {
	t.Helper()
	if !strings.HasPrefix(id, prefix) {
		t.Fatalf("id %q does not start with %q", id, prefix)
	}
	n, err := strconv.Atoi(strings.TrimPrefix(id, prefix))
	if err != nil {
		t.Fatalf("id %q: %v", id, err)
	}
	return n
}

func TestChatNonStream(t *testing.T) {
	s := start(t, Options{})
	r := post(t, s, "/v1/chat/completions", string(ChatRequest(7)))
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if len(r.body) < 1150 || len(r.body) > 1450 {
		t.Errorf("default response body is %d bytes, want about 1.3 KB", len(r.body))
	}
	c := decodeChat(t, r)
	if c.Object != "chat.completion" || c.Model != "fake-model" || c.SystemFingerprint != "fp_fake" {
		t.Errorf("envelope: %+v", c)
	}
	if d := time.Since(time.Unix(c.Created, 0)); d < -time.Minute || d > time.Minute {
		t.Errorf("created %d is not now", c.Created)
	}
	if len(c.Choices) != 1 {
		t.Fatalf("choices: %d", len(c.Choices))
	}
	ch := c.Choices[0]
	if ch.Index != 0 || ch.FinishReason != "stop" || ch.Message.Role != "assistant" || ch.Message.Refusal != nil ||
		ch.Logprobs != nil || ch.Message.Content == nil {
		t.Fatalf("choice: %s", r.body)
	}
	var req struct {
		Messages []struct{ Content string } `json:"messages"`
	}
	if err := json.Unmarshal(ChatRequest(7), &req); err != nil {
		t.Fatal(err)
	}
	want := "echo: " + req.Messages[1].Content[:200]
	if !strings.HasPrefix(*ch.Message.Content, want) {
		t.Errorf("content %q does not start with %q", *ch.Message.Content, want)
	}
	if c.Usage.CompletionTokens != len(strings.Fields(*ch.Message.Content)) {
		t.Errorf("completion_tokens %d for %d words", c.Usage.CompletionTokens, len(strings.Fields(*ch.Message.Content)))
	}
	if c.Usage.PromptTokens <= 0 || c.Usage.CompletionTokens <= 0 ||
		c.Usage.TotalTokens != c.Usage.PromptTokens+c.Usage.CompletionTokens {
		t.Errorf("usage %+v", c.Usage)
	}
	// Key order as OpenAI sends it.
	for _, key := range []string{`{"id":`, `,"object":`, `,"created":`, `,"model":`, `,"system_fingerprint":`, `,"choices":`, `,"usage":`} {
		if !bytes.Contains(r.body, []byte(key)) {
			t.Errorf("body lacks %s", key)
		}
	}
	if !bytes.HasPrefix(r.body, []byte(`{"id":"chatcmpl-fake-`)) ||
		!bytes.Contains(r.body, []byte(`"message":{"role":"assistant","content":"echo: `)) ||
		!bytes.Contains(r.body, []byte(`"refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":`)) {
		t.Errorf("unexpected layout: %s", r.body)
	}

	// Same request: same content, new id.
	c2 := decodeChat(t, post(t, s, "/chat/completions", string(ChatRequest(7))))
	if *c2.Choices[0].Message.Content != *ch.Message.Content {
		t.Error("content is not deterministic")
	}
	if idSeq(t, c2.ID, "chatcmpl-fake-") <= idSeq(t, c.ID, "chatcmpl-fake-") {
		t.Errorf("ids do not increase: %s then %s", c.ID, c2.ID)
	}
	c3 := decodeChat(t, post(t, s, "/v1/chat/completions", string(ChatRequest(8))))
	if *c3.Choices[0].Message.Content == *ch.Message.Content {
		t.Error("different requests gave the same content")
	}
}

func TestAnswerBytes(t *testing.T) {
	s := start(t, Options{AnswerBytes: 3000})
	c := decodeChat(t, post(t, s, "/v1/chat/completions", userChat("m", "hi", "")))
	if n := len(*c.Choices[0].Message.Content); n < 2900 || n > 3000 {
		t.Errorf("content length %d, want about 3000", n)
	}
	s2 := start(t, Options{AnswerBytes: 10})
	c = decodeChat(t, post(t, s2, "/v1/chat/completions", userChat("m", "hello world", "")))
	if got := *c.Choices[0].Message.Content; got != "echo: hello world" {
		t.Errorf("content %q", got)
	}
}

func TestChatSpecialCases(t *testing.T) {
	s := start(t, Options{})

	c := decodeChat(t, post(t, s, "/v1/chat/completions", userChat("gpt-x", "TOOL: weather?", "")))
	ch := c.Choices[0]
	if ch.Message.Content != nil || ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 {
		t.Fatalf("tool answer: %+v", ch)
	}
	tc := ch.Message.ToolCalls[0]
	if tc.ID != "call_"+strings.TrimPrefix(c.ID, "chatcmpl-fake-") || tc.Type != "function" ||
		tc.Function.Name != "get_weather" || tc.Function.Arguments != `{"city":"Paris"}` {
		t.Errorf("tool call: %+v", tc)
	}
	if c.Model != "gpt-x" {
		t.Errorf("model %q", c.Model)
	}

	c = decodeChat(t, post(t, s, "/v1/chat/completions", userChat("m", "EMPTY", "")))
	if p := c.Choices[0].Message.Content; p == nil || *p != "" || c.Choices[0].FinishReason != "stop" {
		t.Errorf("empty answer: %+v", c.Choices[0])
	}

	c = decodeChat(t, post(t, s, "/v1/chat/completions", userChat("m", "REFUSE please", "")))
	if m := c.Choices[0].Message; m.Content != nil || m.Refusal == nil || *m.Refusal != "I can't help with that" {
		t.Errorf("refusal: %+v", m)
	}

	c = decodeChat(t, post(t, s, "/v1/chat/completions", userChat("m", "THINK: why?", "")))
	if m := c.Choices[0].Message; m.ReasoningContent == nil || *m.ReasoningContent != "thinking..." ||
		m.Content == nil || !strings.HasPrefix(*m.Content, "echo: THINK: why?") {
		t.Errorf("reasoning: %+v", m)
	}

	c = decodeChat(t, post(t, s, "/v1/chat/completions", userChat("m", "hi", `,"n":3`)))
	if len(c.Choices) != 3 {
		t.Fatalf("n=3 gave %d choices", len(c.Choices))
	}
	for i, ch := range c.Choices {
		if ch.Index != i {
			t.Errorf("choice %d has index %d", i, ch.Index)
		}
	}

	// Content parts and a non-user last message.
	body := `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"part one"},{"type":"image_url","image_url":{"url":"x"}}]}]}`
	c = decodeChat(t, post(t, s, "/v1/chat/completions", body))
	if !strings.HasPrefix(*c.Choices[0].Message.Content, "echo: part one ") {
		t.Errorf("content parts: %q", *c.Choices[0].Message.Content)
	}
	// Escaping round-trips.
	c = decodeChat(t, post(t, s, "/v1/chat/completions", userChat("m", "quote \" backslash \\ nl \n tab \t é ✓", "")))
	if !strings.HasPrefix(*c.Choices[0].Message.Content, "echo: quote \" backslash \\ nl \n tab \t é ✓ ") {
		t.Errorf("escaping: %q", *c.Choices[0].Message.Content)
	}
}

func checkOpenAIError(t *testing.T, r result, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("not an OpenAI error body (%v): %s", err, r.body)
	}
	if !bytes.HasPrefix(r.body, []byte(`{"error":{"message":`)) || !bytes.Contains(r.body, []byte(`"param":`)) ||
		!bytes.Contains(r.body, []byte(`"code":`)) {
		t.Errorf("error layout: %s", r.body)
	}
}

func TestBadRequests(t *testing.T) {
	s := start(t, Options{})
	for _, body := range []string{
		`{"model":`,
		`not json`,
		`{"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"m"}`,
		`{"model":"m","messages":[]}`,
		`{"model":"m","messages":[{"role":"user","content":5}]}`,
		`{"model":"m","messages":"hi"}`,
	} {
		checkOpenAIError(t, post(t, s, "/v1/chat/completions", body), 400)
	}
	for _, body := range []string{
		`{"model":"m"}`,
		`{"model":"m","input":""}`,
		`{"model":"m","input":[]}`,
		`{"model":"m","input":[""]}`,
		`{"model":"m","input":[[]]}`,
		`{"model":"m","input":5}`,
		`{"model":"m","input":[true]}`,
		`{"model":"m","input":["a",1]}`,
		`{"model":"m","input":{"a":1}}`,
		`{"input":"x"}`,
		`{"model":"m","input":"x","dimensions":0}`,
		`{"model":"m","input":"x","encoding_format":"hex"}`,
	} {
		checkOpenAIError(t, post(t, s, "/v1/embeddings", body), 400)
	}
	for _, body := range []string{`{"model":"m"}`, `{"model":"m","prompt":[]}`, `{"prompt":"x"}`, `{"model":"m","prompt":{}}`} {
		checkOpenAIError(t, post(t, s, "/v1/completions", body), 400)
	}
	if n := s.CallsTo("chat"); n != 7 {
		t.Errorf("CallsTo(chat) = %d", n)
	}
	if n := s.Calls(); n != 7+12+4 {
		t.Errorf("Calls = %d", n)
	}
}

func TestRoutesModels404And405(t *testing.T) {
	s := start(t, Options{Models: []string{"a", "b"}})
	for _, p := range []string{"/v1/models", "/models"} {
		r := do(t, http.MethodGet, s.URL()+p, "", nil)
		want := `{"object":"list","data":[{"id":"a","object":"model","created":1700000000,"owned_by":"fakeupstream"},` +
			`{"id":"b","object":"model","created":1700000000,"owned_by":"fakeupstream"}]}`
		if r.status != 200 || string(r.body) != want {
			t.Errorf("models: %d %s", r.status, r.body)
		}
	}
	checkOpenAIError(t, post(t, s, "/v1/nope", `{}`), 404)
	checkOpenAIError(t, do(t, http.MethodGet, s.URL()+"/v1/chat/completions", "", nil), 405)
	checkOpenAIError(t, post(t, s, "/v1/models", `{}`), 405)
	if s.CallsTo("models") != 3 || s.Calls() != 5 {
		t.Errorf("calls: models=%d all=%d", s.CallsTo("models"), s.Calls())
	}
	if s.CallsTo("bogus") != 0 {
		t.Error("CallsTo(bogus) != 0")
	}
}

type sseEvent struct {
	data string
	at   time.Duration
}

// readSSE reads events from body until EOF or error, timestamping each.
func readSSE(body io.Reader, t0 time.Time) ([]sseEvent, error) {
	br := bufio.NewReader(body)
	var evs []sseEvent
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return evs, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(data) > 0 {
				evs = append(evs, sseEvent{strings.Join(data, "\n"), time.Since(t0)})
				data = nil
			}
			continue
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			data = append(data, d)
		}
	}
}

func openStream(t *testing.T, client *http.Client, url, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

type chunk struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	Created           int64  `json:"created"`
	Model             string `json:"model"`
	SystemFingerprint string `json:"system_fingerprint"`
	Choices           []struct {
		Index int `json:"index"`
		Delta struct {
			Role             *string `json:"role"`
			Content          *string `json:"content"`
			ReasoningContent *string `json:"reasoning_content"`
			Refusal          *string `json:"refusal"`
			ToolCalls        []struct {
				Index    int    `json:"index"`
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		Text         *string `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

func parseChunks(t *testing.T, evs []sseEvent) []chunk {
	t.Helper()
	var out []chunk
	for _, e := range evs {
		if e.data == "[DONE]" {
			continue
		}
		var c chunk
		if err := json.Unmarshal([]byte(e.data), &c); err != nil {
			t.Fatalf("chunk %q: %v", e.data, err)
		}
		out = append(out, c)
	}
	return out
}

func TestStreamTiming(t *testing.T) {
	s := start(t, Options{ChunkDelay: 50 * time.Millisecond})
	t0 := time.Now()
	resp := openStream(t, http.DefaultClient, s.URL()+"/v1/chat/completions", userChat("m", "hello there", `,"stream":true`), nil)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
	}
	evs, err := readSSE(resp.Body, t0)
	if err != io.EOF {
		t.Fatalf("read: %v", err)
	}
	if len(evs) < 10 {
		t.Fatalf("only %d events", len(evs))
	}
	// Times are read by the client, which a loaded machine may hold up: only their distance from the request
	// is a bound the server guarantees (it sleeps the delay before every event but the first).
	if last := evs[len(evs)-1].at; last < time.Duration(len(evs)-1)*50*time.Millisecond {
		t.Errorf("%d events within %v: the chunk delay was not applied", len(evs), last)
	}
	if evs[len(evs)-1].data != "[DONE]" {
		t.Errorf("last event %q", evs[len(evs)-1].data)
	}
	chunks := parseChunks(t, evs)
	var content strings.Builder
	for i, c := range chunks {
		if c.Object != "chat.completion.chunk" || c.ID != chunks[0].ID || c.Model != "m" || c.SystemFingerprint != "fp_fake" || len(c.Choices) != 1 {
			t.Fatalf("chunk %d: %+v", i, c)
		}
		if c.Choices[0].Delta.Content != nil {
			content.WriteString(*c.Choices[0].Delta.Content)
		}
		fin := c.Choices[0].FinishReason
		if (fin != nil) != (i == len(chunks)-1) {
			t.Errorf("chunk %d finish_reason %v", i, fin)
		}
	}
	if !strings.Contains(evs[0].data, `"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`) {
		t.Errorf("first chunk %s", evs[0].data)
	}
	if !strings.Contains(evs[len(evs)-2].data, `"delta":{},"logprobs":null,"finish_reason":"stop"}]}`) {
		t.Errorf("finish chunk %s", evs[len(evs)-2].data)
	}
	// The streamed content equals the non-streamed content.
	c := decodeChat(t, post(t, s, "/v1/chat/completions", userChat("m", "hello there", "")))
	if content.String() != *c.Choices[0].Message.Content {
		t.Errorf("streamed %q\nplain %q", content.String(), *c.Choices[0].Message.Content)
	}
	if strings.Contains(evs[1].data, `"usage"`) {
		t.Error("usage present without include_usage")
	}
}

func TestStreamIncludeUsageAndSpecial(t *testing.T) {
	s := start(t, Options{})
	resp := openStream(t, http.DefaultClient, s.URL()+"/v1/chat/completions",
		userChat("m", "hi", `,"stream":true,"stream_options":{"include_usage":true}`), nil)
	evs, err := readSSE(resp.Body, time.Now())
	resp.Body.Close()
	if err != io.EOF {
		t.Fatal(err)
	}
	chunks := parseChunks(t, evs)
	for i, e := range evs[:len(evs)-2] {
		if !strings.HasSuffix(e.data, `,"usage":null}`) {
			t.Errorf("event %d lacks usage:null: %s", i, e.data)
		}
	}
	u := chunks[len(chunks)-1]
	if len(u.Choices) != 0 || u.Usage == nil || u.Usage.TotalTokens != u.Usage.PromptTokens+u.Usage.CompletionTokens || u.Usage.CompletionTokens == 0 {
		t.Errorf("usage chunk: %s", evs[len(evs)-2].data)
	}
	if !strings.Contains(evs[len(evs)-2].data, `"choices":[],"usage":{"prompt_tokens":`) {
		t.Errorf("usage chunk layout: %s", evs[len(evs)-2].data)
	}
	// Usage matches the non-streamed usage.
	c := decodeChat(t, post(t, s, "/v1/chat/completions", userChat("m", "hi", "")))
	if c.Usage.CompletionTokens != u.Usage.CompletionTokens || c.Usage.PromptTokens != u.Usage.PromptTokens {
		t.Errorf("usage differs: %+v vs %+v", c.Usage, *u.Usage)
	}

	// Tool call stream.
	resp = openStream(t, http.DefaultClient, s.URL()+"/v1/chat/completions", userChat("m", "TOOL: x", `,"stream":true`), nil)
	evs, _ = readSSE(resp.Body, time.Now())
	resp.Body.Close()
	chunks = parseChunks(t, evs)
	var args strings.Builder
	var name, id string
	for _, c := range chunks {
		for _, tc := range c.Choices[0].Delta.ToolCalls {
			args.WriteString(tc.Function.Arguments)
			if tc.Function.Name != "" {
				name, id = tc.Function.Name, tc.ID
			}
		}
	}
	if args.String() != `{"city":"Paris"}` || name != "get_weather" || !strings.HasPrefix(id, "call_") {
		t.Errorf("tool stream: args %q name %q id %q", args.String(), name, id)
	}
	if f := chunks[len(chunks)-1].Choices[0].FinishReason; f == nil || *f != "tool_calls" {
		t.Errorf("tool finish: %v", f)
	}

	// Reasoning and n=2.
	resp = openStream(t, http.DefaultClient, s.URL()+"/v1/chat/completions", userChat("m", "THINK: x", `,"stream":true,"n":2`), nil)
	evs, _ = readSSE(resp.Body, time.Now())
	resp.Body.Close()
	contents := map[int]string{}
	reasoning := 0
	finishes := 0
	for _, c := range parseChunks(t, evs) {
		ch := c.Choices[0]
		if ch.Delta.Content != nil {
			contents[ch.Index] += *ch.Delta.Content
		}
		if ch.Delta.ReasoningContent != nil {
			reasoning++
		}
		if ch.FinishReason != nil {
			finishes++
		}
	}
	if len(contents) != 2 || contents[0] != contents[1] || !strings.HasPrefix(contents[0], "echo: THINK: x") || reasoning != 2 || finishes != 2 {
		t.Errorf("n=2 stream: %d contents, %d reasoning, %d finishes", len(contents), reasoning, finishes)
	}
}

func TestStreamCutAfter(t *testing.T) {
	s := start(t, Options{})
	resp := openStream(t, http.DefaultClient, s.URL()+"/v1/chat/completions",
		userChat("m", "hi", `,"stream":true`), map[string]string{"X-Fake-Cut-After": "3"})
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d %v", resp.StatusCode, resp.Header)
	}
	evs, err := readSSE(resp.Body, time.Now())
	if err == nil || err == io.EOF {
		t.Errorf("stream ended cleanly (%v), want an abrupt close", err)
	}
	if len(evs) != 3 {
		t.Errorf("got %d events, want 3", len(evs))
	}
	for _, e := range evs {
		if e.data == "[DONE]" || strings.Contains(e.data, `"finish_reason":"`) {
			t.Errorf("cut stream carries an ending: %s", e.data)
		}
	}
	// A large cut value never sends the end either.
	resp2 := openStream(t, http.DefaultClient, s.URL()+"/v1/completions",
		`{"model":"m","prompt":"x","stream":true}`, map[string]string{"X-Fake-Cut-After": "1000"})
	defer resp2.Body.Close()
	evs, err = readSSE(resp2.Body, time.Now())
	if err == nil || err == io.EOF || len(evs) == 0 {
		t.Errorf("cut completions stream: %d events, err %v", len(evs), err)
	}
	for _, e := range evs {
		if e.data == "[DONE]" || strings.Contains(e.data, `"finish_reason":"`) {
			t.Errorf("cut stream carries an ending: %s", e.data)
		}
	}
	// The server keeps working and the in-flight count returns to 0.
	decodeChat(t, post(t, s, "/v1/chat/completions", userChat("m", "hi", "")))
	waitFor(t, func() bool { return s.InFlight() == 0 })
}

// TestHoldStreams: held streams, cut or not, stop after their first event and count as in flight until
// released; then they end as they would have; a stream after the release is not held; Close ends a held one.
func TestHoldStreams(t *testing.T) {
	s := start(t, Options{})
	s.HoldStreams()
	url := s.URL() + "/v1/chat/completions"
	body := userChat("m", "hold on", `,"stream":true`)
	whole := openStream(t, http.DefaultClient, url, body, nil)
	defer whole.Body.Close()
	cut := openStream(t, http.DefaultClient, url, body, map[string]string{"X-Fake-Cut-After": "3"})
	defer cut.Body.Close()
	wr, cr := bufio.NewReader(whole.Body), bufio.NewReader(cut.Body)
	for _, br := range []*bufio.Reader{wr, cr} {
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
			t.Fatalf("first event: %q %v", line, err)
		}
	}
	waitFor(t, func() bool { return s.Held() == 2 })
	if n := s.InFlight(); n != 2 {
		t.Errorf("%d in flight while two streams are held, want 2", n)
	}
	s.ReleaseStreams()
	evs, err := readSSE(wr, time.Now())
	if err != io.EOF || len(evs) < 5 || evs[len(evs)-1].data != "[DONE]" {
		t.Fatalf("released stream: %d more events, err %v", len(evs), err)
	}
	evs, err = readSSE(cr, time.Now())
	if err == nil || err == io.EOF || len(evs) != 2 {
		t.Errorf("released cut stream: %d more events (want 2), err %v (want an abrupt close)", len(evs), err)
	}
	waitFor(t, func() bool { return s.Held() == 0 && s.InFlight() == 0 })

	// Released: later streams flow.
	after := openStream(t, http.DefaultClient, url, body, nil)
	defer after.Body.Close()
	if evs, err := readSSE(after.Body, time.Now()); err != io.EOF || evs[len(evs)-1].data != "[DONE]" {
		t.Fatalf("stream after the release: %d events, err %v", len(evs), err)
	}

	// Close ends a held stream without its end.
	s.HoldStreams()
	last := openStream(t, http.DefaultClient, url, body, nil)
	defer last.Body.Close()
	waitFor(t, func() bool { return s.Held() == 1 })
	s.Close()
	if evs, _ := readSSE(last.Body, time.Now()); len(evs) != 1 {
		t.Errorf("a held stream at Close: %d events, want the first only", len(evs))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFailNext(t *testing.T) {
	// A latency far beyond the bound below: an answer that waited for it cannot pass for a slow machine.
	s := start(t, Options{Latency: time.Minute})
	s.FailNext(2, 429, "", map[string]string{"Retry-After": "1"})
	for i := 0; i < 2; i++ {
		t0 := time.Now()
		r := post(t, s, "/v1/chat/completions", userChat("m", "x", ""))
		checkOpenAIError(t, r, 429)
		if r.header.Get("Retry-After") != "1" {
			t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
		}
		if time.Since(t0) > 30*time.Second {
			t.Error("FailNext answer waited for latency")
		}
	}
	s.SetLatency(0)
	decodeChat(t, post(t, s, "/v1/chat/completions", userChat("m", "x", "")))

	s.FailNext(1, 500, `{"custom":true}`, nil)
	r := post(t, s, "/v1/embeddings", `{"model":"m","input":"x"}`)
	if r.status != 500 || string(r.body) != `{"custom":true}` {
		t.Errorf("custom failure: %d %s", r.status, r.body)
	}
	if r := post(t, s, "/v1/embeddings", `{"model":"m","input":"x"}`); r.status != 200 {
		t.Errorf("after failures: %d", r.status)
	}
	if s.Calls() != 5 || s.CallsTo("chat") != 3 || s.CallsTo("embeddings") != 2 {
		t.Errorf("calls %d chat %d emb %d", s.Calls(), s.CallsTo("chat"), s.CallsTo("embeddings"))
	}
}

func TestHangUpNext(t *testing.T) {
	s := start(t, Options{})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	s.HangUpNext(2)
	for i := 0; i < 2; i++ {
		resp, err := client.Post(s.URL()+"/v1/chat/completions", "application/json", strings.NewReader(userChat("m", "x", "")))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("request %d got status %d, want a dropped connection", i, resp.StatusCode)
		}
	}
	resp, err := client.Post(s.URL()+"/v1/chat/completions", "application/json", strings.NewReader(userChat("m", "x", "")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if s.Calls() != 3 {
		t.Errorf("Calls %d", s.Calls())
	}
	waitFor(t, func() bool { return s.InFlight() == 0 })
}

func TestHeaderControls(t *testing.T) {
	s := start(t, Options{})
	r := do(t, http.MethodPost, s.URL()+"/v1/chat/completions", userChat("m", "x", ""), map[string]string{"X-Fake-Status": "503"})
	if r.status != 503 || string(r.body) != `{"error":{"message":"fake failure","type":"server_error","param":null,"code":null}}` {
		t.Errorf("X-Fake-Status: %d %s", r.status, r.body)
	}
	t0 := time.Now()
	do(t, http.MethodPost, s.URL()+"/v1/embeddings", `{"model":"m","input":"x"}`, map[string]string{"X-Fake-Delay-Ms": "150"})
	if d := time.Since(t0); d < 150*time.Millisecond {
		t.Errorf("X-Fake-Delay-Ms: answered after %v", d)
	}
	t0 = time.Now()
	resp := openStream(t, http.DefaultClient, s.URL()+"/v1/chat/completions", userChat("m", "x", `,"stream":true`),
		map[string]string{"X-Fake-Chunk-Delay-Ms": "30"})
	evs, err := readSSE(resp.Body, t0)
	resp.Body.Close()
	if err != io.EOF {
		t.Fatal(err)
	}
	if d := evs[len(evs)-1].at; d < time.Duration(len(evs)-1)*30*time.Millisecond {
		t.Errorf("X-Fake-Chunk-Delay-Ms: %d events within %v", len(evs), d)
	}
}

func TestLatencyAndSetters(t *testing.T) {
	s := start(t, Options{Latency: 120 * time.Millisecond})
	t0 := time.Now()
	do(t, http.MethodGet, s.URL()+"/v1/models", "", nil)
	if d := time.Since(t0); d < 120*time.Millisecond {
		t.Errorf("latency not applied: %v", d)
	}
	s.SetLatency(0)
	s.SetChunkDelay(40 * time.Millisecond)
	t0 = time.Now()
	resp := openStream(t, http.DefaultClient, s.URL()+"/v1/chat/completions", userChat("m", "x", `,"stream":true`), nil)
	evs, _ := readSSE(resp.Body, t0)
	resp.Body.Close()
	if d := evs[len(evs)-1].at; d < time.Duration(len(evs)-1)*40*time.Millisecond {
		t.Errorf("SetChunkDelay not applied: %d events within %v", len(evs), d)
	}
}

type embResponse struct {
	Object string `json:"object"`
	Data   []struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Model string `json:"model"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

func decodeEmb(t *testing.T, r result) embResponse {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var e embResponse
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	if e.Object != "list" {
		t.Errorf("object %q", e.Object)
	}
	return e
}

func embFloats(t *testing.T, raw json.RawMessage) []float32 {
	t.Helper()
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b)%4 != 0 {
			t.Fatalf("base64: %v (%d bytes)", err, len(b))
		}
		out := make([]float32, len(b)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out
	}
	var out []float32
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func equalVec(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEmbeddings(t *testing.T) {
	s := start(t, Options{})
	e := decodeEmb(t, post(t, s, "/v1/embeddings", `{"model":"emb","input":"hello big world"}`))
	if len(e.Data) != 1 || e.Model != "emb" || e.Usage.PromptTokens != 3 || e.Usage.TotalTokens != 3 {
		t.Fatalf("%+v", e)
	}
	if v := embFloats(t, e.Data[0].Embedding); !equalVec(v, Vector("hello big world", 8)) {
		t.Errorf("float vector %v != %v", v, Vector("hello big world", 8))
	}

	for _, format := range []string{"float", "base64"} {
		body := `{"model":"emb","input":["a b","c",  "a b"],"dimensions":16,"encoding_format":"` + format + `"}`
		e := decodeEmb(t, post(t, s, "/v1/embeddings", body))
		if len(e.Data) != 3 || e.Usage.PromptTokens != 5 {
			t.Fatalf("%s: %+v", format, e)
		}
		for i, in := range []string{"a b", "c", "a b"} {
			if e.Data[i].Index != i || e.Data[i].Object != "embedding" {
				t.Errorf("item %d: %+v", i, e.Data[i])
			}
			if v := embFloats(t, e.Data[i].Embedding); !equalVec(v, Vector(in, 16)) {
				t.Errorf("%s item %d: %v", format, i, v)
			}
		}
	}

	e = decodeEmb(t, post(t, s, "/v1/embeddings", `{"model":"emb","input":[1, 2,3]}`))
	if len(e.Data) != 1 || e.Usage.PromptTokens != 3 || !equalVec(embFloats(t, e.Data[0].Embedding), Vector("[1,2,3]", 8)) {
		t.Errorf("token array: %+v", e)
	}
	e = decodeEmb(t, post(t, s, "/v1/embeddings", `{"model":"emb","input":[[1,2],[3]],"encoding_format":"base64"}`))
	if len(e.Data) != 2 || e.Usage.PromptTokens != 3 ||
		!equalVec(embFloats(t, e.Data[0].Embedding), Vector("[1,2]", 8)) ||
		!equalVec(embFloats(t, e.Data[1].Embedding), Vector("[3]", 8)) {
		t.Errorf("token arrays: %+v", e)
	}
	post(t, s, "/v1/embeddings", `{"model":"emb","input":[]}`) // rejected, not recorded

	got := s.EmbeddingInputs()
	want := [][]string{{"hello big world"}, {"a b", "c", "a b"}, {"a b", "c", "a b"}, {"[1,2,3]"}, {"[1,2]", "[3]"}}
	if len(got) != len(want) {
		t.Fatalf("EmbeddingInputs: %q", got)
	}
	for i := range want {
		if strings.Join(got[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("call %d inputs %q, want %q", i, got[i], want[i])
		}
	}
	s.ResetCounters()
	if len(s.EmbeddingInputs()) != 0 {
		t.Error("ResetCounters kept embedding inputs")
	}
}

func TestVector(t *testing.T) {
	a := Vector("x", 1000)
	if !equalVec(a, Vector("x", 1000)) {
		t.Fatal("not deterministic")
	}
	if equalVec(a[:8], Vector("y", 8)) {
		t.Error("different inputs give the same vector")
	}
	var sum float64
	for _, f := range a {
		if f < -1 || f >= 1 || math.IsNaN(float64(f)) {
			t.Fatalf("value %v out of range", f)
		}
		sum += float64(f)
	}
	if math.Abs(sum/1000) > 0.1 {
		t.Errorf("mean %v, want about 0", sum/1000)
	}
	if Vector("x", 0) != nil {
		t.Error("dims 0")
	}
}

type completionResponse struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Text     string `json:"text"`
		Index    int    `json:"index"`
		Logprobs *struct {
			Tokens        []string             `json:"tokens"`
			TokenLogprobs []*float64           `json:"token_logprobs"`
			TopLogprobs   []map[string]float64 `json:"top_logprobs"`
			TextOffset    []int                `json:"text_offset"`
		} `json:"logprobs"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

func decodeCompletion(t *testing.T, r result) completionResponse {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var c completionResponse
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	return c
}

func TestCompletions(t *testing.T) {
	s := start(t, Options{})
	r := post(t, s, "/v1/completions", `{"model":"davinci","prompt":"Once upon a time"}`)
	c := decodeCompletion(t, r)
	if c.Object != "text_completion" || c.Model != "davinci" || len(c.Choices) != 1 ||
		!strings.HasPrefix(c.Choices[0].Text, "echo: Once upon a time") || c.Choices[0].FinishReason != "stop" ||
		c.Choices[0].Logprobs != nil || c.Usage.PromptTokens != 4 {
		t.Errorf("%s", r.body)
	}
	if !bytes.HasPrefix(r.body, []byte(`{"id":"cmpl-fake-`)) || !bytes.Contains(r.body, []byte(`","object":"text_completion","created":`)) ||
		!bytes.Contains(r.body, []byte(`"index":0,"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":4,`)) {
		t.Errorf("layout: %s", r.body)
	}
	first := idSeq(t, c.ID, "cmpl-fake-")

	c = decodeCompletion(t, post(t, s, "/completions", `{"model":"m","prompt":["a","b c"],"n":2}`))
	if len(c.Choices) != 4 || c.Usage.PromptTokens != 3 || idSeq(t, c.ID, "cmpl-fake-") <= first {
		t.Fatalf("%+v", c)
	}
	for i, ch := range c.Choices {
		if ch.Index != i {
			t.Errorf("index %d at %d", ch.Index, i)
		}
	}
	if !strings.HasPrefix(c.Choices[2].Text, "echo: b c") {
		t.Errorf("choice 2: %q", c.Choices[2].Text)
	}

	// The lm-eval loglikelihood request: token prompts, echo, max_tokens 0, logprobs.
	c = decodeCompletion(t, post(t, s, "/v1/completions", `{"model":"m","prompt":[[10,20,30],[40]],"echo":true,"max_tokens":0,"logprobs":1}`))
	if len(c.Choices) != 2 || c.Usage.PromptTokens != 4 || c.Usage.CompletionTokens != 0 {
		t.Fatalf("%+v", c)
	}
	lp := c.Choices[0].Logprobs
	if lp == nil || len(lp.Tokens) != 3 || len(lp.TokenLogprobs) != 3 || len(lp.TopLogprobs) != 3 || len(lp.TextOffset) != 3 {
		t.Fatalf("logprobs %+v", lp)
	}
	if lp.TokenLogprobs[0] != nil || lp.TokenLogprobs[1] == nil || *lp.TokenLogprobs[1] >= 0 {
		t.Errorf("token_logprobs %v", lp.TokenLogprobs)
	}
	if strings.Join(lp.Tokens, "") != c.Choices[0].Text {
		t.Errorf("tokens %q do not make text %q", lp.Tokens, c.Choices[0].Text)
	}
	for i := 1; i < 3; i++ {
		top := lp.TopLogprobs[i]
		if len(top) != 1 || top[lp.Tokens[i]] != *lp.TokenLogprobs[i] {
			t.Errorf("top_logprobs[%d] = %v", i, top)
		}
		if lp.TextOffset[i] != len(strings.Join(lp.Tokens[:i], "")) {
			t.Errorf("text_offset %v", lp.TextOffset)
		}
	}

	// echo with generation, logprobs 3.
	c = decodeCompletion(t, post(t, s, "/v1/completions", `{"model":"m","prompt":"Say","echo":true,"logprobs":3}`))
	if !strings.HasPrefix(c.Choices[0].Text, "Say echo: Say") || len(c.Choices[0].Logprobs.TopLogprobs[1]) != 3 {
		t.Errorf("echo: %+v", c.Choices[0])
	}

	// Streaming.
	resp := openStream(t, http.DefaultClient, s.URL()+"/v1/completions",
		`{"model":"m","prompt":"hi","stream":true,"stream_options":{"include_usage":true}}`, nil)
	evs, err := readSSE(resp.Body, time.Now())
	resp.Body.Close()
	if err != io.EOF || evs[len(evs)-1].data != "[DONE]" {
		t.Fatalf("stream: %v", err)
	}
	var text strings.Builder
	chunks := parseChunks(t, evs)
	for _, ch := range chunks[:len(chunks)-1] {
		if ch.Object != "text_completion" || len(ch.Choices) != 1 || ch.Choices[0].Text == nil {
			t.Fatalf("chunk %+v", ch)
		}
		text.WriteString(*ch.Choices[0].Text)
	}
	plain := decodeCompletion(t, post(t, s, "/v1/completions", `{"model":"m","prompt":"hi"}`))
	if text.String() != plain.Choices[0].Text {
		t.Errorf("streamed %q, plain %q", text.String(), plain.Choices[0].Text)
	}
	if u := chunks[len(chunks)-1]; u.Usage == nil || len(u.Choices) != 0 || u.Usage.CompletionTokens != plain.Usage.CompletionTokens {
		t.Errorf("usage chunk %s", evs[len(evs)-2].data)
	}
	if f := chunks[len(chunks)-2].Choices[0].FinishReason; f == nil || *f != "stop" {
		t.Error("no finish chunk")
	}
}

func TestCountersAndMaxInFlight(t *testing.T) {
	// The requests wait out a latency no test outlasts, so all of them are in flight together however
	// slowly they arrive; Close then ends them (their connections are closed).
	s := start(t, Options{Latency: time.Hour})
	const n = 8
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(s.URL()+"/v1/chat/completions", "application/json", bytes.NewReader(ChatRequest(i)))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					t.Error("a request answered 200 before Close")
				}
			}
		}()
	}
	waitFor(t, func() bool { return s.InFlight() == n })
	if s.MaxInFlight() != n || s.Calls() != n || s.CallsTo("chat") != n || s.CallsTo("embeddings") != 0 {
		t.Errorf("max %d calls %d chat %d", s.MaxInFlight(), s.Calls(), s.CallsTo("chat"))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if s.InFlight() != 0 || s.MaxInFlight() != n {
		t.Errorf("after Close: inflight %d max %d", s.InFlight(), s.MaxInFlight())
	}

	// A stream counts as in flight until it ends: here it waits an hour before its second event.
	s = start(t, Options{ChunkDelay: time.Hour})
	resp := openStream(t, http.DefaultClient, s.URL()+"/v1/chat/completions", userChat("m", "x", `,"stream":true`), nil)
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if s.InFlight() != 1 {
		t.Errorf("InFlight during stream = %d", s.InFlight())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, br)
	resp.Body.Close()
	if s.InFlight() != 0 {
		t.Errorf("InFlight after the stream = %d", s.InFlight())
	}

	s = start(t, Options{})
	for i := 0; i < n; i++ {
		decodeChat(t, post(t, s, "/v1/chat/completions", string(ChatRequest(i))))
	}
	s.ResetCounters()
	if s.Calls() != 0 || s.CallsTo("chat") != 0 || s.MaxInFlight() != 0 || len(s.Requests()) != 0 {
		t.Errorf("after reset: calls %d chat %d max %d reqs %d", s.Calls(), s.CallsTo("chat"), s.MaxInFlight(), len(s.Requests()))
	}
	// ids keep increasing after a reset.
	c := decodeChat(t, post(t, s, "/v1/chat/completions", userChat("m", "x", "")))
	if idSeq(t, c.ID, "chatcmpl-fake-") <= n {
		t.Errorf("id %s after reset", c.ID)
	}
}

func TestRequestsRecorded(t *testing.T) {
	s := start(t, Options{})
	before := time.Now()
	do(t, http.MethodPost, s.URL()+"/v1/chat/completions", userChat("m", "first", ""),
		map[string]string{"x-custom-thing": "v1", "Authorization": "Bearer k"})
	do(t, http.MethodGet, s.URL()+"/models", "", nil)
	reqs := s.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/v1/chat/completions" || string(r.Body) != userChat("m", "first", "") ||
		r.Header["X-Custom-Thing"] != "v1" || r.Header["Authorization"] != "Bearer k" || r.Header["Content-Type"] != "application/json" {
		t.Errorf("recorded %+v", r)
	}
	if r.At.Before(before.Add(-time.Second)) || r.At.After(time.Now().Add(time.Second)) {
		t.Errorf("At %v", r.At)
	}
	if reqs[1].Method != "GET" || reqs[1].Path != "/models" || len(reqs[1].Body) != 0 {
		t.Errorf("second %+v", reqs[1])
	}
	// Copies: changing them does not change the record.
	reqs[0].Body[0] = 'X'
	if s.Requests()[0].Body[0] == 'X' {
		t.Error("Requests returns shared memory")
	}
}

func TestRingKeepsMostRecent(t *testing.T) {
	var r ring[int]
	r.init(3)
	for i := 1; i <= 5; i++ {
		*r.slot() = i
	}
	var got []int
	r.each(func(p *int) { got = append(got, *p) })
	if len(got) != 3 || got[0] != 3 || got[2] != 5 {
		t.Errorf("ring %v", got)
	}
	r.reset()
	r.each(func(*int) { t.Error("not empty") })
	*r.slot() = 7
	*r.slot() = 8
	got = got[:0]
	r.each(func(p *int) { got = append(got, *p) })
	if len(got) != 2 || got[0] != 7 || got[1] != 8 {
		t.Errorf("ring after reset %v", got)
	}
	var r2 ring[int]
	r2.init(4)
	*r2.slot() = 1
	*r2.slot() = 2
	got = got[:0]
	r2.each(func(p *int) { got = append(got, *p) })
	if len(got) != 2 || got[0] != 1 || got[1] != 2 || len(r2.items) != 2 {
		t.Errorf("partial ring %v (storage %d)", got, len(r2.items))
	}
}

func TestCloseWithOpenConnections(t *testing.T) {
	s, err := Start(Options{ChunkDelay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// An idle keep-alive connection.
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	resp, err := client.Get(s.URL() + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// A raw connection that never sends a request.
	raw, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// A stream in progress.
	resp = openStream(t, client, s.URL()+"/v1/chat/completions", userChat("m", "x", `,"stream":true`), nil)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	// A cut stream in progress (hijacked connection).
	resp2 := openStream(t, client, s.URL()+"/v1/chat/completions", userChat("m", "x", `,"stream":true`),
		map[string]string{"X-Fake-Cut-After": "5"})
	defer resp2.Body.Close()
	// A request waiting for its latency.
	slowErr := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/v1/chat/completions", strings.NewReader(userChat("m", "x", "")))
		req.Header.Set("X-Fake-Delay-Ms", "60000")
		resp, err := client.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == 200 {
				err = errors.New("slow request succeeded")
			}
		}
		slowErr <- err
	}()
	waitFor(t, func() bool { return s.InFlight() == 3 })

	t0 := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(30 * time.Second): // the stream has ~15 s to go, the slow request a minute
		t.Fatalf("Close hangs: it waits for the stream or the sleeping request (%v)", time.Since(t0))
	}
	if _, err := io.ReadAll(br); err == nil {
		t.Error("stream finished cleanly after Close")
	}
	if err := <-slowErr; err == nil {
		t.Error("slow request did not fail")
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Error("still accepting after Close")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestChatRequest(t *testing.T) {
	a, b := ChatRequest(1), ChatRequest(2)
	if bytes.Equal(a, b) {
		t.Error("ChatRequest does not vary")
	}
	if len(a) < 400 || len(a) > 600 {
		t.Errorf("ChatRequest is %d bytes", len(a))
	}
	var req struct {
		Model    string `json:"model"`
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
		Temperature *float64 `json:"temperature"`
		MaxTokens   *int     `json:"max_tokens"`
	}
	if err := json.Unmarshal(a, &req); err != nil {
		t.Fatal(err)
	}
	if req.Model != "fake-model" || len(req.Messages) != 2 || req.Messages[0].Role != "system" ||
		req.Messages[1].Role != "user" || req.Temperature == nil || req.MaxTokens == nil {
		t.Errorf("%+v", req)
	}
}

func TestConcurrentMixedLoad(t *testing.T) {
	s := start(t, Options{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				switch i % 4 {
				case 0:
					decodeChat(t, post(t, s, "/v1/chat/completions", string(ChatRequest(g*100+i))))
				case 1:
					decodeEmb(t, post(t, s, "/v1/embeddings", `{"model":"m","input":["a","b"]}`))
				case 2:
					resp := openStream(t, http.DefaultClient, s.URL()+"/v1/chat/completions", userChat("m", "x", `,"stream":true`), nil)
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				case 3:
					_ = s.Requests()
					_ = s.EmbeddingInputs()
					do(t, http.MethodGet, s.URL()+"/v1/models", "", nil)
				}
			}
		}()
	}
	wg.Wait()
	if s.Calls() != 160 || s.CallsTo("chat") != 80 {
		t.Errorf("calls %d chat %d", s.Calls(), s.CallsTo("chat"))
	}
	waitFor(t, func() bool { return s.InFlight() == 0 })
}

func BenchmarkChat(b *testing.B) {
	s, err := Start(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := ChatRequest(1)
	url := s.URL() + "/v1/chat/completions"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := http.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	time.Sleep(50 * time.Millisecond)
	base := runtime.NumGoroutine()
	for i := 0; i < 5; i++ {
		s, err := Start(Options{ChunkDelay: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		resp := openStream(t, client, s.URL()+"/v1/chat/completions", userChat("m", "x", `,"stream":true`), nil)
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		resp2 := openStream(t, client, s.URL()+"/v1/completions", `{"model":"m","prompt":"x","stream":true}`,
			map[string]string{"X-Fake-Cut-After": "5"})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		resp2.Body.Close()
	}
	tr.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second) // catches leaks, not slowness: the loop ends once they are gone
	for runtime.NumGoroutine() > base+1 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after\n%s", base, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAddr(t *testing.T) {
	s := start(t, Options{Addr: ":0"})
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") || s.URL() != "http://"+s.Addr() {
		t.Errorf("URL %q Addr %q", s.URL(), s.Addr())
	}
	if r := do(t, http.MethodGet, s.URL()+"/v1/models", "", nil); r.status != 200 {
		t.Errorf("status %d", r.status)
	}
	if _, err := Start(Options{Addr: s.Addr()}); err == nil {
		t.Error("Start on a busy address succeeded")
	}
}

// BenchmarkHandleChat measures the server's per-request work without the
// network.
func BenchmarkHandleChat(b *testing.B) {
	s, err := Start(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := ChatRequest(1)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		for pb.Next() {
			ctx.Request.Reset()
			ctx.Response.Reset()
			ctx.Request.Header.SetMethod("POST")
			ctx.Request.SetRequestURI("/v1/chat/completions")
			ctx.Request.Header.SetContentType("application/json")
			ctx.Request.SetBody(body)
			s.handle(&ctx)
			if ctx.Response.StatusCode() != 200 {
				b.Fatal(ctx.Response.StatusCode())
			}
		}
	})
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\s/", "\x00\x01\x1f\x7f", "é✓𝄞", "\u2028\u2029", "bad\xffutf8\xc3", "<&>"} {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("%q -> %s: %v", s, b, err)
			continue
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if s == "bad\xffutf8\xc3" {
			want = "bad\uFFFDutf8\uFFFD"
		}
		if got != want {
			t.Errorf("%q -> %s -> %q", s, b, got)
		}
	}
}

func TestRequestsKeepsMostRecent(t *testing.T) {
	s := start(t, Options{})
	var ctx fasthttp.RequestCtx
	for i := 0; i < MaxRecorded+5; i++ {
		ctx.Request.Reset()
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/v1/embeddings")
		ctx.Request.SetBodyString(strconv.Itoa(i))
		s.rec.add(&ctx)
	}
	reqs := s.Requests()
	if len(reqs) != MaxRecorded || string(reqs[0].Body) != "5" || string(reqs[len(reqs)-1].Body) != strconv.Itoa(MaxRecorded+4) {
		t.Errorf("%d requests, first %q last %q", len(reqs), reqs[0].Body, reqs[len(reqs)-1].Body)
	}
}

func TestClientGoneMidStream(t *testing.T) {
	s := start(t, Options{ChunkDelay: 20 * time.Millisecond})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp := openStream(t, &http.Client{Transport: tr}, s.URL()+"/v1/chat/completions", userChat("m", "x", `,"stream":true`), nil)
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // closes the connection mid-stream
	waitFor(t, func() bool { return s.InFlight() == 0 })
	decodeChat(t, post(t, s, "/v1/chat/completions", userChat("m", "x", "")))
}
