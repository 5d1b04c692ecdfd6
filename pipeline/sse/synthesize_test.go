package sse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// roundTripStreams are upstream streams whose assembled answers must survive a replay. Together they cover
// tool calls, refusal, reasoning, logprobs, n=2, usage present and absent, legacy function_call, unicode.
func roundTripStreams() []struct {
	name   string
	kind   Kind
	stream string
} {
	long := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 30)
	cjk := strings.Repeat("我能吞下玻璃而不伤身体。", 12) + "😀🎉👩‍👩‍👧 – ça va? " + strings.Repeat("😀", 40) + "Ωmega\u0301"
	escaped := strings.Repeat(`\ud83d\ude00\u00e9\n\"\\\t\/`, 20)
	return []struct {
		name   string
		kind   Kind
		stream string
	}{
		{"openai", Chat, openAIChatStream},
		{"long", Chat, sseStream(
			`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":"`+long+`"},"finish_reason":"length"}]}`,
			`{"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":300,"total_tokens":301}}`)},
		{"cjk and emoji", Chat, sseStream(chatChunk(`{"index":0,"delta":{"role":"assistant","content":"` + cjk + `"},"finish_reason":"stop"}`))},
		{"escaped surrogates", Chat, sseStream(chatChunk(`{"index":0,"delta":{"role":"assistant","content":"` + escaped + `"},"finish_reason":"stop"}`))},
		{"tool calls", Chat, sseStream(
			chatChunk(`{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}`),
			chatChunk(`{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"search","arguments":"{\"query\": \"`+long[:200]+`\"}"}}]},"finish_reason":null}`),
			chatChunk(`{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\":\"東京\"}"}}]},"finish_reason":"tool_calls"}`))},
		{"content and tool call", Chat, sseStream(
			chatChunk(`{"index":0,"delta":{"role":"assistant","content":"Let me check."},"finish_reason":null}`),
			chatChunk(`{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_x","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":"tool_calls"}`))},
		{"refusal", Chat, sseStream(
			chatChunk(`{"index":0,"delta":{"role":"assistant","content":null,"refusal":""},"finish_reason":null}`),
			chatChunk(`{"index":0,"delta":{"refusal":"I'm sorry, I can't help with that request because it asks for something I must not provide."},"finish_reason":"stop"}`))},
		{"empty refusal", Chat, sseStream(chatChunk(`{"index":0,"delta":{"role":"assistant","content":"","refusal":""},"finish_reason":"stop"}`))},
		{"reasoning", Chat, sseStream(
			chatChunk(`{"index":0,"delta":{"role":"assistant","content":"","reasoning_content":"Hmm, "},"finish_reason":null}`),
			chatChunk(`{"index":0,"delta":{"reasoning_content":"`+long[:300]+`","reasoning":"also"},"finish_reason":null}`),
			chatChunk(`{"index":0,"delta":{"content":"42"},"finish_reason":"stop"}`))},
		{"logprobs", Chat, sseStream(
			chatChunk(`{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}`),
			chatChunk(`{"index":0,"delta":{"content":"Hi"},"logprobs":{"content":[{"token":"Hi","logprob":-1.2e-05,"bytes":[72,105],"top_logprobs":[]}],"refusal":null},"finish_reason":null}`),
			chatChunk(`{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}`))},
		{"logprobs without content", Chat, sseStream(
			chatChunk(`{"index":0,"delta":{"role":"assistant","content":""},"logprobs":{"content":[],"refusal":null},"finish_reason":"stop"}`))},
		{"refusal logprobs", Chat, sseStream(
			chatChunk(`{"index":0,"delta":{"role":"assistant","refusal":"No."},"logprobs":{"content":null,"refusal":[{"token":"No","logprob":-0.1,"bytes":[78,111],"top_logprobs":[]}]},"finish_reason":"stop"}`))},
		{"n=2", Chat, sseStream(
			chatChunk(`{"index":1,"delta":{"role":"assistant","content":"Second `+cjk[:60]+`"},"finish_reason":null}`),
			chatChunk(`{"index":0,"delta":{"role":"assistant","content":"First"},"finish_reason":"stop"},{"index":1,"delta":{"tool_calls":[{"index":0,"id":"t","type":"function","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}`),
			`{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9,"total_tokens":12}}`)},
		{"function_call", Chat, sseStream(
			chatChunk(`{"index":0,"delta":{"role":"assistant","content":null,"function_call":{"name":"lookup","arguments":"{\"q\": \"` + long[:100] + `\"}"}},"finish_reason":"function_call"}`))},
		{"service tier and missing id", Chat, sseStream(
			`{"object":"chat.completion.chunk","created":5,"model":"m","service_tier":"flex","choices":[{"index":0,"delta":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)},
		{"completion", Completion, sseStream(
			`{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","system_fingerprint":"fp","choices":[{"index":0,"text":"`+long[:200]+cjk[:90]+`","logprobs":{"tokens":["a","b"],"token_logprobs":[-0.5,null],"top_logprobs":[null,{"b":-1.0}],"text_offset":[0,1]},"finish_reason":null}]}`,
			`{"id":"cmpl-1","choices":[{"index":0,"text":"!","logprobs":{"tokens":["!"],"token_logprobs":[-2],"top_logprobs":[{"!":-2}],"text_offset":[2]},"finish_reason":"length"}]}`,
			`{"id":"cmpl-1","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}}`)},
		{"completion n=2 empty text", Completion, sseStream(
			`{"id":"cmpl-2","object":"text_completion","created":1,"model":"m","choices":[{"index":1,"text":"x","logprobs":null,"finish_reason":"stop"},{"index":0,"text":"","logprobs":null,"finish_reason":"length"}]}`)},
	}
}

// Assemble(Synthesize(body)) is body, for the bodies Assemble makes.
func TestRoundTrip(t *testing.T) {
	for _, tc := range roundTripStreams() {
		t.Run(tc.name, func(t *testing.T) {
			body := mustAssemble(t, tc.kind, tc.stream)
			replay, err := Synthesize(nil, tc.kind, body, true)
			if err != nil {
				t.Fatal(err)
			}
			again := mustAssemble(t, tc.kind, string(replay))
			sameJSON(t, again, body)
			if !bytes.Equal(again, body) {
				t.Errorf("not byte for byte:\n got %s\nwant %s", again, body)
			}
			checkReplay(t, tc.kind, replay, body, true)

			// Without include_usage the replay has no usage, and is otherwise the same.
			replay, err = Synthesize(nil, tc.kind, body, false)
			if err != nil {
				t.Fatal(err)
			}
			checkReplay(t, tc.kind, replay, body, false)
			want := decode(t, body).(map[string]any)
			delete(want, "usage")
			wantBody, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, mustAssemble(t, tc.kind, string(replay)), wantBody)
		})
	}
}

// chunk is what the tests read back from a synthesized event; raw fields keep the bytes as written.
type chunk struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           json.RawMessage `json:"created"`
	Model             string          `json:"model"`
	SystemFingerprint *string         `json:"system_fingerprint"`
	Usage             json.RawMessage `json:"usage"`
	Choices           []struct {
		Index        int                        `json:"index"`
		Delta        map[string]json.RawMessage `json:"delta"`
		Text         *json.RawMessage           `json:"text"`
		Logprobs     json.RawMessage            `json:"logprobs"`
		FinishReason *string                    `json:"finish_reason"`
	} `json:"choices"`
}

// checkReplay checks the shape of a replay of body: the framing, every chunk's common fields, one role chunk
// first and one finish chunk last per choice, text pieces that are whole UTF-8 and at most pieceBytes long,
// usage as include_usage asks, [DONE] last.
func checkReplay(t *testing.T, kind Kind, replay, body []byte, includeUsage bool) {
	t.Helper()
	var stored struct {
		ID                string          `json:"id"`
		Created           json.RawMessage `json:"created"`
		Model             string          `json:"model"`
		SystemFingerprint *string         `json:"system_fingerprint"`
		Usage             json.RawMessage `json:"usage"`
	}
	if err := json.Unmarshal(body, &stored); err != nil {
		t.Fatal(err)
	}
	evs := events(t, replay)
	if len(evs) < 2 || evs[len(evs)-1] != "[DONE]" {
		t.Fatalf("replay does not end with [DONE]: %q", evs)
	}
	wantObject := map[Kind]string{Chat: "chat.completion.chunk", Completion: "text_completion"}[kind]
	usageChunks := 0
	seen := map[int]int{} // chunks per choice index
	finished := map[int]bool{}
	for n, data := range evs[:len(evs)-1] {
		var c chunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("event %d is not a chunk: %v: %s", n, err, data)
		}
		if c.ID != stored.ID || c.Object != wantObject || string(c.Created) != string(stored.Created) || c.Model != stored.Model ||
			fmt.Sprint(c.SystemFingerprint != nil) != fmt.Sprint(stored.SystemFingerprint != nil) {
			t.Fatalf("event %d has the wrong common fields: %s", n, data)
		}
		hasUsageKey := strings.Contains(data, `"usage":`)
		if len(c.Choices) == 0 {
			usageChunks++
			if !includeUsage || string(c.Usage) != string(compact(t, stored.Usage)) || n != len(evs)-2 {
				t.Fatalf("event %d: unexpected usage chunk: %s", n, data)
			}
			continue
		}
		if hasUsageKey != includeUsage || includeUsage && string(c.Usage) != "null" {
			t.Fatalf("event %d: usage key %v with include_usage %v: %s", n, hasUsageKey, includeUsage, data)
		}
		if len(c.Choices) != 1 {
			t.Fatalf("event %d has %d choices", n, len(c.Choices))
		}
		ch := c.Choices[0]
		if finished[ch.Index] {
			t.Fatalf("event %d: choice %d continues after its finish chunk", n, ch.Index)
		}
		first := seen[ch.Index] == 0
		seen[ch.Index]++
		if ch.FinishReason != nil {
			finished[ch.Index] = true
			if kind == Chat && len(ch.Delta) != 0 || kind == Completion && string(*ch.Text) != `""` {
				t.Fatalf("event %d: finish chunk carries text: %s", n, data)
			}
		}
		if kind == Chat && first {
			if string(ch.Delta["role"]) != `"assistant"` || len(ch.Delta) != 2 {
				t.Fatalf("event %d: first chunk of choice %d is no role chunk: %s", n, ch.Index, data)
			}
			continue
		}
		var pieces []json.RawMessage
		if kind == Chat {
			for k, v := range ch.Delta {
				if k == "content" || k == "refusal" || strings.HasPrefix(k, "reason") {
					pieces = append(pieces, v)
				}
			}
		} else {
			pieces = append(pieces, *ch.Text)
		}
		for _, p := range pieces {
			checkPiece(t, p)
		}
	}
	if includeUsage && len(stored.Usage) > 0 && string(stored.Usage) != "null" {
		if usageChunks != 1 {
			t.Fatalf("%d usage chunks, want 1", usageChunks)
		}
	} else if usageChunks != 0 {
		t.Fatalf("%d usage chunks, want none", usageChunks)
	}
	for i := range seen {
		if !finished[i] {
			t.Fatalf("choice %d has no finish chunk", i)
		}
	}
}

// checkPiece checks one text piece as written: valid UTF-8, at most pieceBytes of string body, and no half of
// a surrogate pair (which a JSON decoder would silently turn into U+FFFD).
func checkPiece(t *testing.T, raw json.RawMessage) {
	t.Helper()
	if !utf8.Valid(raw) {
		t.Fatalf("piece %q is not valid UTF-8", raw)
	}
	if len(raw)-2 > pieceBytes {
		t.Fatalf("piece %q is %d bytes long", raw, len(raw)-2)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("piece %s: %v", raw, err)
	}
	if strings.ContainsRune(s, utf8.RuneError) {
		t.Fatalf("piece %s splits a character", raw)
	}
}

func TestSynthesizeChatShape(t *testing.T) {
	body := mustAssemble(t, Chat, openAIChatStream)
	replay, err := Synthesize([]byte("prefix"), Chat, body, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(replay, []byte("prefix")) {
		t.Fatal("dst was not appended to")
	}
	evs := events(t, replay[len("prefix"):])
	head := `{"id":"chatcmpl-BRfKkYq2o0Hv3n","object":"chat.completion.chunk","created":1745851234,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":`
	want := []string{
		head + `[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}`,
		head + `[{"index":0,"delta":{"content":"Caf\u00e9 au lait \"quoted\"\n☕"},"logprobs":null,"finish_reason":null}],"usage":null}`,
		head + `[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`,
		head + `[],"usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`,
		`[DONE]`,
	}
	if strings.Join(evs, "\n") != strings.Join(want, "\n") {
		t.Fatalf("replay\n%s\nwant\n%s", strings.Join(evs, "\n"), strings.Join(want, "\n"))
	}
}

func TestSynthesizeToolCallShape(t *testing.T) {
	body := `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
		`{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\": 1}"}},{"id":"call_2","type":"function","function":{"name":"g","arguments":""}}]},"logprobs":null,"finish_reason":"tool_calls"}]}`
	replay, err := Synthesize(nil, Chat, []byte(body), false)
	if err != nil {
		t.Fatal(err)
	}
	var deltas []string
	for _, ev := range events(t, replay) {
		if i := strings.Index(ev, `"delta":`); i >= 0 {
			deltas = append(deltas, ev[i+len(`"delta":`):strings.Index(ev, `,"logprobs"`)])
		}
	}
	want := []string{
		`{"role":"assistant","content":null}`,
		`{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}`,
		`{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\": 1}"}}]}`,
		`{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"g","arguments":""}}]}`,
		`{}`,
	}
	if strings.Join(deltas, "\n") != strings.Join(want, "\n") {
		t.Fatalf("deltas\n%s\nwant\n%s", strings.Join(deltas, "\n"), strings.Join(want, "\n"))
	}
}

func TestSynthesizeCompletionShape(t *testing.T) {
	body := `{"id":"cmpl-1","object":"text_completion","created":7,"model":"m","choices":[{"text":" Paris.","index":0,"logprobs":{"tokens":[" Paris","."]},"finish_reason":"length"}],"usage":{"total_tokens":9}}`
	replay, err := Synthesize(nil, Completion, []byte(body), true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"id":"cmpl-1","object":"text_completion","created":7,"choices":[{"text":" Paris.","index":0,"logprobs":{"tokens":[" Paris","."]},"finish_reason":null}],"model":"m","usage":null}`,
		`{"id":"cmpl-1","object":"text_completion","created":7,"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"length"}],"model":"m","usage":null}`,
		`{"id":"cmpl-1","object":"text_completion","created":7,"choices":[],"model":"m","usage":{"total_tokens":9}}`,
		`[DONE]`,
	}
	if evs := events(t, replay); strings.Join(evs, "\n") != strings.Join(want, "\n") {
		t.Fatalf("replay\n%s\nwant\n%s", strings.Join(evs, "\n"), strings.Join(want, "\n"))
	}
}

// A stored answer that came from a non-streamed request: indented, keys in another order, fields the
// assembler drops (annotations, an unknown top-level field). The replay still assembles into the same answer
// apart from those.
func TestSynthesizeNonStreamedAnswer(t *testing.T) {
	body := `{
  "choices": [
    {
      "finish_reason": "stop",
      "message": {"annotations": [], "content": "Hello there, how may I assist you today?", "role": "assistant", "refusal": null},
      "logprobs": null,
      "index": 0
    }
  ],
  "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
  "created": 1677652288, "id": "chatcmpl-123", "model": "gpt-4o-mini", "object": "chat.completion",
  "system_fingerprint": "fp_44709d6fcb", "service_tier": "default", "x_extra": {"a": 1}
}`
	replay, err := Synthesize(nil, Chat, []byte(body), true)
	if err != nil {
		t.Fatal(err)
	}
	checkReplay(t, Chat, replay, []byte(body), true)
	if !strings.Contains(string(replay), `"delta":{"annotations":[]}`) {
		t.Error("annotations were not replayed")
	}
	got := mustAssemble(t, Chat, string(replay))
	want := `{"id":"chatcmpl-123","object":"chat.completion","created":1677652288,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how may I assist you today?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21},"system_fingerprint":"fp_44709d6fcb","service_tier":"default"}`
	if string(got) != want {
		t.Errorf("assembled replay\n got %s\nwant %s", got, want)
	}
}

func TestSynthesizeUsage(t *testing.T) {
	withUsage := `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"total_tokens":3}}`
	noUsage := `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":null}`
	for _, tc := range []struct {
		body              string
		include           bool
		usageKeys, chunks int
	}{
		{withUsage, true, 4, 1},
		{withUsage, false, 0, 0},
		{noUsage, true, 3, 0}, // usage:null in every chunk, no usage chunk without a stored usage
		{noUsage, false, 0, 0},
	} {
		replay, err := Synthesize(nil, Chat, []byte(tc.body), tc.include)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(replay), `"usage":`); n != tc.usageKeys {
			t.Errorf("include=%v body=%s: %d usage keys, want %d", tc.include, tc.body, n, tc.usageKeys)
		}
		if n := strings.Count(string(replay), `"choices":[]`); n != tc.chunks {
			t.Errorf("include=%v body=%s: %d usage chunks, want %d", tc.include, tc.body, n, tc.chunks)
		}
	}
}

// Pieces are about pieceBytes long, cut after a space when there is one in the second half.
func TestSynthesizePieces(t *testing.T) {
	text := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit. ", 10)
	body := `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` + text + `"},"finish_reason":"stop"}]}`
	replay, err := Synthesize(nil, Chat, []byte(body), false)
	if err != nil {
		t.Fatal(err)
	}
	var pieces []string
	for _, ev := range events(t, replay) {
		var c chunk
		if ev == "[DONE]" || json.Unmarshal([]byte(ev), &c) != nil {
			continue
		}
		var s string
		if raw, ok := c.Choices[0].Delta["content"]; ok && json.Unmarshal(raw, &s) == nil && s != "" {
			pieces = append(pieces, s)
		}
	}
	if strings.Join(pieces, "") != text {
		t.Fatalf("pieces do not add up to the content: %q", pieces)
	}
	for i, p := range pieces[:len(pieces)-1] {
		if len(p) > pieceBytes || len(p) < pieceBytes/2 || !strings.HasSuffix(p, " ") {
			t.Errorf("piece %d %q", i, p)
		}
	}
}

// Text without spaces (CJK, emoji) is cut between characters, never inside one.
func TestSynthesizePiecesUTF8(t *testing.T) {
	for _, content := range []string{
		strings.Repeat("日本語のテキスト", 20),
		strings.Repeat("😀", 50),
		strings.Repeat("a😀", 50),
		strings.Repeat(`\ud83d\ude00`, 20),
		strings.Repeat(`x\ud83d\ude00`, 20),
		strings.Repeat(`\u00e9\"`, 30),
		"e\u0301" + strings.Repeat("é", 60),
	} {
		body := mustAssemble(t, Chat, sseStream(chatChunk(`{"index":0,"delta":{"role":"assistant","content":"`+content+`"},"finish_reason":"stop"}`)))
		replay, err := Synthesize(nil, Chat, body, false)
		if err != nil {
			t.Fatal(err)
		}
		checkReplay(t, Chat, replay, body, false)
		if got := mustAssemble(t, Chat, string(replay)); !bytes.Equal(got, body) {
			t.Fatalf("round trip\n got %s\nwant %s", got, body)
		}
	}
}

func TestSynthesizeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind Kind
		body string
	}{
		{"not JSON", Chat, `{"choices":[`},
		{"not an object", Chat, `[]`},
		{"no choices", Chat, `{"id":"x"}`},
		{"empty choices", Chat, `{"id":"x","choices":[]}`},
		{"choice not an object", Chat, `{"choices":[1]}`},
		{"bad index", Chat, `{"choices":[{"index":"0","message":{"content":"a"}}]}`},
		{"completion answer as chat", Chat, `{"choices":[{"index":0,"text":"a","finish_reason":"stop"}]}`},
		{"chat answer as completion", Completion, `{"choices":[{"index":0,"message":{"content":"a"},"finish_reason":"stop"}]}`},
		{"content parts", Chat, `{"choices":[{"index":0,"message":{"content":[{"type":"text","text":"a"}]},"finish_reason":"stop"}]}`},
		{"tool call without function", Chat, `{"choices":[{"index":0,"message":{"tool_calls":[{"id":"a","type":"custom","custom":{}}]},"finish_reason":"stop"}]}`},
		{"arguments not a string", Chat, `{"choices":[{"index":0,"message":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":{}}}]},"finish_reason":"stop"}]}`},
		{"logprobs not an object", Completion, `{"choices":[{"index":0,"text":"","logprobs":"","finish_reason":"stop"}]}`},
		{"logprobs content not an array", Chat, `{"choices":[{"index":0,"message":{"content":"a"},"logprobs":{"content":{}},"finish_reason":"stop"}]}`},
		{"unknown kind", Kind(0), `{"choices":[{"index":0,"message":{"content":"a"},"finish_reason":"stop"}]}`},
	} {
		dst := []byte("kept")
		out, err := Synthesize(dst, tc.kind, []byte(tc.body), true)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
		}
		if string(out) != "kept" {
			t.Errorf("%s: dst changed to %q", tc.name, out)
		}
	}
}

// Choices are replayed in index order whatever their order in the stored answer.
func TestSynthesizeChoiceOrder(t *testing.T) {
	var choices []string
	for i := 11; i >= 0; i-- { // more than the stack array holds
		choices = append(choices, fmt.Sprintf(`{"index":%d,"message":{"role":"assistant","content":"c%d"},"finish_reason":"stop"}`, i, i))
	}
	body := `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[` + strings.Join(choices, ",") + `]}`
	replay, err := Synthesize(nil, Chat, []byte(body), false)
	if err != nil {
		t.Fatal(err)
	}
	last := -1
	for _, ev := range events(t, replay) {
		var c chunk
		if ev == "[DONE]" {
			continue
		}
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatal(err)
		}
		if c.Choices[0].Index < last {
			t.Fatalf("choice %d after choice %d", c.Choices[0].Index, last)
		}
		last = c.Choices[0].Index
	}
	got := mustAssemble(t, Chat, string(replay))
	if !strings.Contains(string(got), `"choices":[{"index":0,"message":{"role":"assistant","content":"c0"`) || strings.Count(string(got), `"finish_reason":"stop"`) != 12 {
		t.Fatalf("assembled %s", got)
	}
}

// The ASCII fast path of nextPiece cuts where walking the text unit by unit would.
func TestNextPieceFastPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(200))
		for i := range b {
			b[i] = "ab cdefghij  klmnopq"[rng.IntN(20)]
		}
		for i := 0; i < len(b); {
			fast, slow := nextPiece(b, i), nextPieceTokens(b, i)
			if fast != slow {
				t.Fatalf("nextPiece(%q, %d) = %d, walking gives %d", b, i, fast, slow)
			}
			i = fast
		}
	}
}
