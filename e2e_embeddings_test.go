package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"llmcache/bench/fakeupstream"
)

const embPath = "/v1/embeddings"

// embeddings decodes an embeddings answer into vectors by index, whatever its encoding.
func embeddings(t *testing.T, body []byte) [][]float32 {
	t.Helper()
	var a struct {
		Object string `json:"object"`
		Data   []struct {
			Object    string          `json:"object"`
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &a); err != nil || a.Object != "list" {
		t.Fatalf("not an embeddings list: %v: %s", err, body)
	}
	out := make([][]float32, len(a.Data))
	for i, d := range a.Data {
		if d.Index != i || d.Object != "embedding" {
			t.Fatalf("data[%d] has index %d, object %q", i, d.Index, d.Object)
		}
		var s string
		if json.Unmarshal(d.Embedding, &s) == nil {
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				t.Fatal(err)
			}
			for j := 0; j+4 <= len(raw); j += 4 {
				out[i] = append(out[i], math.Float32frombits(binary.LittleEndian.Uint32(raw[j:])))
			}
			continue
		}
		if err := json.Unmarshal(d.Embedding, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func expectVectors(t *testing.T, what string, got [][]float32, inputs ...string) {
	t.Helper()
	if len(got) != len(inputs) {
		t.Fatalf("%s: %d vectors, want %d", what, len(got), len(inputs))
	}
	for i, in := range inputs {
		want := fakeupstream.Vector(in, fakeupstream.DefaultDimensions)
		if len(got[i]) != len(want) {
			t.Fatalf("%s: vector %d has %d dimensions, want %d", what, i, len(got[i]), len(want))
		}
		for j := range want {
			if got[i][j] != want[j] {
				t.Fatalf("%s: vector %d (%q) differs from the upstream's at %d: %v vs %v", what, i, in, j, got[i][j], want[j])
			}
		}
	}
}

func TestE2EEmbeddingsPerItem(t *testing.T) {
	p := newTestProxy(t, nil)
	resp, body := p.Post(embPath, `{"model":"emb","input":["a","b"]}`)
	expectCache(t, "first", resp, body, 200, "MISS")
	expectVectors(t, "first", embeddings(t, body), "a", "b")
	d := openCacheDB(t, p.DBPath)
	waitFor(t, "a row per input on disk", func() bool { return d.count() == 2 })

	resp, body = p.Post(embPath, `{"model":"emb","input":["b","c","a"]}`)
	expectCache(t, "second", resp, body, 200, "PARTIAL")
	if got := resp.Header.Get("X-Cache-Items"); got != "hits=2 misses=1" {
		t.Errorf("X-Cache-Items %q, want hits=2 misses=1", got)
	}
	expectVectors(t, "second", embeddings(t, body), "b", "c", "a")
	calls := p.Fake.EmbeddingInputs()
	if len(calls) != 2 || strings.Join(calls[1], ",") != "c" {
		t.Fatalf("upstream embedding calls %v, want the second to carry only [c]", calls)
	}
	waitFor(t, "the new input's row on disk", func() bool { return d.count() == 3 })

	// All cached, in either encoding: no upstream call, the same vectors.
	for _, format := range []string{"float", "base64"} {
		resp, body = p.Post(embPath, `{"model":"emb","input":["c","a","b"],"encoding_format":"`+format+`"}`)
		expectCache(t, format, resp, body, 200, "HIT")
		expectVectors(t, format, embeddings(t, body), "c", "a", "b")
		if src := resp.Header.Get("X-Cache-Source"); src != "memory" {
			t.Errorf("%s: X-Cache-Source %q, want memory (every item was kept in memory)", format, src)
		}
	}
	if n := len(p.Fake.EmbeddingInputs()); n != 2 {
		t.Errorf("%d upstream embedding calls, want 2 (the cached requests make none)", n)
	}
	// Another model is another key space.
	resp, body = p.Post(embPath, `{"model":"other","input":"a"}`)
	expectCache(t, "other model", resp, body, 200, "MISS")
}

func TestE2EEmbeddingsDuplicateInputSentOnce(t *testing.T) {
	p := newTestProxy(t, nil)
	resp, body := p.Post(embPath, `{"model":"emb","input":["x","y","x"]}`)
	expectCache(t, "duplicates", resp, body, 200, "MISS")
	expectVectors(t, "duplicates", embeddings(t, body), "x", "y", "x")
	calls := p.Fake.EmbeddingInputs()
	if len(calls) != 1 || strings.Join(calls[0], ",") != "x,y" {
		t.Fatalf("upstream inputs %v, want [x y] once", calls)
	}
}

func TestE2EEmbeddingsTokenIDs(t *testing.T) {
	p := newTestProxy(t, nil)
	resp, body := p.Post(embPath, `{"model":"emb","input":[[1,2],[3]]}`)
	expectCache(t, "token lists", resp, body, 200, "MISS")
	expectVectors(t, "token lists", embeddings(t, body), "[1,2]", "[3]")
	// A flat list of ids is one input: the same input as the first list above, so it is cached.
	resp, body = p.Post(embPath, `{"model":"emb","input":[1,2]}`)
	expectCache(t, "one token list", resp, body, 200, "HIT")
	expectVectors(t, "one token list", embeddings(t, body), "[1,2]")
	if n := p.Fake.CallsTo("embeddings"); n != 1 {
		t.Errorf("%d upstream embeddings calls, want 1", n)
	}
}

func TestE2EEmbeddingsUpstreamFailureStoresNothing(t *testing.T) {
	p := newTestProxy(t, noRetries)
	p.Fake.FailNext(1, 500, `{"error":{"message":"boom","type":"server_error","param":null,"code":null}}`, nil)
	resp, body := p.Post(embPath, `{"model":"emb","input":["f1","f2"]}`)
	if resp.StatusCode != 500 {
		t.Fatalf("status %d, want the upstream's 500: %s", resp.StatusCode, body)
	}
	resp, body = p.Post(embPath, `{"model":"emb","input":["f1","f2"]}`)
	expectCache(t, "after failure", resp, body, 200, "MISS")
	if n := p.Fake.CallsTo("embeddings"); n != 2 {
		t.Errorf("upstream embeddings calls %d, want 2 (nothing was stored from the failure)", n)
	}
	p.Stop()
	if n := openCacheDB(t, p.DBPath).count(); n != 2 {
		t.Errorf("%d rows on disk, want 2 (the inputs of the answer that came, none of the failure)", n)
	}
}

func TestE2EEmbeddingsBadInput(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.MaxEmbeddingInputs = 3 })
	for _, tc := range []struct{ name, body, param string }{
		{"empty list", `{"model":"emb","input":[]}`, "input"},
		{"too many", `{"model":"emb","input":["a","b","c","d"]}`, "input"},
		{"number", `{"model":"emb","input":5}`, "input"},
		{"object", `{"model":"emb","input":{"a":1}}`, "input"},
		{"mixed", `{"model":"emb","input":["a",[1]]}`, "input"},
		{"float token", `{"model":"emb","input":[1.5]}`, "input"},
		{"missing", `{"model":"emb"}`, "input"},
		{"bad format", `{"model":"emb","input":"a","encoding_format":"hex"}`, "encoding_format"},
		{"stream", `{"model":"emb","input":"a","stream":true}`, "stream"},
	} {
		resp, body := p.Post(embPath, tc.body)
		e := expectError(t, tc.name, resp, body, 400)
		if got := str(e.Error.Param); got != tc.param {
			t.Errorf("%s: param %q, want %q", tc.name, got, tc.param)
		}
	}
	if n := p.Fake.CallsTo("embeddings"); n != 0 {
		t.Errorf("%d upstream calls for bad input, want 0", n)
	}
	resp, body := p.Post("/embeddings", `{"model":"emb","input":"fine"}`)
	expectCache(t, "after bad input", resp, body, 200, "MISS")
}
