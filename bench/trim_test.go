package bench

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"llmcache/bench/fakeupstream"
	"llmcache/pipeline"
	"llmcache/pipeline/trim"
)

const (
	englishText = "A caching proxy answers repeated requests from memory, so the upstream model only sees the questions it has never answered before. "
	cjkText     = "缓存代理从内存中回答重复的请求，因此上游模型只会看到它从未回答过的问题。日本語の文章も少し混ぜておきます。"
)

// trimChat is a 200-message chat of about 50k o200k_base tokens: a system prompt, user and
// assistant turns alternating English and Chinese/Japanese text, and every tenth turn an assistant
// message with two tool calls followed by their two results.
func trimChat() []byte { return trimChatWith("") }

// trimChatWith is trimChat with nonce in every message, so that no message was counted before.
func trimChatWith(nonce string) []byte {
	var msgs []string
	add := func(m map[string]any) {
		b, _ := json.Marshal(m)
		msgs = append(msgs, string(b))
	}
	add(map[string]any{"role": "system", "content": "You are a careful assistant. Answer in the user's language."})
	for i := 0; len(msgs) < 200; i++ {
		text := nonce + strings.Repeat(englishText, 9)
		if i%2 == 1 {
			text = nonce + strings.Repeat(cjkText, 7)
		}
		n := strconv.Itoa(i)
		switch {
		case i%10 == 9 && len(msgs) <= 196:
			add(map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{
				map[string]any{"id": "call_" + n + "a", "type": "function", "function": map[string]any{"name": "search", "arguments": `{"query":"caching proxies ` + n + `"}`}},
				map[string]any{"id": "call_" + n + "b", "type": "function", "function": map[string]any{"name": "fetch", "arguments": `{"url":"https://example.com/` + n + `"}`}},
			}})
			add(map[string]any{"role": "tool", "tool_call_id": "call_" + n + "a", "content": text})
			add(map[string]any{"role": "tool", "tool_call_id": "call_" + n + "b", "content": text})
		case i%2 == 0:
			add(map[string]any{"role": "user", "content": "Turn " + n + ": " + text})
		default:
			add(map[string]any{"role": "assistant", "content": text})
		}
	}
	return []byte(`{"model":"gpt-4o","temperature":0.2,"messages":[` + strings.Join(msgs, ",") + `],"max_tokens":1000}`)
}

// BenchmarkTrim200Messages trims the chat to an 8k window (7k for the prompt after max_tokens),
// which counts only the turns it keeps; the baseline, window=128k, counts all of it and keeps it.
// history=new makes every message new to the tokenizer's memo (a first sight); history=seen trims the
// same chat again, as each turn of a replayed conversation repeats the history before it.
func BenchmarkTrim200Messages(b *testing.B) {
	tok, err := trim.NewTokenizer("o200k_base")
	if err != nil {
		b.Fatal(err)
	}
	seq := 0
	for _, tc := range []struct {
		name   string
		window int
	}{{"window=8k", 8192}, {"window=128k", 128_000}} {
		for _, seen := range []bool{false, true} {
			name := tc.name + "/history=new"
			if seen {
				name = tc.name + "/history=seen"
			}
			b.Run(name, func(b *testing.B) {
				body := trimChat()
				res, err := trim.Trim(body, trim.Options{MaxContextTokens: tc.window, Tokenizer: tok})
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if !seen {
						b.StopTimer()
						seq++
						body = trimChatWith("run " + strconv.Itoa(seq) + ". ")
						b.StartTimer()
					}
					if _, err := trim.Trim(body, trim.Options{MaxContextTokens: tc.window, Tokenizer: tok}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(res.PromptTokens), "kept-tokens")
				b.ReportMetric(float64(res.Dropped), "dropped-msgs")
			})
		}
	}
}

// BenchmarkTokenizerCount counts ~1 KB of text.
func BenchmarkTokenizerCount(b *testing.B) {
	tok, err := trim.NewTokenizer("o200k_base")
	if err != nil {
		b.Fatal(err)
	}
	code := "func (s *Server) handle(ctx *fasthttp.RequestCtx) {\n\tif !ctx.IsPost() {\n\t\tctx.Error(\"method\", 405)\n\t\treturn\n\t}\n}\n"
	for _, tc := range []struct{ name, text string }{
		{"text=english", strings.Repeat(englishText, 8)},
		{"text=cjk", strings.Repeat(cjkText, 7)},
		{"text=code", strings.Repeat(code, 9)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.text)))
			b.ReportAllocs()
			for b.Loop() {
				tok.Count(tc.text)
			}
			b.ReportMetric(float64(tok.Count(tc.text)), "tokens")
		})
	}
}

// TestTrimChatSize keeps trimChat what BenchmarkTrim200Messages says it is.
func TestTrimChatSize(t *testing.T) {
	body := trimChat()
	res, err := trim.Trim(body, trim.Options{MaxContextTokens: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	n := bytes.Count(body, []byte(`"role":`))
	if n != 200 || res.PromptTokens < 45_000 || res.PromptTokens > 55_000 {
		t.Fatalf("%d messages, %d tokens; want 200 and ~50k", n, res.PromptTokens)
	}
}

// BenchmarkHitTrim shows that hits never tokenize: memory hits of the 200-message chat with context
// trimming off and on (an 8k window, so its miss was trimmed), in one run; the figures should match.
func BenchmarkHitTrim(b *testing.B) {
	fake := startFake(b, fakeupstream.Options{})
	body := trimChat()
	for _, on := range []bool{false, true, false, true} {
		name := "trim=off"
		if on {
			name = "trim=on"
		}
		b.Run(name, func(b *testing.B) {
			p := startProxyWith(b, fake.URL(), func(c *pipeline.Config) {
				c.MemoryEnabled = true
				c.Trim = pipeline.TrimConfig{Enabled: on, MaxContextTokens: 8192}
			})
			warm(b, p, [][]byte{body})
			measure(b, p.addr, func() []byte { return body }, nil)
			if n := p.stats(b).ContextTrim.Runs; on && n != 1 {
				b.Fatalf("context trimming ran %d times, want once (the miss)", n)
			}
		})
	}
}
