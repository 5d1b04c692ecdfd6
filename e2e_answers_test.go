package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestE2EStreamedMissKeepsUsage: a first request that streams without asking for usage still stores an
// answer with usage (the proxy asks the upstream for it): its client gets no usage chunk, a later
// non-streamed hit has usage, a later stream that asks gets the usage chunk.
func TestE2EStreamedMissKeepsUsage(t *testing.T) {
	p := newTestProxy(t, nil)
	sr, raw := p.postStream("/v1/chat/completions", chatStreamBody("usage kept", false))
	if sr.aErr != nil || sr.a.UsageN != 0 {
		t.Fatalf("the miss that did not ask for usage: %v, %d usage chunks (want none): %s", sr.aErr, sr.a.UsageN, raw)
	}
	reqs := p.Fake.Requests()
	if len(reqs) != 1 || !strings.Contains(string(reqs[0].Body), `"stream_options":{"include_usage":true}`) {
		t.Fatalf("the upstream was not asked for usage: %s", reqs[len(reqs)-1].Body)
	}
	resp, body := p.Post("/v1/chat/completions", chatBody("usage kept"))
	expectCache(t, "non-streamed hit", resp, body, 200, "HIT")
	var whole struct {
		Usage *struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &whole); err != nil || whole.Usage == nil || whole.Usage.TotalTokens == 0 {
		t.Fatalf("the hit has no usage: %s", body)
	}
	sr, raw = p.postStream("/v1/chat/completions", chatStreamBody("usage kept", true))
	if sr.aErr != nil || sr.a.UsageN != 1 || sr.resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("a streamed hit that asks for usage: X-Cache %q, %v, %d usage chunks; want a HIT with one: %s",
			sr.resp.Header.Get("X-Cache"), sr.aErr, sr.a.UsageN, raw)
	}
	expectCalls(t, p, 1)
}

// TestE2ECoalescedStreamGetsUsageItAskedFor: streaming followers of a streaming leader each get the usage
// chunk exactly when they asked for it.
func TestE2ECoalescedStreamGetsUsageItAskedFor(t *testing.T) {
	p := newTestProxy(t, nil)
	hold := "X-Fake-Delay-Ms"
	bodies := []string{chatStreamBody("shared usage", false), chatStreamBody("shared usage", true), chatStreamBody("shared usage", false), chatStreamBody("shared usage", true)}
	type got struct {
		usage bool
		n     int
		err   error
	}
	out := make(chan got, len(bodies))
	for _, b := range bodies {
		go func() {
			sr, _ := p.postStream("/v1/chat/completions", b, hold, "300")
			if sr.aErr != nil {
				out <- got{err: sr.aErr}
				return
			}
			out <- got{usage: strings.Contains(b, "include_usage"), n: sr.a.UsageN}
		}()
	}
	for range bodies {
		g := <-out
		if g.err != nil {
			t.Fatal(g.err)
		}
		if want := map[bool]int{true: 1, false: 0}[g.usage]; g.n != want {
			t.Errorf("a client that asked for usage=%v got %d usage chunks, want %d", g.usage, g.n, want)
		}
	}
	if n := p.Fake.CallsTo("chat"); n != 1 {
		t.Errorf("%d upstream calls for four identical streams, want 1", n)
	}
}

// TestE2EAnswerTooLargeNotStored: an answer over max_answer_bytes reaches its client whole, is not stored
// (Cache-Status says why), and the next identical request goes upstream again; streamed too.
func TestE2EAnswerTooLargeNotStored(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.MaxAnswerBytes = 600 })
	resp, body := p.Post("/v1/chat/completions", chatBody("a long answer"))
	expectCache(t, "too large", resp, body, 200, "MISS")
	if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "detail=too-large") {
		t.Errorf("Cache-Status %q, want detail=too-large", cs)
	}
	if err := checkEcho(body, "a long answer"); err != nil || len(body) <= 600 {
		t.Fatalf("the client did not get the whole answer (%d bytes): %v", len(body), err)
	}
	resp, body = p.Post("/v1/chat/completions", chatBody("a long answer"))
	expectCache(t, "again", resp, body, 200, "MISS")
	expectCalls(t, p, 2)

	sr, raw := p.postStream("/v1/chat/completions", chatStreamBody("a long stream", true))
	if sr.aErr != nil || !strings.HasPrefix(sr.a.Content, "echo: a long stream") {
		t.Fatalf("the too-large stream did not reach its client whole: %v: %.200s", sr.aErr, raw)
	}
	sr, _ = p.postStream("/v1/chat/completions", chatStreamBody("a long stream", true))
	if x := sr.resp.Header.Get("X-Cache"); x != "MISS" {
		t.Errorf("the same stream again: X-Cache %q, want MISS (too large to be stored)", x)
	}
	expectCalls(t, p, 4)
	var st struct {
		TooLarge int64 `json:"answers_too_large"`
	}
	if resp, body := p.Get("/stats"); json.Unmarshal(body, &st) != nil || st.TooLarge != 4 {
		t.Errorf("/stats answers_too_large = %d (%d %s), want 4 (two answers, two streams)", st.TooLarge, resp.StatusCode, body)
	}
	if n := openCacheDB(t, p.DBPath).count(); n != 0 {
		t.Errorf("%d rows on disk, want none", n)
	}
}

// TestE2EHugeTTLAndMaxAge: a TTL too long to represent means "keep" (the entry is served, not expired at
// once), and a max-age as long means "any age"; neither is an error.
func TestE2EHugeTTLAndMaxAge(t *testing.T) {
	p := newTestProxy(t, nil)
	for _, ttl := range []string{"9300000000000000", "99999999999999999999999"} {
		body := chatBody("kept for ever " + ttl)
		resp, b := p.Post("/v1/chat/completions", body, "X-Cache-TTL", ttl)
		expectCache(t, "TTL "+ttl, resp, b, 200, "MISS")
		resp, b = p.Post("/v1/chat/completions", body)
		expectCache(t, "after TTL "+ttl, resp, b, 200, "HIT")
		resp, b = p.Post("/v1/chat/completions", body, "Cache-Control", "max-age="+ttl)
		expectCache(t, "max-age "+ttl, resp, b, 200, "HIT")
		resp, b = p.Post("/v1/chat/completions", strings.Replace(body, `{"model"`, `{"cache":{"ttl":`+ttl+`,"s-maxage":`+ttl+`},"model"`, 1))
		expectCache(t, "body controls "+ttl, resp, b, 200, "HIT")
	}
	p.Stop()
	d := openCacheDB(t, p.DBPath)
	st, _, err := d.c.Prepare(`SELECT count(*) FROM entries WHERE expires_at < 0`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Step(); st.ColumnInt(0) != 0 {
		t.Errorf("%d entries with a negative expires_at", st.ColumnInt(0))
	}
}
