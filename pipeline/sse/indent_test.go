package sse

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// indentedChat is a non-streamed chat answer as api.openai.com writes it: indented by two spaces, with
// "key": value, and every kind of value the replay copies spread over several lines (usage and its details,
// logprobs, tool calls, annotations).
const indentedChat = `{
  "id": "chatcmpl-CAbc123",
  "object": "chat.completion",
  "created": 1756000000,
  "model": "gpt-4o-mini-2024-07-18",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "Hello! \"Line one\"\nLine two.",
        "refusal": null,
        "tool_calls": [
          {
            "id": "call_1",
            "type": "function",
            "function": {
              "name": "get_weather",
              "arguments": "{\"city\":\"Paris\"}"
            }
          }
        ],
        "annotations": [
          {
            "type": "url_citation",
            "url_citation": {
              "start_index": 0,
              "end_index": 5,
              "url": "https://example.com/"
            }
          }
        ]
      },
      "logprobs": {
        "content": [
          {
            "token": "Hello",
            "logprob": -0.0001,
            "bytes": [
              72,
              101
            ],
            "top_logprobs": []
          }
        ],
        "refusal": null
      },
      "finish_reason": "tool_calls"
    }
  ],
  "usage": {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {
      "cached_tokens": 0,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default",
  "system_fingerprint": "fp_560af6e559"
}
`

// indentedCompletion is a legacy completions answer with logprobs, indented the same way.
const indentedCompletion = `{
  "id": "cmpl-1",
  "object": "text_completion",
  "created": 1756000000,
  "model": "gpt-3.5-turbo-instruct",
  "choices": [
    {
      "text": " Paris.\n",
      "index": 0,
      "logprobs": {
        "tokens": [
          " Paris",
          ".\n"
        ],
        "token_logprobs": [
          -0.5,
          -0.25
        ],
        "top_logprobs": [
          {
            " Paris": -0.5
          },
          null
        ],
        "text_offset": [
          0,
          6
        ]
      },
      "finish_reason": "length"
    }
  ],
  "usage": {
    "prompt_tokens": 5,
    "completion_tokens": 2,
    "total_tokens": 7
  },
  "system_fingerprint": "fp_x"
}
`

// whitespaceVariants gives body as written, with tabs for its indentation and with CRLF line ends (both at
// once too), which is what other servers and hand-written fixtures use.
func whitespaceVariants(body string) map[string]string {
	tabs := strings.ReplaceAll(body, "  ", "\t")
	return map[string]string{
		"two spaces":  body,
		"tabs":        tabs,
		"crlf":        strings.ReplaceAll(body, "\n", "\r\n"),
		"tabs crlf":   strings.ReplaceAll(tabs, "\n", "\r\n"),
		"space colon": strings.ReplaceAll(body, `": `, `" :  `),
	}
}

// checkReplayLines holds a replay to what every SSE client needs: each event is a single "data: " line
// holding no line break, each data line but the last is a JSON object, the stream ends with [DONE], and the
// usage chunk (no choices, the stored usage, and the only event IsUsageChunk picks) is there exactly when
// asked for and the answer has usage.
func checkReplayLines(t testing.TB, replay, body []byte, includeUsage bool) {
	t.Helper()
	if !bytes.HasSuffix(replay, []byte("data: [DONE]\n\n")) {
		t.Fatalf("replay does not end with [DONE]: %q", replay)
	}
	evs := bytes.SplitAfter(replay, []byte("\n\n"))
	if len(evs[len(evs)-1]) != 0 {
		t.Fatalf("replay ends with a partial event: %q", evs[len(evs)-1])
	}
	evs = evs[:len(evs)-1]
	usage := storedUsage(t, body)
	usageChunks := 0
	for n, ev := range evs[:len(evs)-1] {
		data, ok := bytes.CutPrefix(ev[:len(ev)-2], []byte("data: "))
		if !ok {
			t.Fatalf("event %d is not a data line: %q", n, ev)
		}
		if bytes.ContainsAny(data, "\r\n") {
			t.Fatalf("data line %d holds a line break: %q", n, data)
		}
		if !json.Valid(data) || data[0] != '{' {
			t.Fatalf("data line %d is not a JSON object: %q", n, data)
		}
		var c struct {
			Choices []json.RawMessage `json:"choices"`
			Usage   json.RawMessage   `json:"usage"`
		}
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatal(err)
		}
		if IsUsageChunk(ev) != (len(c.Choices) == 0) {
			t.Fatalf("IsUsageChunk is %v for event %d: %s", IsUsageChunk(ev), n, data)
		}
		if len(c.Choices) == 0 {
			usageChunks++
			if want := compact(t, usage); !bytes.Equal(c.Usage, want) {
				t.Fatalf("usage chunk carries %s, want %s", c.Usage, want)
			}
		}
	}
	wantUsage := 0
	if includeUsage && usage != nil {
		wantUsage = 1
	}
	if usageChunks != wantUsage {
		t.Fatalf("%d usage chunks, want %d (include_usage %v)", usageChunks, wantUsage, includeUsage)
	}
}

// storedUsage returns the answer's usage: the last top-level "usage" member that is not null (as the
// replay reads a body with duplicate keys), or nil.
func storedUsage(t testing.TB, body []byte) json.RawMessage {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(body))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", body)
	}
	var usage json.RawMessage
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		if tok == "usage" && string(v) != "null" {
			usage = v
		}
	}
	return usage
}

// compact returns body without insignificant whitespace, as encoding/json writes it.
func compact(t testing.TB, body []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, body); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// An indented answer replays as SSE whose data lines hold no line break: upstreams such as OpenAI's API
// indent their non-streamed answers, and a data line cut at the answer's newlines breaks every SDK. The
// replay is the one of the same answer written compactly, byte for byte.
func TestSynthesizeIndentedAnswer(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind Kind
		body string
	}{
		{"chat", Chat, indentedChat},
		{"completion", Completion, indentedCompletion},
	} {
		for variant, body := range whitespaceVariants(tc.body) {
			t.Run(tc.name+"/"+variant, func(t *testing.T) {
				for _, usage := range []bool{true, false} {
					replay, err := Synthesize(nil, tc.kind, []byte(body), usage)
					if err != nil {
						t.Fatal(err)
					}
					checkReplayLines(t, replay, []byte(body), usage)
					checkReplay(t, tc.kind, replay, compact(t, []byte(body)), usage)
					want, err := Synthesize(nil, tc.kind, compact(t, []byte(body)), usage)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(replay, want) {
						t.Fatalf("replay of the indented answer\n%s\ndiffers from the replay of its compact form\n%s", replay, want)
					}
				}
			})
		}
	}
}

// The replay of the indented answer assembles into that answer (less what a stream cannot carry: the
// annotations array goes whole in one delta, which the Assembler does not keep), written compactly.
func TestSynthesizeIndentedRoundTrip(t *testing.T) {
	replay, err := Synthesize(nil, Completion, []byte(indentedCompletion), true)
	if err != nil {
		t.Fatal(err)
	}
	got := mustAssemble(t, Completion, string(replay))
	sameJSON(t, got, []byte(indentedCompletion))
	if !bytes.Equal(got, compact(t, got)) {
		t.Errorf("assembled answer is not compact: %s", got)
	}

	// Non-empty annotations have no streaming form the Assembler keeps; without them the chat answer comes
	// back whole.
	var v map[string]any
	if err := json.Unmarshal([]byte(indentedChat), &v); err != nil {
		t.Fatal(err)
	}
	delete(v["choices"].([]any)[0].(map[string]any)["message"].(map[string]any), "annotations")
	chat, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	replay, err = Synthesize(nil, Chat, chat, true)
	if err != nil {
		t.Fatal(err)
	}
	got = mustAssemble(t, Chat, string(replay))
	sameJSON(t, got, chat)
	if !bytes.Equal(got, compact(t, got)) {
		t.Errorf("assembled answer is not compact: %s", got)
	}
}

// The Assembler keeps what it copies out of chunks compact, so a stream whose chunks are written with spaces
// (some servers put one after every colon) stores the same bytes as one written tightly.
func TestAssembleCompactsCopiedValues(t *testing.T) {
	loose := sseStream(
		`{ "id" : "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "system_fingerprint": "fp", "choices": [ { "index": 0, "delta": { "role": "assistant", "content": "a b" }, "logprobs": { "content": [ { "token": "a", "logprob": -1, "bytes": [ 97 ], "top_logprobs": [ ] } ] }, "finish_reason": null } ] }`,
		`{ "id": "c", "choices": [ { "index": 0, "delta": { }, "logprobs": null, "finish_reason": "stop" } ], "usage": { "prompt_tokens": 1, "total_tokens": 2 } }`)
	tight := strings.NewReplacer(`" :`, `":`, `: `, `:`, `, `, `,`, `{ `, `{`, ` }`, `}`, `[ `, `[`, ` ]`, `]`).Replace(loose)
	if strings.Contains(tight, " }") || !strings.Contains(tight, `"content":"a b"`) {
		t.Fatalf("bad fixture: %s", tight)
	}
	got := mustAssemble(t, Chat, loose)
	want := mustAssemble(t, Chat, tight)
	if !bytes.Equal(got, want) {
		t.Fatalf("loose stream assembles to\n%s\nwant\n%s", got, want)
	}
}

func TestAppendCompact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`1`, `1`},
		{`"a b\n\"  c\\"`, `"a b\n\"  c\\"`},
		{" {\r\n\t\"a\" :\t[ 1 ,\n 2 ] , \"b c\": { } }\n", `{"a":[1,2],"b c":{}}`},
		{`["\\", " ", "\""]`, `["\\"," ","\""]`},
		{`null`, `null`},
		{``, ``},
	} {
		if got := AppendCompact([]byte("x"), []byte(tc.in)); string(got) != "x"+tc.want {
			t.Errorf("AppendCompact(%q) = %q, want %q", tc.in, got[1:], tc.want)
		}
	}
}
