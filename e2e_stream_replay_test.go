package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestE2EStreamMissAndHitAgree: a streamed hit (from memory, then from SQLite after a restart) replays the
// same answer as the streamed miss that stored it: text, reasoning, refusal, tool calls, finish reason, id,
// usage when asked for, and [DONE] at the end.
func TestE2EStreamMissAndHitAgree(t *testing.T) {
	cases := []struct {
		name, content string
		usage         bool
		check         func(t *testing.T, a *assembled)
	}{
		{"text with usage", "replay me", true, func(t *testing.T, a *assembled) {
			if !strings.HasPrefix(a.Content, "echo: replay me ") || len(a.Content) < 500 {
				t.Errorf("content %.60q... (%d bytes) is not the fake's answer", a.Content, len(a.Content))
			}
		}},
		{"text without usage", "replay me plainly", false, nil},
		{"tool call", "TOOL: weather in Paris", true, func(t *testing.T, a *assembled) {
			if len(a.ToolCalls) != 1 {
				t.Fatalf("%d tool calls, want 1", len(a.ToolCalls))
			}
			tc := a.ToolCalls[0]
			if !strings.HasPrefix(tc.ID, "call_") || tc.Type != "function" || tc.Name != "get_weather" || tc.Arguments != `{"city":"Paris"}` {
				t.Errorf("tool call %+v, want call_N / function / get_weather / {\"city\":\"Paris\"}", tc)
			}
			if a.Finish != "tool_calls" || a.Content != "" {
				t.Errorf("finish %q content %q, want tool_calls and no content", a.Finish, a.Content)
			}
		}},
		{"reasoning", "THINK: about it", false, func(t *testing.T, a *assembled) {
			if a.Reasoning != "thinking..." || !strings.HasPrefix(a.Content, "echo: THINK: about it") {
				t.Errorf("reasoning %q, content %.40q...", a.Reasoning, a.Content)
			}
		}},
		{"refusal", "REFUSE politely", true, func(t *testing.T, a *assembled) {
			if a.Refusal != "I can't help with that" || a.Content != "" {
				t.Errorf("refusal %q content %q", a.Refusal, a.Content)
			}
		}},
	}
	p := newTestProxy(t, nil)
	misses := make([]*assembled, len(cases))
	for i, c := range cases {
		body := chatStreamBody(c.content, c.usage)
		sr, raw := p.postStream("/v1/chat/completions", body)
		m := expectStream(t, c.name+": miss", sr, raw, "MISS")
		expectCalls(t, p, int64(i+1))
		sr, raw = p.postStream("/v1/chat/completions", body)
		h := expectStream(t, c.name+": memory hit", sr, raw, "HIT")
		if src := sr.resp.Header.Get("X-Cache-Source"); src != "memory" {
			t.Errorf("%s: hit source %q, want memory", c.name, src)
		}
		expectCalls(t, p, int64(i+1))
		compareStreams(t, c.name+": memory hit", m, h, c.usage)
		if c.check != nil {
			c.check(t, m)
		}
		misses[i] = m
	}

	// The same from SQLite.
	p.Restart()
	for i, c := range cases {
		sr, raw := p.postStream("/v1/chat/completions", chatStreamBody(c.content, c.usage))
		h := expectStream(t, c.name+": db hit", sr, raw, "HIT")
		if src := sr.resp.Header.Get("X-Cache-Source"); src != "db" {
			t.Errorf("%s: hit source %q, want db", c.name, src)
		}
		compareStreams(t, c.name+": db hit", misses[i], h, c.usage)
	}
	expectCalls(t, p, int64(len(cases)))
}

// compareStreams checks that a replayed stream carries what the original did.
func compareStreams(t *testing.T, what string, orig, replay *assembled, usage bool) {
	t.Helper()
	if len(orig.IDs) != 1 || len(replay.IDs) != 1 || orig.IDs[0] != replay.IDs[0] {
		t.Errorf("%s: chunk ids %q, the original stream had %q", what, replay.IDs, orig.IDs)
	}
	for _, a := range []*assembled{orig, replay} {
		if len(a.Objects) != 1 || a.Objects[0] != "chat.completion.chunk" && a.Objects[0] != "text_completion" {
			t.Errorf("%s: chunk objects %q", what, a.Objects)
		}
	}
	if orig.Objects[0] != replay.Objects[0] {
		t.Errorf("%s: chunk object %q, the original had %q", what, replay.Objects[0], orig.Objects[0])
	}
	for _, f := range []struct{ name, got, want string }{
		{"model", replay.Model, orig.Model},
		{"role", replay.Role, orig.Role},
		{"content", replay.Content, orig.Content},
		{"reasoning_content", replay.Reasoning, orig.Reasoning},
		{"refusal", replay.Refusal, orig.Refusal},
		{"text", replay.Text, orig.Text},
		{"finish_reason", replay.Finish, orig.Finish},
	} {
		if f.got != f.want {
			t.Errorf("%s: %s %q, the original stream had %q", what, f.name, f.got, f.want)
		}
	}
	if len(replay.ToolCalls) != len(orig.ToolCalls) {
		t.Errorf("%s: %d tool calls, the original had %d", what, len(replay.ToolCalls), len(orig.ToolCalls))
	} else {
		for i := range orig.ToolCalls {
			if replay.ToolCalls[i] != orig.ToolCalls[i] {
				t.Errorf("%s: tool call %d is %+v, the original was %+v", what, i, replay.ToolCalls[i], orig.ToolCalls[i])
			}
		}
	}
	want := 0
	if usage {
		want = 1
	}
	if orig.UsageN != want || replay.UsageN != want {
		t.Errorf("%s: usage chunks: original %d, replay %d, want %d", what, orig.UsageN, replay.UsageN, want)
		return
	}
	if usage {
		p1, c1, t1, err1 := usageTotals(orig.Usage)
		p2, c2, t2, err2 := usageTotals(replay.Usage)
		if err1 != nil || err2 != nil || p1 != p2 || c1 != c2 || t1 != t2 || t1 == 0 {
			t.Errorf("%s: usage %s, the original had %s (%v %v)", what, replay.Usage, orig.Usage, err1, err2)
		}
	}
}

// TestE2EStreamAndWholeShareEntry: a streamed and a non-streamed request share one entry, in both orders and
// on both cached routes: one upstream call, and the second answer carries the first's content.
func TestE2EStreamAndWholeShareEntry(t *testing.T) {
	type route struct {
		name, path, calls, object string
		body                      func(content string, stream, usage bool) string
	}
	chat := route{"chat", "/v1/chat/completions", "chat", "chat.completion", func(c string, stream, usage bool) string {
		if stream {
			return chatStreamBody(c, usage)
		}
		return chatBody(c)
	}}
	completion := route{"completions", "/v1/completions", "completions", "text_completion", completionBody}
	cases := []struct {
		rt      route
		content string
	}{
		{chat, "shared entry"},
		{chat, "TOOL: shared tool call"},
		{completion, "Once upon a time"},
	}
	for _, c := range cases {
		t.Run(c.rt.name+"/"+c.content, func(t *testing.T) {
			p := newTestProxy(t, nil)
			calls := func(want int64) {
				t.Helper()
				if got := p.Fake.CallsTo(c.rt.calls); got != want {
					t.Fatalf("upstream %s calls = %d, want %d", c.rt.calls, got, want)
				}
			}

			// Stream first, then the whole answer.
			content := c.content + " (stream first)"
			sr, raw := p.postStream(c.rt.path, c.rt.body(content, true, true))
			s := expectStream(t, "streamed miss", sr, raw, "MISS")
			key := cacheKey(t, sr.resp)
			r, b := p.Post(c.rt.path, c.rt.body(content, false, false))
			expectCache(t, "non-streamed after a stream", r, b, 200, "HIT")
			calls(1)
			if cacheKey(t, r) != key {
				t.Fatal("the streamed and the non-streamed request have different keys")
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("the non-streamed hit has Content-Type %q", ct)
			}
			w, err := decodeWhole(b, c.rt.object)
			if err != nil {
				t.Fatalf("the non-streamed hit of a streamed entry: %v", err)
			}
			if diff := sameAnswer(s, w); diff != "" {
				t.Fatalf("the assembled answer differs from the stream it came from: %s", diff)
			}
			if !json.Valid(b) || bytes.Contains(b, []byte("chunk")) {
				t.Errorf("the assembled answer still looks like a chunk: %s", b)
			}
			sp, sc, st, err1 := usageTotals(s.Usage)
			wp, wc, wt, err2 := usageTotals(w.Usage)
			if err1 != nil || err2 != nil || sp != wp || sc != wc || st != wt {
				t.Errorf("usage of the assembled answer %s, the stream said %s (%v %v)", w.Usage, s.Usage, err1, err2)
			}

			// The whole answer first, then a stream.
			content = c.content + " (whole first)"
			r, b = p.Post(c.rt.path, c.rt.body(content, false, false))
			expectCache(t, "non-streamed miss", r, b, 200, "MISS")
			w, err = decodeWhole(b, c.rt.object)
			if err != nil {
				t.Fatal(err)
			}
			for _, usage := range []bool{false, true} {
				sr, raw = p.postStream(c.rt.path, c.rt.body(content, true, usage))
				s = expectStream(t, "stream after a non-streamed miss", sr, raw, "HIT")
				if cacheKey(t, sr.resp) != cacheKey(t, r) {
					t.Fatal("the streamed and the non-streamed request have different keys")
				}
				if diff := sameAnswer(s, w); diff != "" {
					t.Fatalf("the replayed stream differs from the stored answer: %s", diff)
				}
				if usage {
					sp, sc, st, err1 = usageTotals(s.Usage)
					wp, wc, wt, err2 = usageTotals(w.Usage)
					if s.UsageN != 1 || err1 != nil || err2 != nil || sp != wp || sc != wc || st != wt {
						t.Errorf("replayed usage %s (%d chunks), stored %s", s.Usage, s.UsageN, w.Usage)
					}
				} else if s.UsageN != 0 {
					t.Errorf("a usage chunk was replayed without stream_options.include_usage")
				}
			}
			calls(2)
		})
	}
}

// TestE2EStreamRepeatRightAfterDone: a client that sends the same request the moment it reads [DONE] (as the
// SDKs do: they stop at [DONE] without waiting for the end of the body) gets a hit: the proxy stores the
// answer before it lets [DONE] through. Each round races the proxy's end of the upstream body, so the rounds
// are repeated.
func TestE2EStreamRepeatRightAfterDone(t *testing.T) {
	p := newTestProxy(t, nil)
	const rounds = 20
	for i := range rounds {
		content := fmt.Sprintf("repeat at once %d", i)
		resp, start, err := openStream(context.Background(), testClient, p.URL+chatPath, chatStreamBody(content, false))
		if err != nil {
			t.Fatal(err)
		}
		rd := newSSEReader(resp.Body, start)
		for {
			ev, err := rd.next()
			if err != nil {
				t.Fatalf("round %d: the stream ended before [DONE]: %v", i, err)
			}
			if ev.Data == "[DONE]" {
				break
			}
		}
		for _, stream := range []bool{false, true} {
			if stream {
				sr, raw := p.postStream(chatPath, chatStreamBody(content, false))
				expectStream(t, fmt.Sprintf("round %d: streamed repeat", i), sr, raw, "HIT")
			} else {
				r, b := p.Post(chatPath, chatBody(content))
				expectCache(t, fmt.Sprintf("round %d: repeat sent at [DONE]", i), r, b, 200, "HIT")
			}
		}
		resp.Body.Close()
		expectCalls(t, p, int64(i+1))
	}
}
