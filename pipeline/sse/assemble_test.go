package sse

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// openAIChatStream is a chat stream as api.openai.com sends it with stream_options.include_usage: a role
// chunk with empty content, one token per chunk, a finish chunk, a usage chunk with no choices, [DONE].
const openAIChatStream = `data: {"id":"chatcmpl-BRfKkYq2o0Hv3n","object":"chat.completion.chunk","created":1745851234,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BRfKkYq2o0Hv3n","object":"chat.completion.chunk","created":1745851234,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":[{"index":0,"delta":{"content":"Caf\u00e9"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BRfKkYq2o0Hv3n","object":"chat.completion.chunk","created":1745851234,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":[{"index":0,"delta":{"content":" au"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BRfKkYq2o0Hv3n","object":"chat.completion.chunk","created":1745851234,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":[{"index":0,"delta":{"content":" lait"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BRfKkYq2o0Hv3n","object":"chat.completion.chunk","created":1745851234,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":[{"index":0,"delta":{"content":" \"quoted\"\n"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BRfKkYq2o0Hv3n","object":"chat.completion.chunk","created":1745851234,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":[{"index":0,"delta":{"content":"☕"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BRfKkYq2o0Hv3n","object":"chat.completion.chunk","created":1745851234,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-BRfKkYq2o0Hv3n","object":"chat.completion.chunk","created":1745851234,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]

`

const openAIChatWant = `{"id":"chatcmpl-BRfKkYq2o0Hv3n","object":"chat.completion","created":1745851234,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Caf\u00e9 au lait \"quoted\"\n☕","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"system_fingerprint":"fp_0392822090","service_tier":"default"}`

func TestAssembleOpenAIChat(t *testing.T) {
	got := mustAssemble(t, Chat, openAIChatStream)
	sameJSON(t, got, []byte(openAIChatWant))
	keys := topKeys(t, got)
	if want := []string{"id", "object", "created", "model", "choices", "usage", "system_fingerprint", "service_tier"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("top-level keys %q, want %q", keys, want)
	}
	// Compact, escapes and number spellings as received.
	if string(got) != openAIChatWant {
		t.Errorf("body\n got %s\nwant %s", got, openAIChatWant)
	}
}

// The same stream with CRLF line ends, keep-alive comments and the chunks fed whole give the same answer.
func TestAssembleCRLFAndComments(t *testing.T) {
	stream := ": OPENROUTER PROCESSING\n\n" + strings.ReplaceAll(openAIChatStream, "\n", "\r\n")
	got := mustAssemble(t, Chat, stream)
	if string(got) != openAIChatWant {
		t.Errorf("body\n got %s\nwant %s", got, openAIChatWant)
	}
}

const chunkHead = `"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m"`

func chatChunk(choices string) string { return `{` + chunkHead + `,"choices":[` + choices + `]}` }

func TestAssembleParallelToolCalls(t *testing.T) {
	stream := sseStream(
		chatChunk(`{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"lo"}}]},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\":"}}]},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"cation\": \"Paris\"}"}}]},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\"CET\"}"}}]},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}`),
	)
	got := mustAssemble(t, Chat, stream)
	want := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[` +
		`{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"location\": \"Paris\"}"}},` +
		`{"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{\"tz\":\"CET\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}]}`
	sameJSON(t, got, []byte(want))
}

// Servers that leave out the tool-call index send each call whole; a new id starts a new call.
func TestAssembleToolCallsWithoutIndex(t *testing.T) {
	stream := sseStream(
		chatChunk(`{"index":0,"delta":{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"tool_calls":[{"id":"c2","type":"function","function":{"name":"g","arguments":"{\"x\""}}]},"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"tool_calls":[{"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}`),
	)
	got := mustAssemble(t, Chat, stream)
	want := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[` +
		`{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}},` +
		`{"id":"c2","type":"function","function":{"name":"g","arguments":"{\"x\":1}"}}]},"logprobs":null,"finish_reason":"tool_calls"}]}`
	sameJSON(t, got, []byte(want))
}

func TestAssembleTwoChoicesInterleaved(t *testing.T) {
	stream := sseStream(
		chatChunk(`{"index":1,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":1,"delta":{"content":"Bonjour"},"logprobs":null,"finish_reason":null}`),
		// One chunk may carry both choices.
		chatChunk(`{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null},{"index":1,"delta":{"content":" le"},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":1,"delta":{"content":" monde"},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":1,"delta":{},"logprobs":null,"finish_reason":"length"}`),
		chatChunk(`{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}`),
	)
	got := mustAssemble(t, Chat, stream)
	want := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[` +
		`{"index":0,"message":{"role":"assistant","content":"Hello world","refusal":null},"logprobs":null,"finish_reason":"stop"},` +
		`{"index":1,"message":{"role":"assistant","content":"Bonjour le monde","refusal":null},"logprobs":null,"finish_reason":"length"}]}`
	if string(got) != want { // sorted by index, whatever order they came in
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

// DeepSeek and vLLM stream the reasoning in reasoning_content, with null in the other field.
func TestAssembleReasoningContent(t *testing.T) {
	stream := sseStream(
		chatChunk(`{"index":0,"delta":{"role":"assistant","content":"","reasoning_content":null},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"content":null,"reasoning_content":"The user"},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"content":null,"reasoning_content":" greets me."},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"content":"Hi","reasoning_content":null},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"content":"!","reasoning_content":null},"logprobs":null,"finish_reason":"stop"}`),
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[],"usage":{"prompt_tokens":5,"total_tokens":12,"completion_tokens":7}}`,
	)
	got := mustAssemble(t, Chat, stream)
	want := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi!","refusal":null,"reasoning_content":"The user greets me."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"total_tokens":12,"completion_tokens":7}}`
	if string(got) != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

func TestAssembleRefusal(t *testing.T) {
	stream := sseStream(
		chatChunk(`{"index":0,"delta":{"role":"assistant","content":null,"refusal":""},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"refusal":"I'm sorry,"},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"refusal":" I can't help with that."},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}`),
	)
	got := mustAssemble(t, Chat, stream)
	want := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I'm sorry, I can't help with that."},"logprobs":null,"finish_reason":"stop"}]}`
	sameJSON(t, got, []byte(want))
}

func TestAssembleLogprobs(t *testing.T) {
	lp := func(tok string, p string) string {
		return `{"content":[{"token":"` + tok + `","logprob":` + p + `,"bytes":[72],"top_logprobs":[{"token":"` + tok + `","logprob":` + p + `,"bytes":[72]}]}],"refusal":null}`
	}
	stream := sseStream(
		chatChunk(`{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"content":"H"},"logprobs":`+lp("H", "-1.2e-05")+`,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"content":"i"},"logprobs":`+lp("i", "-0.31326166")+`,"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{},"logprobs":{"content":[],"refusal":null},"finish_reason":"stop"}`),
	)
	got := mustAssemble(t, Chat, stream)
	want := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null},"logprobs":{"content":[` +
		`{"token":"H","logprob":-1.2e-05,"bytes":[72],"top_logprobs":[{"token":"H","logprob":-1.2e-05,"bytes":[72]}]},` +
		`{"token":"i","logprob":-0.31326166,"bytes":[72],"top_logprobs":[{"token":"i","logprob":-0.31326166,"bytes":[72]}]}],"refusal":null},"finish_reason":"stop"}]}`
	if string(got) != want { // number spellings kept
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

// vLLM's legacy completions stream, with logprobs and its extra stop_reason.
func TestAssembleCompletion(t *testing.T) {
	c := func(choice string) string {
		return `{"id":"cmpl-9","object":"text_completion","created":1700000001,"model":"Qwen/Qwen2.5-0.5B","choices":[` + choice + `],"usage":null}`
	}
	stream := sseStream(
		c(`{"index":0,"text":" Paris","logprobs":{"text_offset":[20],"token_logprobs":[-0.05],"tokens":[" Paris"],"top_logprobs":[{" Paris":-0.05}]},"finish_reason":null,"stop_reason":null}`),
		c(`{"index":0,"text":".","logprobs":{"text_offset":[26],"token_logprobs":[-1.5],"tokens":["."],"top_logprobs":[{".":-1.5}]},"finish_reason":"length","stop_reason":null}`),
		`{"id":"cmpl-9","object":"text_completion","created":1700000001,"model":"Qwen/Qwen2.5-0.5B","choices":[],"usage":{"prompt_tokens":6,"total_tokens":8,"completion_tokens":2}}`,
	)
	got := mustAssemble(t, Completion, stream)
	want := `{"id":"cmpl-9","object":"text_completion","created":1700000001,"model":"Qwen/Qwen2.5-0.5B","choices":[{"text":" Paris.","index":0,"logprobs":{"tokens":[" Paris","."],"token_logprobs":[-0.05,-1.5],"top_logprobs":[{" Paris":-0.05},{".":-1.5}],"text_offset":[20,26]},"finish_reason":"length"}],"usage":{"prompt_tokens":6,"total_tokens":8,"completion_tokens":2}}`
	if string(got) != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
	if want := []string{"id", "object", "created", "model", "choices", "usage"}; !reflect.DeepEqual(topKeys(t, got), want) {
		t.Errorf("top-level keys %q", topKeys(t, got))
	}
}

func TestAssembleIncomplete(t *testing.T) {
	full := sseStream(
		chatChunk(`{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{},"finish_reason":"stop"}`),
	)
	for _, tc := range []struct {
		name, stream, reason string
	}{
		{"cut before [DONE]", strings.TrimSuffix(full, "data: [DONE]\n\n"), "stream ended without [DONE]"},
		{"cut inside an event", full[:len(full)-30], "stream ended without [DONE]"},
		{"empty", "", "stream ended without [DONE]"},
		{"no finish_reason", sseStream(chatChunk(`{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}`)), "choice 0 has no finish_reason"},
		{"one choice unfinished", sseStream(
			chatChunk(`{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}`),
			chatChunk(`{"index":1,"delta":{"content":"b"},"finish_reason":null}`)), "choice 1 has no finish_reason"},
		{"no choices", sseStream(`{"id":"x","choices":[],"usage":{"total_tokens":1}}`), "stream had no choices"},
		{"data after [DONE]", full + "data: " + chatChunk(`{"index":0,"delta":{"content":"more"}}`) + "\n\n", "data after [DONE]"},
		{"unknown structured delta field", sseStream(chatChunk(`{"index":0,"delta":{"content":"a","audio":{"id":"x"}},"finish_reason":"stop"}`)), `choice 0 has a delta field "audio" that cannot be assembled`},
		{"content parts", sseStream(chatChunk(`{"index":0,"delta":{"content":[{"type":"text","text":"a"}]},"finish_reason":"stop"}`)), "choice 0 has content that is not a string"},
		{"escaped unknown key", sseStream(chatChunk(`{"index":0,"delta":{"re\u0061soning":"a"},"finish_reason":"stop"}`)), `choice 0 has a delta field "re\\u0061soning" that cannot be assembled`},
		{"completion chunk in a chat stream", sseStream(`{"id":"x","choices":[{"index":0,"text":"a","finish_reason":"stop"}]}`), `a chat choice carries "text"`},
	} {
		body, ok, reason, err := assemble(Chat, []byte(tc.stream))
		if ok || body != nil || reason != tc.reason || err != nil {
			t.Errorf("%s: ok=%v reason=%q err=%v body=%s; want reason %q", tc.name, ok, reason, err, body, tc.reason)
		}
	}
}

func TestAssembleErrors(t *testing.T) {
	head := "data: " + chatChunk(`{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}`) + "\n\n"
	tail := "data: " + chatChunk(`{"index":0,"delta":{},"finish_reason":"stop"}`) + "\n\ndata: [DONE]\n\n"
	for _, tc := range []struct {
		name, event string
		upstream    bool // the error is one the upstream sent
	}{
		{"error event", "event: error\ndata: {\"message\":\"overloaded\"}\n\n", true},
		{"error event without data", "event: error\n\n", true},
		{"error object", `data: {"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}` + "\n\n", true},
		{"error beside choices", `data: {"id":"x","choices":[],"error":{"message":"cut"}}` + "\n\n", true},
		{"garbage", "data: hello world\n\n", false},
		{"truncated JSON", `data: {"id":"x","choices":[{"index":0,` + "\n\n", false},
		{"not an object", "data: [1,2]\n\n", false},
		{"invalid UTF-8", "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xff\"}}]}\n\n", false},
		{"bad index", `data: {"choices":[{"index":-1,"delta":{}}]}` + "\n\n", false},
		{"choices not an array", `data: {"choices":{"index":0}}` + "\n\n", false},
	} {
		a := NewAssembler(Chat)
		var first error
		var s Splitter
		s.Feed([]byte(head+tc.event+tail), func(ev []byte) {
			if err := a.Event(ev); err != nil && first == nil {
				first = err
			}
		})
		if first == nil {
			t.Errorf("%s: Event returned no error", tc.name)
			continue
		}
		if errors.Is(first, ErrUpstream) != tc.upstream {
			t.Errorf("%s: error %v, errors.Is(ErrUpstream) = %v", tc.name, first, !tc.upstream)
		}
		if err := a.Event([]byte("data: [DONE]\n\n")); err != first {
			t.Errorf("%s: later Event returned %v, want the first error again", tc.name, err)
		}
		if body, ok, reason := a.Result(); ok || body != nil || reason != first.Error() {
			t.Errorf("%s: Result ok=%v reason=%q, want %q", tc.name, ok, reason, first)
		}
	}
}

// A chunk of an unknown kind cannot be assembled.
func TestAssembleBadKind(t *testing.T) {
	a := NewAssembler(Kind(9))
	if err := a.Event([]byte("data: {}\n\n")); err == nil {
		t.Fatal("no error for an unknown kind")
	}
	if _, ok, _ := a.Result(); ok {
		t.Fatal("Result ok for an unknown kind")
	}
}

// Named events of other protocols and events without data leave the answer alone; the first non-null value of
// a top-level field wins, except usage, whose last value wins (running totals).
func TestAssembleFieldSources(t *testing.T) {
	stream := "event: ping\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"X\"}}]}\n\n" +
		"id: 3\n\n" +
		sseStream(
			`{"id":null,"created":1,"model":"a","system_fingerprint":null,"choices":[{"index":0,"delta":{"role":"assistant","content":"A"},"finish_reason":null}],"usage":{"total_tokens":1}}`,
			`{"id":"late","created":2,"model":"b","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"user","content":"B"},"finish_reason":"length"}],"usage":{"total_tokens":2}}`,
			`{"id":"later","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`,
		)
	got := mustAssemble(t, Chat, stream)
	want := `{"id":"late","object":"chat.completion","created":1,"model":"a","choices":[{"index":0,"message":{"role":"assistant","content":"AB","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"total_tokens":2},"system_fingerprint":"fp"}`
	if string(got) != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

// Fields the package does not know: text is concatenated like reasoning_content (vLLM's newer "reasoning"),
// empty containers are dropped, the legacy function_call is assembled.
func TestAssembleOtherFields(t *testing.T) {
	stream := sseStream(
		chatChunk(`{"index":0,"delta":{"role":"assistant","reasoning":"th","annotations":[],"con\u0074ent":"X"},"finish_reason":null,"stop_reason":null}`),
		chatChunk(`{"index":0,"delta":{"reasoning":"ink","function_call":{"name":"lookup","arguments":""}},"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"function_call":{"arguments":"{\"q\":"}},"finish_reason":null}`),
		chatChunk(`{"index":0,"delta":{"function_call":{"arguments":"1}"}},"finish_reason":"function_call"}`),
	)
	got := mustAssemble(t, Chat, stream)
	want := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"X","refusal":null,"reasoning":"think","function_call":{"name":"lookup","arguments":"{\"q\":1}"}},"logprobs":null,"finish_reason":"function_call"}]}`
	if string(got) != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

// Content is "" when only empty content deltas came, and null when none did.
func TestAssembleEmptyVersusNullContent(t *testing.T) {
	for _, tc := range []struct{ delta, content string }{
		{`{"role":"assistant","content":""}`, `""`},
		{`{"role":"assistant"}`, `null`},
		{`{"role":"assistant","content":null}`, `null`},
	} {
		got := mustAssemble(t, Chat, sseStream(chatChunk(`{"index":0,"delta":`+tc.delta+`,"finish_reason":"length"}`)))
		if !strings.Contains(string(got), `"content":`+tc.content+`,`) {
			t.Errorf("delta %s: %s", tc.delta, got)
		}
	}
}

func TestKindString(t *testing.T) {
	if got := fmt.Sprint(Chat, Completion, Kind(0)); got != "chat completion Kind(0)" {
		t.Error(got)
	}
}
