package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// Batched legacy completions, cached prompt by prompt: the request shapes lm-evaluation-harness sends, with
// the spacing of Python's json.dumps (", " and ": "), replayed in other batch compositions.

const complPath = "/v1/completions"

// llOld is lm-evaluation-harness's loglikelihood request of its OpenAI-client days: token-id prompts,
// echo, max_tokens 0, logprobs, seed 1234.
func llOld(prompts ...string) string {
	return `{"model": "fake-model", "prompt": [` + strings.Join(prompts, ", ") +
		`], "echo": true, "max_tokens": 0, "temperature": 0.0, "logprobs": 1, "seed": 1234}`
}

// llNew is today's local-completions loglikelihood request: max_tokens 1, logprobs 1, echo last.
func llNew(prompts ...string) string {
	return `{"model": "fake-model", "prompt": [` + strings.Join(prompts, ", ") +
		`], "temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": true}`
}

// genUntil is its generation request: string prompts, max_tokens, stop, seed.
func genUntil(prompts ...string) string {
	return `{"prompt": [` + strings.Join(prompts, ", ") + `], "model": "fake-model", "max_tokens": 8, "temperature": 0, "stop": ["\n\n"], "seed": 1234}`
}

// choiceSet is a completions answer's choices by index, each without its index (compact, keys sorted), and
// its usage.
type choiceSet struct {
	choices []string
	usage   map[string]int
	raw     map[string]json.RawMessage
}

func decodeChoices(t *testing.T, what string, body []byte) choiceSet {
	t.Helper()
	var a struct {
		Object  string                       `json:"object"`
		Choices []map[string]json.RawMessage `json:"choices"`
		Usage   map[string]int               `json:"usage"`
	}
	if err := json.Unmarshal(body, &a); err != nil || a.Object != "text_completion" {
		t.Fatalf("%s: not a text_completion (%v): %s", what, err, body)
	}
	var raw map[string]json.RawMessage
	json.Unmarshal(body, &raw)
	cs := choiceSet{choices: make([]string, len(a.Choices)), usage: a.Usage, raw: raw}
	for i, c := range a.Choices {
		if string(c["index"]) != fmt.Sprint(i) {
			t.Fatalf("%s: choice %d has index %s: %s", what, i, c["index"], body)
		}
		delete(c, "index")
		b, _ := json.Marshal(c)
		cs.choices[i] = string(b)
	}
	return cs
}

// expectItems checks X-Cache-Items.
func expectItems(t *testing.T, what string, r interface{ Get(string) string }, want string) {
	t.Helper()
	if got := r.Get("X-Cache-Items"); got != want {
		t.Fatalf("%s: X-Cache-Items %q, want %q", what, got, want)
	}
}

// completionCalls is how many calls the fake upstream received on /v1/completions.
func completionCalls(p *testProxy) int64 { return p.Fake.CallsTo("completions") }

// TestE2EPromptsLoglikelihoodReplayedInAnotherBatch: lm-evaluation-harness's loglikelihood requests (token
// ids, echo, logprobs, seed 1234, max_tokens 0 or 1) asked once as a batch of four, then reversed, split
// 2 + 2 and one at a time: every prompt is a hit, with the same choice (logprobs and all) at its new index,
// and the upstream is paid once per shape.
func TestE2EPromptsLoglikelihoodReplayedInAnotherBatch(t *testing.T) {
	p := newTestProxy(t, nil)
	prompts := []string{"[101, 102, 103]", "[201, 202]", "[301, 302, 303, 304]", "[401]"}
	for _, shape := range []struct {
		name string
		body func(...string) string
	}{{"max_tokens 0", llOld}, {"max_tokens 1", llNew}} {
		before := completionCalls(p)
		resp, body := p.Post(complPath, shape.body(prompts...))
		expectCache(t, shape.name, resp, body, 200, "MISS")
		expectItems(t, shape.name, resp.Header, "hits=0 misses=4")
		first := decodeChoices(t, shape.name, body)
		if len(first.choices) != 4 || first.usage["prompt_tokens"] != 10 {
			t.Fatalf("%s: %d choices, usage %v: %s", shape.name, len(first.choices), first.usage, body)
		}
		for i, c := range first.choices {
			var ch struct {
				Logprobs struct {
					TokenLogprobs []*float64 `json:"token_logprobs"`
				} `json:"logprobs"`
			}
			json.Unmarshal([]byte(c), &ch)
			want := strings.Count(prompts[i], ",") + 1 // one per prompt token
			if shape.name == "max_tokens 1" {
				want++ // and the generated one, which lm-evaluation-harness drops with [ctxlen:-1]
			}
			if n := len(ch.Logprobs.TokenLogprobs); n != want || ch.Logprobs.TokenLogprobs[0] != nil {
				t.Fatalf("%s: prompt %d has %d token logprobs, want %d with the first null: %s", shape.name, i, n, want, c)
			}
		}
		if got := string(lastRequest(t, p).Body); got != shape.body(strings.Join(prompts, ",")) {
			t.Fatalf("%s: the upstream got\n %s\nwant every byte but the prompt list's separators as sent", shape.name, got)
		}
		p.Fake.ResetCounters()

		replays := []struct {
			name  string
			order []int
		}{{"reversed", []int{3, 2, 1, 0}}, {"first half", []int{0, 1}}, {"second half", []int{2, 3}}}
		for i := range prompts {
			replays = append(replays, struct {
				name  string
				order []int
			}{fmt.Sprint("alone ", i), []int{i}})
		}
		for _, rp := range replays {
			batch := make([]string, len(rp.order))
			for j, i := range rp.order {
				batch[j] = prompts[i]
			}
			what := shape.name + ", " + rp.name
			resp, body := p.Post(complPath, shape.body(batch...))
			expectCache(t, what, resp, body, 200, "HIT")
			expectItems(t, what, resp.Header, fmt.Sprintf("hits=%d misses=0", len(batch)))
			got := decodeChoices(t, what, body)
			for j, i := range rp.order {
				if got.choices[j] != first.choices[i] {
					t.Fatalf("%s: choice %d (prompt %d) differs from the one first answered:\n %s\n %s", what, j, i, got.choices[j], first.choices[i])
				}
			}
			if got.usage["total_tokens"] != 0 || got.usage["prompt_tokens"] != 0 {
				t.Fatalf("%s: usage %v, want zero: the upstream counted nothing", what, got.usage)
			}
			if bytes.ContainsRune(body, '\n') {
				t.Fatalf("%s: a reassembled answer is compact: %s", what, body)
			}
		}
		if n := completionCalls(p); n != 0 {
			t.Fatalf("%s: %d upstream calls for prompts all cached, want 0 (%d before)", shape.name, n, before)
		}
	}
}

// TestE2EPromptsPartial: a batch whose prompts are partly cached sends one upstream request with only the
// missing ones (each once); the answer has every prompt's choices in order, usage as the upstream counted
// it, X-Cache: PARTIAL.
func TestE2EPromptsPartial(t *testing.T) {
	p := newTestProxy(t, nil)
	resp, body := p.Post(complPath, genUntil(`"alpha"`, `"beta"`))
	expectCache(t, "first", resp, body, 200, "MISS")
	first := decodeChoices(t, "first", body)
	p.Fake.ResetCounters()

	resp, body = p.Post(complPath, genUntil(`"gamma"`, `"alpha"`, `"delta delta"`, `"beta"`, `"gamma"`))
	expectCache(t, "partial", resp, body, 200, "PARTIAL")
	expectItems(t, "partial", resp.Header, "hits=2 misses=3")
	if got := string(lastRequest(t, p).Body); got != genUntil(`"gamma","delta delta"`) {
		t.Fatalf("the upstream got %s, want only the missing prompts, each once", got)
	}
	got := decodeChoices(t, "partial", body)
	for i, prompt := range []string{"gamma", "alpha", "delta delta", "beta", "gamma"} {
		var ch struct {
			Text         string `json:"text"`
			FinishReason string `json:"finish_reason"`
		}
		json.Unmarshal([]byte(got.choices[i]), &ch)
		if !strings.HasPrefix(ch.Text, "echo: "+prompt) || ch.FinishReason != "length" || len(strings.Fields(ch.Text)) != 8 {
			t.Fatalf("choice %d: %s, want the 8-token answer to %q", i, got.choices[i], prompt)
		}
	}
	if got.choices[1] != first.choices[0] || got.choices[3] != first.choices[1] || got.choices[4] != got.choices[0] {
		t.Fatal("cached choices differ from the ones first answered")
	}
	// The upstream counted gamma (1 word) and delta delta (2): only that.
	if got.usage["prompt_tokens"] != 3 || got.usage["completion_tokens"] != 16 || got.usage["total_tokens"] != 19 {
		t.Fatalf("usage %v, want what the upstream counted for the two prompts it was asked", got.usage)
	}
	if bytes.ContainsRune(body, '\n') {
		t.Fatalf("a reassembled answer is compact: %s", body)
	}
	var id string
	json.Unmarshal(got.raw["id"], &id)
	if !strings.HasPrefix(id, "cmpl-fake-") || string(got.raw["model"]) != `"fake-model"` {
		t.Fatalf("id %s, model %s: the top-level fields come from the upstream's answer", got.raw["id"], got.raw["model"])
	}
	var by struct {
		Requests struct {
			ByRoute map[string]map[string]int64 `json:"by_route"`
		} `json:"requests"`
	}
	_, sb := p.Get("/stats")
	if err := json.Unmarshal(sb, &by); err != nil || by.Requests.ByRoute["completions"]["partial"] != 1 || by.Requests.ByRoute["completions"]["miss"] != 1 {
		t.Fatalf("/stats by_route.completions: %v (%v)", by.Requests.ByRoute["completions"], err)
	}

	// All five prompts are cached now, in any composition.
	resp, body = p.Post(complPath, genUntil(`"beta"`, `"delta delta"`, `"alpha"`, `"gamma"`))
	expectCache(t, "all cached", resp, body, 200, "HIT")
	if n := completionCalls(p); n != 1 {
		t.Fatalf("%d upstream calls, want 1", n)
	}
	// Another max_tokens is another key space.
	resp, body = p.Post(complPath, strings.Replace(genUntil(`"alpha"`), `"max_tokens": 8`, `"max_tokens": 9`, 1))
	expectCache(t, "other max_tokens", resp, body, 200, "MISS")
}

// TestE2EPromptsNChoices: with n > 1 each prompt's n choices are stored together and come back at
// index = position x n + choice, whatever the batch.
func TestE2EPromptsNChoices(t *testing.T) {
	p := newTestProxy(t, nil)
	req := func(prompts ...string) string {
		return `{"model":"fake-model","prompt":[` + strings.Join(prompts, ",") + `],"n":2,"max_tokens":3,"seed":7}`
	}
	resp, body := p.Post(complPath, req(`"x"`, `"y"`, `"z"`))
	expectCache(t, "first", resp, body, 200, "MISS")
	first := decodeChoices(t, "first", body) // indexes 0..5 checked there
	if len(first.choices) != 6 {
		t.Fatalf("%d choices, want 6", len(first.choices))
	}
	p.Fake.ResetCounters()
	resp, body = p.Post(complPath, req(`"w"`, `"z"`, `"x"`))
	expectCache(t, "partial", resp, body, 200, "PARTIAL")
	got := decodeChoices(t, "partial", body)
	if len(got.choices) != 6 || got.choices[2] != first.choices[4] || got.choices[3] != first.choices[5] ||
		got.choices[4] != first.choices[0] || got.choices[5] != first.choices[1] || !strings.Contains(got.choices[0], "echo: w") {
		t.Fatalf("choices by index: %q", got.choices)
	}
	if req := lastRequest(t, p); !bytes.Contains(req.Body, []byte(`"prompt":["w"],"n":2`)) {
		t.Fatalf("the upstream got %s", req.Body)
	}
	// n is part of the key: n = 1 is another answer.
	resp, body = p.Post(complPath, strings.Replace(req(`"x"`), `"n":2`, `"n":1`, 1))
	expectCache(t, "n 1", resp, body, 200, "MISS")
}

// TestE2EPromptsWholeEntriesKept: a string prompt, one token-id list and a streamed prompt array keep their
// whole, byte-for-byte entries; a streamed array does not fill the per-prompt entries.
func TestE2EPromptsWholeEntriesKept(t *testing.T) {
	p := newTestProxy(t, nil)
	for _, body := range []string{
		`{"model":"fake-model","prompt":"a string prompt","max_tokens":4}`,
		`{"model":"fake-model","prompt":[5, 6, 7],"max_tokens":4}`,
	} {
		r1, b1 := p.Post(complPath, body)
		expectCache(t, body, r1, b1, 200, "MISS")
		r2, b2 := p.Post(complPath, body)
		expectCache(t, body, r2, b2, 200, "HIT")
		if !bytes.Equal(b1, b2) || r1.Header.Get("X-Cache-Items") != "" || r2.Header.Get("X-Cache-Items") != "" {
			t.Fatalf("%s: a whole entry replays the upstream's bytes, without X-Cache-Items:\n%s\n%s", body, b1, b2)
		}
	}
	// The one-prompt array of the token list above is cached prompt by prompt: an entry of its own kind.
	resp, body := p.Post(complPath, `{"model":"fake-model","prompt":[[5, 6, 7]],"max_tokens":4}`)
	expectCache(t, "one-prompt array", resp, body, 200, "MISS")
	expectItems(t, "one-prompt array", resp.Header, "hits=0 misses=1")

	streamed := `{"model":"fake-model","prompt":["s1"],"max_tokens":4,"stream":true}`
	sr, raw := p.postStream(complPath, streamed)
	expectStream(t, "streamed array", sr, raw, "MISS")
	sr, raw = p.postStream(complPath, streamed)
	expectStream(t, "streamed array again", sr, raw, "HIT")
	resp, body = p.Post(complPath, strings.Replace(streamed, `,"stream":true`, "", 1))
	expectCache(t, "the same array not streamed", resp, body, 200, "MISS")
	expectItems(t, "the same array not streamed", resp.Header, "hits=0 misses=1")
	if n := completionCalls(p); n != 5 {
		t.Fatalf("%d upstream calls, want 5", n)
	}
}

// TestE2EPromptsReadOnly: read_only answers a batch whose prompts are all cached, and refuses one that is
// not, without an upstream call.
func TestE2EPromptsReadOnly(t *testing.T) {
	p := newTestProxy(t, nil)
	resp, body := p.Post(complPath, genUntil(`"r1"`, `"r2"`))
	expectCache(t, "first", resp, body, 200, "MISS")
	resp, body = p.Post(complPath, genUntil(`"r2"`, `"r1"`), "X-Cache-Mode", "read_only")
	expectCache(t, "read_only, all cached", resp, body, 200, "HIT")
	resp, body = p.Post(complPath, genUntil(`"r2"`, `"r3"`), "X-Cache-Mode", "read_only")
	if e := expectError(t, "read_only, one missing", resp, body, 404); str(e.Error.Code) != "cache_miss" {
		t.Fatalf("code %s, want cache_miss", e.Error.Code)
	}
	if n := completionCalls(p); n != 1 {
		t.Fatalf("%d upstream calls, want 1", n)
	}
}

// TestE2EPromptsUpstreamFailures: an upstream error reaches the client and stores nothing; an answer whose
// choices do not match the prompts asked is a 502 upstream_invalid_response; an empty answer is passed on
// and not stored.
func TestE2EPromptsUpstreamFailures(t *testing.T) {
	p := newTestProxy(t, noRetries)
	p.Fake.FailNext(1, 500, `{"error":{"message":"boom","type":"server_error","param":null,"code":null}}`, nil)
	resp, body := p.Post(complPath, genUntil(`"f1"`, `"f2"`))
	if resp.StatusCode != 500 || !bytes.Contains(body, []byte("boom")) {
		t.Fatalf("status %d, want the upstream's 500: %s", resp.StatusCode, body)
	}
	p.Fake.FailNext(1, 200, `{"id":"x","object":"text_completion","created":1,"model":"m","choices":[{"text":"only one","index":0,"logprobs":null,"finish_reason":"stop"}]}`, nil)
	resp, body = p.Post(complPath, genUntil(`"f1"`, `"f2"`))
	if e := expectError(t, "one choice for two prompts", resp, body, 502); str(e.Error.Code) != "upstream_invalid_response" {
		t.Fatalf("code %s, want upstream_invalid_response", e.Error.Code)
	}
	p.Fake.FailNext(1, 200, `{"id":"x","object":"text_completion","created":1,"model":"m","choices":[{"text":"a","index":0},{"text":"b","index":0}]}`, nil)
	resp, body = p.Post(complPath, genUntil(`"f1"`, `"f2"`))
	expectError(t, "a repeated index", resp, body, 502)
	p.waitWritten()
	resp, body = p.Post(complPath, genUntil(`"f1"`, `"f2"`))
	expectCache(t, "after the failures", resp, body, 200, "MISS")
	expectItems(t, "after the failures", resp.Header, "hits=0 misses=2")

	// max_tokens 0 without echo or logprobs: no text, no logprobs, an empty answer.
	empty := `{"model":"fake-model","prompt":["e1"],"max_tokens":0}`
	resp, body = p.Post(complPath, empty)
	expectCache(t, "empty", resp, body, 200, "MISS")
	if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "detail=empty") {
		t.Fatalf("Cache-Status %q: an empty answer is not stored", cs)
	}
	p.waitWritten()
	resp, body = p.Post(complPath, empty)
	expectCache(t, "empty again", resp, body, 200, "MISS")
	if n := completionCalls(p); n != 6 {
		t.Fatalf("%d upstream calls, want 6", n)
	}
}

// TestE2EPromptsModeOff: with the cache off a prompt array goes upstream as sent and comes back as the
// upstream wrote it.
func TestE2EPromptsModeOff(t *testing.T) {
	p := newTestProxy(t, nil)
	req := genUntil(`"o1"`, `"o1"`)
	resp, body := p.Post(complPath, req, "X-Cache-Mode", "off")
	expectCache(t, "mode off", resp, body, 200, "BYPASS")
	if got := string(lastRequest(t, p).Body); got != req {
		t.Fatalf("the upstream got %s, want the request as sent", got)
	}
	if resp.Header.Get("X-Cache-Items") != "" || len(decodeChoices(t, "mode off", body).choices) != 2 {
		t.Fatalf("mode off: %s", body)
	}
}
