package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
)

// Upstreams indent their non-streamed answers (OpenAI's API does). An answer stored from such a miss and
// replayed as SSE must still give one data line per event: a line cut at the answer's newlines breaks every
// SDK. These tests ask the fake for an indented answer with X-Fake-Indent whatever LLMCACHE_TEST_UPSTREAM
// says, so they hold in both passes of the suite and with both transports.

// indentedHeader makes the fake upstream indent this answer.
var indentedHeader = []string{"X-Fake-Indent", "1"}

// expectIndented fails the test unless body is the fake's indented layout, passed through byte for byte.
func expectIndented(t *testing.T, what string, body []byte) {
	t.Helper()
	if !bytes.HasPrefix(body, []byte("{\n  \"")) || !bytes.Contains(body, []byte("\n  \"usage\": {\n    \"")) {
		t.Fatalf("%s: the upstream's indented answer did not come through as sent:\n%s", what, body)
	}
}

// expectDataLines checks a raw SSE body line by line, as the SDKs read it: every event is exactly one
// "data: " line, each but [DONE] a JSON object on that line, and exactly one usage chunk (no choices, the
// usage of the stored answer) comes when asked for. It returns the usage chunk's usage.
func expectDataLines(t *testing.T, what string, raw []byte, wantUsage json.RawMessage) {
	t.Helper()
	events := strings.Split(string(raw), "\n\n")
	if events[len(events)-1] != "" || events[len(events)-2] != "data: [DONE]" {
		t.Fatalf("%s: the stream does not end with data: [DONE]: %q", what, raw)
	}
	usageChunks := 0
	for i, ev := range events[:len(events)-2] {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.ContainsAny(data, "\r\n") {
			t.Fatalf("%s: event %d is not one data line: %q", what, i, ev)
		}
		var c struct {
			Choices []json.RawMessage `json:"choices"`
			Usage   json.RawMessage   `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("%s: data line %d is not JSON (%v): %s", what, i, err, data)
		}
		if len(c.Choices) == 0 {
			usageChunks++
			var want bytes.Buffer
			if err := json.Compact(&want, wantUsage); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(c.Usage, want.Bytes()) {
				t.Errorf("%s: usage chunk carries %s, the stored answer %s", what, c.Usage, wantUsage)
			}
		}
	}
	if usageChunks != 1 {
		t.Fatalf("%s: %d usage chunks, want 1:\n%s", what, usageChunks, raw)
	}
}

// A non-streamed miss from an indenting upstream, then the same request streamed with include_usage: the
// official Go SDK accumulates the same answer and gets the usage; the raw replay has one line per event.
func TestE2ESSEIndentedAnswerReplaysToTheSDK(t *testing.T) {
	p := newTestProxy(t, nil)
	const prompt = "an indented answer, replayed"
	resp, body := p.Post("/v1/chat/completions", chatBody(prompt), indentedHeader...)
	expectCache(t, "non-streamed miss", resp, body, 200, "MISS")
	expectIndented(t, "non-streamed miss", body)
	var stored struct {
		ID      string `json:"id"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage json.RawMessage `json:"usage"`
	}
	if err := json.Unmarshal(body, &stored); err != nil || len(stored.Choices) != 1 {
		t.Fatalf("cannot read the miss (%v): %s", err, body)
	}
	var usage openai.CompletionUsage
	if err := json.Unmarshal(stored.Usage, &usage); err != nil || usage.TotalTokens == 0 {
		t.Fatalf("the miss has no usage (%v): %s", err, stored.Usage)
	}

	client := sdkClient(p)
	params := openai.ChatCompletionNewParams{
		Model:         testModel,
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}
	hit, hresp, _, _, err := sdkStream(client, params)
	if err != nil {
		t.Fatalf("the SDK cannot read the streamed hit: %v", err)
	}
	if got := hresp.Header.Get("X-Cache"); got != "HIT" {
		t.Errorf("streamed request: X-Cache %q, want HIT", got)
	}
	expectCalls(t, p, 1)
	if len(hit.Choices) != 1 || hit.Choices[0].Message.Content != stored.Choices[0].Message.Content ||
		hit.Choices[0].FinishReason != stored.Choices[0].FinishReason || hit.ID != stored.ID {
		t.Fatalf("the SDK accumulated %+v, the stored answer is %s", hit, body)
	}
	if hit.Usage.PromptTokens != usage.PromptTokens || hit.Usage.CompletionTokens != usage.CompletionTokens ||
		hit.Usage.TotalTokens != usage.TotalTokens {
		t.Errorf("the SDK got usage %+v, the stored answer has %s", hit.Usage, stored.Usage)
	}

	sr, raw := p.postStream("/v1/chat/completions", chatStreamBody(prompt, true))
	expectStream(t, "raw streamed hit", sr, raw, "HIT")
	expectDataLines(t, "raw streamed hit", raw, stored.Usage)
	expectCalls(t, p, 1)
}

// The same for a tool call, whose arguments and call objects spread over many lines of the indented answer.
func TestE2ESSEIndentedToolCallReplays(t *testing.T) {
	p := newTestProxy(t, nil)
	const prompt = "TOOL: the weather in Paris, indented"
	resp, body := p.Post("/v1/chat/completions", chatBody(prompt), indentedHeader...)
	expectCache(t, "non-streamed miss", resp, body, 200, "MISS")
	expectIndented(t, "non-streamed miss", body)
	var stored struct {
		Usage json.RawMessage `json:"usage"`
	}
	if err := json.Unmarshal(body, &stored); err != nil {
		t.Fatal(err)
	}

	client := sdkClient(p)
	hit, _, finished, _, err := sdkStream(client, openai.ChatCompletionNewParams{
		Model:         testModel,
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	if err != nil {
		t.Fatalf("the SDK cannot read the streamed hit: %v", err)
	}
	if len(hit.Choices) != 1 || len(hit.Choices[0].Message.ToolCalls) != 1 || len(finished) != 1 ||
		finished[0].Name != "get_weather" || finished[0].Arguments != `{"city":"Paris"}` || hit.Usage.TotalTokens == 0 {
		t.Fatalf("the SDK accumulated %+v (finished tool calls %+v)", hit, finished)
	}
	sr, raw := p.postStream("/v1/chat/completions", chatStreamBody(prompt, true))
	expectStream(t, "raw streamed hit", sr, raw, "HIT")
	expectDataLines(t, "raw streamed hit", raw, stored.Usage)
	expectCalls(t, p, 1)
}

// Legacy completions with logprobs: the logprobs object, indented over dozens of lines, rides on one line.
func TestE2ESSEIndentedCompletionReplays(t *testing.T) {
	p := newTestProxy(t, nil)
	const prompt = "The capital of France is"
	req := `{"model":"` + testModel + `","prompt":` + jsonString(prompt) + `,"logprobs":2,"echo":true,"max_tokens":8}`
	resp, body := p.Post("/v1/completions", req, indentedHeader...)
	expectCache(t, "non-streamed miss", resp, body, 200, "MISS")
	expectIndented(t, "non-streamed miss", body)
	var stored struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
		Usage json.RawMessage `json:"usage"`
	}
	if err := json.Unmarshal(body, &stored); err != nil || len(stored.Choices) != 1 {
		t.Fatalf("cannot read the miss (%v): %s", err, body)
	}

	client := sdkClient(p)
	stream := client.Completions.NewStreaming(context.Background(), openai.CompletionNewParams{
		Model:         openai.CompletionNewParamsModel(testModel),
		Prompt:        openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
		Logprobs:      openai.Int(2),
		Echo:          openai.Bool(true),
		MaxTokens:     openai.Int(8),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var text strings.Builder
	var usage openai.CompletionUsage
	for stream.Next() {
		c := stream.Current()
		for _, ch := range c.Choices {
			text.WriteString(ch.Text)
		}
		if c.Usage.TotalTokens > 0 {
			usage = c.Usage
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("the SDK cannot read the streamed hit: %v", err)
	}
	stream.Close()
	if text.String() != stored.Choices[0].Text || usage.TotalTokens == 0 {
		t.Fatalf("the SDK read text %q and usage %+v; the stored answer is %s", text.String(), usage, body)
	}

	streamReq := `{"model":"` + testModel + `","prompt":` + jsonString(prompt) +
		`,"logprobs":2,"echo":true,"max_tokens":8,"stream":true,"stream_options":{"include_usage":true}}`
	sr, raw := p.postStream("/v1/completions", streamReq)
	expectStream(t, "raw streamed hit", sr, raw, "HIT")
	expectDataLines(t, "raw streamed hit", raw, stored.Usage)
	if got := p.Fake.CallsTo("completions"); got != 1 {
		t.Fatalf("upstream completions calls = %d, want 1", got)
	}
}

// The pass of the suite that LLMCACHE_TEST_UPSTREAM=indented selects really runs against an indenting
// upstream (a broken switch would quietly run the compact pass twice), and misses pass its bytes through.
func TestE2ESSEUpstreamLayoutFollowsTheEnvironment(t *testing.T) {
	p := newTestProxy(t, nil)
	resp, body := p.Post("/v1/chat/completions", chatBody("which layout?"))
	expectCache(t, "miss", resp, body, 200, "MISS")
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		t.Fatalf("the miss is not JSON (%v): %s", err, body)
	}
	if os.Getenv("LLMCACHE_TEST_UPSTREAM") == "indented" {
		expectIndented(t, "miss", body)
	} else if !bytes.Equal(body, compact.Bytes()) {
		t.Fatalf("the compact pass got an indented answer:\n%s", body)
	}
}
