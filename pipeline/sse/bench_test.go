package sse

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// benchAnswer is a stored chat answer of about 1.3 KB, the size the performance targets are measured with.
func benchAnswer(tb testing.TB) []byte {
	tb.Helper()
	content := strings.Repeat("The proxy answers repeated requests from its cache, so an evaluation run replays exactly. ", 8)
	body := `{"id":"chatcmpl-BRfKkYq2o0Hv3nZ6tV1x","object":"chat.completion","created":1745851234,"model":"gpt-4o-mini-2024-07-18",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"` + content + `","refusal":null},"logprobs":null,"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":112,"completion_tokens":231,"total_tokens":343,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},` +
		`"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},` +
		`"system_fingerprint":"fp_0392822090","service_tier":"default"}`
	if len(body) < 1200 || len(body) > 1400 {
		tb.Fatalf("bench answer is %d bytes", len(body))
	}
	return []byte(body)
}

// tokenStream is the answer as an upstream streams it: one ~4-byte token per chunk (OpenAI's shape), with
// include_usage.
func tokenStream(tb testing.TB) []byte {
	var content struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(benchAnswer(tb), &content); err != nil {
		tb.Fatal(err)
	}
	head := `{"id":"chatcmpl-BRfKkYq2o0Hv3nZ6tV1x","object":"chat.completion.chunk","created":1745851234,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":`
	chunks := []string{head + `[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}`}
	text := content.Choices[0].Message.Content
	for i := 0; i < len(text); i += 4 {
		piece, _ := json.Marshal(text[i:min(i+4, len(text))])
		chunks = append(chunks, head+`[{"index":0,"delta":{"content":`+string(piece)+`},"logprobs":null,"finish_reason":null}],"usage":null}`)
	}
	chunks = append(chunks, head+`[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`,
		head+`[],"usage":{"prompt_tokens":112,"completion_tokens":231,"total_tokens":343}}`)
	return []byte(sseStream(chunks...))
}

func BenchmarkSynthesize(b *testing.B) {
	body := benchAnswer(b)
	b.Run("sse", func(b *testing.B) {
		dst := make([]byte, 0, 16<<10)
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var err error
			if dst, err = Synthesize(dst[:0], Chat, body, true); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(dst)), "out-bytes")
	})
	// Baseline: only decoding the stored answer with encoding/json, the first step of a reflection-based
	// replay.
	b.Run("baseline=encoding-json-decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var v struct {
				ID      string `json:"id"`
				Choices []struct {
					Message struct {
						Role    string  `json:"role"`
						Content *string `json:"content"`
					} `json:"message"`
					FinishReason string `json:"finish_reason"`
				} `json:"choices"`
				Usage json.RawMessage `json:"usage"`
			}
			if err := json.Unmarshal(body, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAssemble(b *testing.B) {
	replay, err := Synthesize(nil, Chat, benchAnswer(b), true)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range []struct {
		name   string
		stream []byte
	}{
		{"stream=replay", replay},         // 48-byte pieces, as Synthesize writes them
		{"stream=tokens", tokenStream(b)}, // one token per chunk, as upstreams send
	} {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(s.stream)))
			var sp Splitter
			for b.Loop() {
				sp.Reset()
				a := NewAssembler(Chat)
				emit := func(ev []byte) {
					if err := a.Event(ev); err != nil {
						b.Fatal(err)
					}
				}
				// Network reads of up to 4 KiB.
				for rest := s.stream; len(rest) > 0; {
					n := min(4096, len(rest))
					sp.Feed(rest[:n], emit)
					rest = rest[n:]
				}
				if _, ok, reason := a.Result(); !ok {
					b.Fatal(reason)
				}
			}
			b.ReportMetric(float64(strings.Count(string(s.stream), "data: ")), "events")
		})
	}
	// Baseline: decoding each chunk of the token stream with encoding/json, what a reflection-based assembler
	// does before it accumulates anything.
	b.Run("stream=tokens/baseline=encoding-json-decode", func(b *testing.B) {
		stream := tokenStream(b)
		b.ReportAllocs()
		b.SetBytes(int64(len(stream)))
		for b.Loop() {
			var sp Splitter
			sp.Feed(stream, func(ev []byte) {
				data, _, _ := Data(ev)
				if string(data) == "[DONE]" {
					return
				}
				var c struct {
					ID      string `json:"id"`
					Choices []struct {
						Index int `json:"index"`
						Delta struct {
							Role    string  `json:"role"`
							Content *string `json:"content"`
						} `json:"delta"`
						FinishReason *string `json:"finish_reason"`
					} `json:"choices"`
					Usage json.RawMessage `json:"usage"`
				}
				if err := json.Unmarshal(data, &c); err != nil {
					b.Fatal(err)
				}
			})
		}
	})
}

func BenchmarkSplitter(b *testing.B) {
	stream := tokenStream(b)
	for _, read := range []int{64, 4096} {
		b.Run("read="+strconv.Itoa(read), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(stream)))
			var sp Splitter
			n := 0
			emit := func([]byte) { n++ }
			for b.Loop() {
				sp.Reset()
				for rest := stream; len(rest) > 0; {
					k := min(read, len(rest))
					sp.Feed(rest[:k], emit)
					rest = rest[k:]
				}
			}
		})
	}
}
