package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestE2EStreamChunksArriveLive: a streamed miss reaches the client event by event while the upstream is
// still producing it, not buffered until the end.
func TestE2EStreamChunksArriveLive(t *testing.T) {
	p := newTestProxy(t, nil)
	// The upstream stops after its first event until the client has it: a proxy that buffered the stream
	// would never hand it over (the client's timeout would end the test).
	p.Fake.HoldStreams()
	resp, start, err := openStream(context.Background(), testClient, p.URL+"/v1/chat/completions",
		chatStreamBody("live chunks please", false))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	for h, want := range map[string]string{"X-Cache": "MISS", "X-Cache-Source": "upstream"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q, want text/event-stream", ct)
	}
	cacheKey(t, resp)

	rd := newSSEReader(resp.Body, start)
	first, err := rd.next()
	if err != nil {
		t.Fatalf("reading the first event: %v", err)
	}
	if n := p.Fake.Held(); n != 1 {
		t.Fatalf("the first event arrived when the upstream held %d streams, want 1", n)
	}
	p.Fake.ReleaseStreams()
	events := []sseEvent{first}
	for {
		ev, err := rd.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		events = append(events, ev)
	}
	a, err := assemble(events)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Done {
		t.Fatal("the stream did not end with data: [DONE]")
	}
	if !strings.HasPrefix(a.Content, "echo: live chunks please") {
		t.Fatalf("streamed content %.60q... is not the answer to the request", a.Content)
	}
	if len(events) < 8 {
		t.Fatalf("only %d events; the test needs a stream of several chunks", len(events))
	}
}

// TestE2EStreamCutNotStored: an upstream stream that breaks off before [DONE] reaches the client as an error
// event (never as a complete answer), and nothing is stored: the same request goes upstream again.
func TestE2EStreamCutNotStored(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatStreamBody("cut me off", true)
	const path = "/v1/chat/completions"

	cut := func(what string) string {
		t.Helper()
		sr, raw := p.postStream(path, body, "X-Fake-Cut-After", "3")
		if sr.resp.StatusCode != 200 || !strings.HasPrefix(sr.resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%s: status %d, Content-Type %q; the stream had started, so it should be SSE: %s", what,
				sr.resp.StatusCode, sr.resp.Header.Get("Content-Type"), raw)
		}
		if got := sr.resp.Header.Get("X-Cache"); got != "MISS" {
			t.Errorf("%s: X-Cache %q, want MISS", what, got)
		}
		if sr.readErr != nil {
			t.Fatalf("%s: the proxy's own stream broke off instead of ending with an error event: %v; body %s", what, sr.readErr, raw)
		}
		if sr.aErr != nil {
			t.Fatalf("%s: malformed stream: %v", what, sr.aErr)
		}
		if sr.a.Done || strings.Contains(string(raw), "[DONE]") {
			t.Fatalf("%s: a cut stream reached the client with [DONE]: %s", what, raw)
		}
		if sr.a.ErrorData == "" {
			t.Fatalf("%s: a cut stream ended without an error event: %s", what, raw)
		}
		if last := sr.events[len(sr.events)-1]; last.Event != "error" {
			t.Fatalf("%s: the error event is not the last one: %+v", what, last)
		}
		e, err := errorEvent(sr.a.ErrorData)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if str(e.Error.Code) != "upstream_stream_cut" {
			t.Errorf("%s: error code %s, want upstream_stream_cut", what, e.Error.Code)
		}
		// What the upstream sent before it broke off reached the client.
		if n := len(sr.events) - 1; n != 3 {
			t.Errorf("%s: %d data events before the error, the upstream sent 3", what, n)
		}
		if !strings.HasPrefix(sr.a.Content, "echo:") {
			t.Errorf("%s: the content that came before the cut %q is not the start of the answer", what, sr.a.Content)
		}
		return cacheKey(t, sr.resp)
	}
	key := cut("cut stream")
	if key2 := cut("cut stream again"); key2 != key {
		t.Fatalf("the same request got keys %s and %s", key, key2)
	}
	expectCalls(t, p, 2) // the first cut was not served from memory

	// A non-streamed request for the same key is not answered from the cut stream either.
	r, b := p.Post(path, chatBody("cut me off"), "X-Fake-Cut-After", "3")
	expectCache(t, "non-stream after the cuts", r, b, 200, "MISS")
	if cacheKey(t, r) != key {
		t.Fatal("stream and non-stream requests got different keys")
	}
	expectCalls(t, p, 3)
	if err := checkEcho(b, "cut me off"); err != nil {
		t.Fatal(err)
	}

	// On disk: only the whole answer; its body is the non-streamed one byte for byte.
	p.Stop()
	d := openCacheDB(t, p.DBPath)
	if n := d.count(); n != 1 {
		t.Fatalf("%d rows on disk, want 1 (the cut streams must not be stored)", n)
	}
	d.mustRow(key, b)
}

// TestE2EStreamCutFirstThenWhole: after a cut stream, nothing is on disk for its key, and after a restart
// the same streamed request goes upstream and is stored whole.
func TestE2EStreamCutFirstThenWhole(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatStreamBody("cut before a restart", false)
	sr, raw := p.postStream("/v1/chat/completions", body, "X-Fake-Cut-After", "5")
	if sr.a == nil || sr.a.Done || sr.a.ErrorData == "" {
		t.Fatalf("the cut stream did not end with an error event: %s", raw)
	}
	key := cacheKey(t, sr.resp)
	p.Stop() // drains the writer: whatever was to be stored is on disk now
	if _, ok := openCacheDB(t, p.DBPath).row(key); ok {
		t.Fatalf("a row was stored for the cut stream's key %s", key)
	}
	p.Restart()
	sr, raw = p.postStream("/v1/chat/completions", body)
	a := expectStream(t, "after the restart", sr, raw, "MISS")
	expectCalls(t, p, 2)
	sr, raw = p.postStream("/v1/chat/completions", body)
	h := expectStream(t, "repeat", sr, raw, "HIT")
	if h.Content != a.Content || len(h.Content) < 500 {
		t.Fatalf("hit content %d bytes differs from the streamed miss (%d bytes)", len(h.Content), len(a.Content))
	}
	expectCalls(t, p, 2)
}

// TestE2EStreamClientDisconnect: a client that goes away in the middle of a streamed miss does not lose the
// answer: the proxy reads the upstream to the end, stores it, and the next request is a hit with all of it.
func TestE2EStreamClientDisconnect(t *testing.T) {
	p := newTestProxy(t, nil)
	const content = "hang up early"
	body := chatStreamBody(content, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The upstream stops after its first event until the client has gone: the client leaves mid-stream.
	p.Fake.HoldStreams()
	resp, start, err := openStream(ctx, testClient, p.URL+"/v1/chat/completions", body)
	if err != nil {
		t.Fatal(err)
	}
	key := cacheKey(t, resp)
	if _, err := newSSEReader(resp.Body, start).next(); err != nil {
		t.Fatalf("reading the first event: %v", err)
	}
	cancel()
	resp.Body.Close()
	p.Fake.ReleaseStreams()

	d := openCacheDB(t, p.DBPath)
	var row dbRow
	waitFor(t, "the answer of the abandoned stream on disk", func() bool {
		r, ok := d.row(key)
		row = r
		return ok
	})
	// What is stored is the whole answer, not the part the client saw (checked against the fake below).
	w, err := decodeWhole(row.Body, "chat.completion")
	if err != nil {
		t.Fatalf("the stored answer: %v", err)
	}
	if row.ContentType != "" && !strings.HasPrefix(row.ContentType, "application/json") {
		t.Errorf("stored content type %q, want application/json", row.ContentType)
	}

	sr, raw := p.postStream("/v1/chat/completions", body)
	h := expectStream(t, "stream after the disconnect", sr, raw, "HIT")
	if diff := sameAnswer(h, w); diff != "" {
		t.Fatalf("the hit stream differs from the stored answer: %s", diff)
	}
	if h.UsageN != 1 {
		t.Errorf("include_usage: %d usage chunks in the hit, want 1", h.UsageN)
	}
	r, b := p.Post("/v1/chat/completions", chatBody(content))
	expectCache(t, "non-stream after the disconnect", r, b, 200, "HIT")
	expectCalls(t, p, 1)
	if string(b) != string(row.Body) {
		t.Fatalf("the non-streamed hit is not the stored body:\n hit  %s\n disk %s", b, row.Body)
	}

	// The whole answer, not the part the client saw: the fake's answer to the same request is
	// deterministic (only its id differs), so ask it directly.
	direct := send(testClient, p.Fake.URL()+"/v1/chat/completions", chatBody(content))
	if direct.err != nil || direct.status != 200 {
		t.Fatalf("direct call to the fake: %v %d", direct.err, direct.status)
	}
	want, err := answerContent(direct.body)
	if err != nil {
		t.Fatal(err)
	}
	if deref(w.Choices[0].Message.Content) != want || h.Content != want {
		t.Fatalf("stored content %d bytes, hit stream %d bytes, the full answer is %d bytes", len(deref(w.Choices[0].Message.Content)), len(h.Content), len(want))
	}
}
