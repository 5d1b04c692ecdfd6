package main

import (
	"encoding/json"
	"testing"
)

// TestE2ECompletionsLoglikelihood: the lm-evaluation-harness loglikelihood request (echo, logprobs,
// max_tokens 0) is stored (its answer has logprobs, so it is not "empty") and replayed byte for byte;
// prompt, echo and logprobs are all in the key.
func TestE2ECompletionsLoglikelihood(t *testing.T) {
	p := newTestProxy(t, nil)
	const ll = `{"model":"base","prompt":"The capital of France is Paris","echo":true,"logprobs":1,"max_tokens":0,"temperature":0}`
	r1, b1 := p.Post("/v1/completions", ll)
	expectCache(t, "first", r1, b1, 200, "MISS")
	if r1.Header.Get("Cache-Status") != "llmcache; fwd=miss; stored" {
		t.Fatalf("Cache-Status %q: a loglikelihood answer must be stored", r1.Header.Get("Cache-Status"))
	}
	var a struct {
		Object  string `json:"object"`
		Choices []struct {
			Text     string          `json:"text"`
			Logprobs json.RawMessage `json:"logprobs"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(b1, &a); err != nil || a.Object != "text_completion" || len(a.Choices) != 1 || string(a.Choices[0].Logprobs) == "null" {
		t.Fatalf("not a text_completion with logprobs: %v: %s", err, b1)
	}
	r2, b2 := p.Post("/v1/completions", ll)
	expectCache(t, "repeat", r2, b2, 200, "HIT")
	if string(b2) != string(b1) {
		t.Fatal("the hit's bytes differ from the miss's")
	}
	for _, variant := range []string{
		`{"model":"base","prompt":"The capital of France is Lyon","echo":true,"logprobs":1,"max_tokens":0,"temperature":0}`,
		`{"model":"base","prompt":"The capital of France is Paris","echo":false,"logprobs":1,"max_tokens":0,"temperature":0}`,
		`{"model":"base","prompt":"The capital of France is Paris","echo":true,"logprobs":5,"max_tokens":0,"temperature":0}`,
		`{"model":"base","prompt":["The capital of France is Paris"],"echo":true,"logprobs":1,"max_tokens":0,"temperature":0}`,
	} {
		r, b := p.Post("/v1/completions", variant)
		expectCache(t, variant, r, b, 200, "MISS")
	}
	expectCalls(t, p, 0) // chat calls: none
	if n := p.Fake.CallsTo("completions"); n != 5 {
		t.Errorf("upstream completions calls %d, want 5 (one per distinct request)", n)
	}
}
