package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

// The official Go SDK against the proxy (a client users run): streamed
// misses and hits accumulate to the same answer, a non-streamed request is served from a streamed entry,
// tool calls survive the round trip, and a cut stream is an error, never a short answer.

func sdkClient(p *testProxy) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(p.URL+"/v1/"),
		option.WithAPIKey("test"),
		option.WithMaxRetries(0), // a retry would hide a failure and add upstream calls
		option.WithHTTPClient(testClient),
	)
}

// sdkStream runs one streamed chat request and accumulates it; it returns the accumulated completion, the
// HTTP response (for its headers), the tool calls the accumulator reported as finished, and the stream's
// error.
func sdkStream(client openai.Client, params openai.ChatCompletionNewParams, opts ...option.RequestOption) (
	openai.ChatCompletion, *http.Response, []openai.FinishedChatCompletionToolCall, int, error) {
	var resp *http.Response
	opts = append(opts, option.WithResponseInto(&resp))
	stream := client.Chat.Completions.NewStreaming(context.Background(), params, opts...)
	defer stream.Close()
	var acc openai.ChatCompletionAccumulator
	var finished []openai.FinishedChatCompletionToolCall
	chunks := 0
	for stream.Next() {
		chunks++
		if !acc.AddChunk(stream.Current()) {
			return acc.ChatCompletion, resp, finished, chunks, errAccumulate
		}
		if tc, ok := acc.JustFinishedToolCall(); ok {
			finished = append(finished, tc)
		}
	}
	return acc.ChatCompletion, resp, finished, chunks, stream.Err()
}

type sdkError string

func (e sdkError) Error() string { return string(e) }

const errAccumulate = sdkError("the accumulator refused a chunk")

func TestE2EStreamOpenAISDK(t *testing.T) {
	p := newTestProxy(t, nil)
	client := sdkClient(p)
	const prompt = "sdk streaming please"
	params := openai.ChatCompletionNewParams{
		Model:         testModel,
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}

	miss, resp, _, chunks, err := sdkStream(client, params)
	if err != nil {
		t.Fatalf("streamed miss: %v", err)
	}
	if got := resp.Header.Get("X-Cache"); got != "MISS" {
		t.Errorf("streamed miss: X-Cache %q", got)
	}
	expectCalls(t, p, 1)
	if len(miss.Choices) != 1 || !strings.HasPrefix(miss.Choices[0].Message.Content, "echo: "+prompt) {
		t.Fatalf("streamed miss accumulated to %+v", miss.Choices)
	}
	if chunks < 5 {
		t.Errorf("the miss came in %d chunks; it was not streamed", chunks)
	}

	hit, resp, _, _, err := sdkStream(client, params)
	if err != nil {
		t.Fatalf("streamed hit: %v", err)
	}
	if got := resp.Header.Get("X-Cache"); got != "HIT" {
		t.Errorf("streamed hit: X-Cache %q", got)
	}
	expectCalls(t, p, 1)
	if len(hit.Choices) != 1 {
		t.Fatalf("streamed hit: %d choices", len(hit.Choices))
	}
	for _, f := range []struct{ name, got, want string }{
		{"content", hit.Choices[0].Message.Content, miss.Choices[0].Message.Content},
		{"finish_reason", hit.Choices[0].FinishReason, miss.Choices[0].FinishReason},
		{"id", hit.ID, miss.ID},
		{"model", hit.Model, miss.Model},
	} {
		if f.got != f.want {
			t.Errorf("streamed hit: %s %q, the miss had %q", f.name, f.got, f.want)
		}
	}
	if miss.Choices[0].FinishReason != "stop" {
		t.Errorf("finish_reason %q, want stop", miss.Choices[0].FinishReason)
	}
	if mu, hu := miss.Usage, hit.Usage; mu.TotalTokens == 0 || hu.TotalTokens != mu.TotalTokens || hu.PromptTokens != mu.PromptTokens || hu.CompletionTokens != mu.CompletionTokens {
		t.Errorf("usage: miss %+v, hit %+v", miss.Usage, hit.Usage)
	}

	// The same prompt without streaming is a hit on the streamed entry, and parses.
	var whole *http.Response
	c, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: testModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
	}, option.WithResponseInto(&whole))
	if err != nil {
		t.Fatalf("non-streamed request: %v", err)
	}
	expectCalls(t, p, 1)
	if got := whole.Header.Get("X-Cache"); got != "HIT" {
		t.Errorf("non-streamed request: X-Cache %q", got)
	}
	if len(c.Choices) != 1 || c.Choices[0].Message.Content != miss.Choices[0].Message.Content || c.ID != miss.ID ||
		c.Object != "chat.completion" || c.Usage.TotalTokens != miss.Usage.TotalTokens {
		t.Fatalf("non-streamed hit %+v does not carry the streamed answer", c)
	}

	// A stream that breaks off upstream is an error for the SDK, not a shorter answer.
	cutParams := params
	cutParams.Messages = []openai.ChatCompletionMessageParamUnion{openai.UserMessage("sdk cut stream")}
	_, _, _, _, err = sdkStream(client, cutParams, option.WithHeader("X-Fake-Cut-After", "4"))
	if err == nil {
		t.Fatal("a cut stream ended without an error in the SDK")
	}
	if !strings.Contains(err.Error(), "upstream_stream_cut") && !strings.Contains(err.Error(), "broke off") {
		t.Errorf("the SDK's error does not say the stream was cut: %v", err)
	}
}

func TestE2EStreamOpenAISDKToolCall(t *testing.T) {
	p := newTestProxy(t, nil)
	client := sdkClient(p)
	params := openai.ChatCompletionNewParams{
		Model:    testModel,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("TOOL: what is the weather in Paris?")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name:        "get_weather",
			Description: openai.String("the weather in a city"),
			Parameters: shared.FunctionParameters{
				"type":       "object",
				"properties": map[string]any{"city": map[string]any{"type": "string"}},
				"required":   []string{"city"},
			},
		})},
	}
	var calls [2]openai.ChatCompletionMessageToolCallUnion
	for i, want := range []string{"MISS", "HIT"} {
		got, resp, finished, _, err := sdkStream(client, params)
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		if x := resp.Header.Get("X-Cache"); x != want {
			t.Errorf("X-Cache %q, want %s", x, want)
		}
		if len(got.Choices) != 1 || len(got.Choices[0].Message.ToolCalls) != 1 {
			t.Fatalf("%s: accumulated %+v, want one tool call", want, got.Choices)
		}
		tc := got.Choices[0].Message.ToolCalls[0]
		if tc.ID == "" || tc.Type != "function" || tc.Function.Name != "get_weather" || tc.Function.Arguments != `{"city":"Paris"}` {
			t.Fatalf("%s: tool call %+v", want, tc)
		}
		if got.Choices[0].FinishReason != "tool_calls" {
			t.Errorf("%s: finish_reason %q", want, got.Choices[0].FinishReason)
		}
		if len(finished) != 1 || finished[0].Name != "get_weather" || finished[0].Arguments != `{"city":"Paris"}` || finished[0].ID != tc.ID {
			t.Errorf("%s: the accumulator reported finished tool calls %+v", want, finished)
		}
		calls[i] = tc
	}
	if calls[0].ID != calls[1].ID {
		t.Errorf("the hit's tool call id %q differs from the miss's %q", calls[1].ID, calls[0].ID)
	}
	expectCalls(t, p, 1)
}
