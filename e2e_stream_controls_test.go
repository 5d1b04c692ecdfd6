package main

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// The per-request controls on streamed requests: each changes what it says and nothing
// else. The header and the body's "cache" object are equivalent.

const chatPath = "/v1/chat/completions"

// streamWithCache is a streamed chat request for content with a body "cache" object (raw JSON).
func streamWithCache(content, cache string) string {
	return `{"model":"` + testModel + `","stream":true,"cache":` + cache + `,"messages":[{"role":"user","content":` + jsonString(content) + `}]}`
}

// streamID returns the chunk id of a complete stream (the fake numbers every upstream answer).
func streamID(t *testing.T, what string, a *assembled) string {
	t.Helper()
	if len(a.IDs) != 1 || a.IDs[0] == "" {
		t.Fatalf("%s: chunk ids %q, want one", what, a.IDs)
	}
	return a.IDs[0]
}

// createdAt reads an entry's created_at (unix ms) from disk.
func (d *cacheDB) createdAt(keyHex string) (int64, bool) {
	d.t.Helper()
	key, _ := hex.DecodeString(keyHex)
	st, _, err := d.c.Prepare(`SELECT created_at FROM entries WHERE key = ?1`)
	if err != nil {
		d.t.Fatalf("cannot read created_at: %v", err)
	}
	defer st.Close()
	if err := st.BindBlob(1, key); err != nil {
		d.t.Fatal(err)
	}
	if !st.Step() {
		return 0, false
	}
	return st.ColumnInt64(0), true
}

// TestE2EStreamNoCache: no-cache on a streamed request skips the lookup, fetches fresh (REFRESH), stores the
// fresh answer under the same key, and never joins an identical request in flight.
func TestE2EStreamNoCache(t *testing.T) {
	p, gate := newGatedProxy(t, nil)
	gate.release() // open; it shuts below to hold requests in flight at once
	body := chatStreamBody("refresh the stream", false)
	sr, raw := p.postStream(chatPath, body)
	m := expectStream(t, "miss", sr, raw, "MISS")
	key := cacheKey(t, sr.resp)

	for i, v := range []struct {
		name, body string
		header     []string
	}{
		{"Cache-Control: no-cache", body, []string{"Cache-Control", "no-cache"}},
		{`"cache":{"no-cache":true}`, streamWithCache("refresh the stream", `{"no-cache":true}`), nil},
	} {
		sr, raw = p.postStream(chatPath, v.body, v.header...)
		r := expectStream(t, v.name, sr, raw, "REFRESH")
		expectCalls(t, p, int64(i+2))
		if cacheKey(t, sr.resp) != key {
			t.Fatalf("%s changed the key", v.name)
		}
		if streamID(t, v.name, r) == streamID(t, "miss", m) {
			t.Fatalf("%s: the same answer id as the cached one: it was not fetched", v.name)
		}
		if r.Content != m.Content {
			t.Fatalf("%s changed the content of a deterministic answer", v.name)
		}
		// The refreshed answer is the one served now.
		sr, raw = p.postStream(chatPath, body)
		h := expectStream(t, v.name+": then", sr, raw, "HIT")
		if streamID(t, "hit", h) != streamID(t, v.name, r) {
			t.Fatalf("after %s the hit is not the refreshed answer", v.name)
		}
	}
	expectCalls(t, p, 3)

	// Not merged: an identical no-cache request while a normal one is in flight makes its own call; so do
	// two no-cache requests at once.
	url := p.URL + chatPath
	fresh := chatStreamBody("never merged", false)
	gate.hold()
	calls := gate.arrived.Load()
	first := make(chan result, 1)
	go func() { first <- send(testClient, url, fresh) }()
	gate.waitArrived(t, calls+1)
	refreshed := make(chan []result, 1)
	go func() { refreshed <- sendAll(url, []string{fresh, fresh}, "Cache-Control", "no-cache") }()
	// Each no-cache request makes its own call while the first is held at the gate.
	gate.waitArrived(t, calls+3)
	gate.release()
	res := append(<-refreshed, <-first)
	expectCalls(t, p, 6)
	ids := map[string]bool{}
	for i, r := range res {
		if r.err != nil || r.status != 200 {
			t.Fatalf("request %d: %v %d %s", i, r.err, r.status, r.body)
		}
		a, err := decodeStreamed(r)
		if err != nil || !a.Done {
			t.Fatalf("request %d: %v: %s", i, err, r.body)
		}
		ids[streamID(t, "concurrent", a)] = true
		want := "REFRESH"
		if i == 2 {
			want = "MISS"
		}
		if xc, src := r.header.Get("X-Cache"), r.header.Get("X-Cache-Source"); xc != want || src != "upstream" {
			t.Errorf("request %d: X-Cache %q from %q, want %s from upstream", i, xc, src, want)
		}
	}
	if len(ids) != 3 {
		t.Fatalf("three requests, %d distinct upstream answers: no-cache requests were merged", len(ids))
	}
}

// TestE2EStreamNoStore: no-store on a streamed miss answers normally and keeps nothing.
func TestE2EStreamNoStore(t *testing.T) {
	p := newTestProxy(t, nil)
	plain := chatStreamBody("stream but do not keep", true)
	sr, raw := p.postStream(chatPath, plain, "Cache-Control", "no-store")
	a := expectStream(t, "no-store", sr, raw, "MISS")
	if cs := sr.resp.Header.Get("Cache-Status"); strings.Contains(cs, "stored") {
		t.Errorf("no-store: Cache-Status %q says stored", cs)
	}
	if a.UsageN != 1 || !strings.HasPrefix(a.Content, "echo: stream but do not keep") {
		t.Errorf("no-store changed the answer: usage chunks %d, content %.40q", a.UsageN, a.Content)
	}
	key := cacheKey(t, sr.resp)
	sr, raw = p.postStream(chatPath, streamWithCache("stream but do not keep", `{"no-store":true}`))
	expectStream(t, `"cache":{"no-store":true}`, sr, raw, "MISS")
	if cacheKey(t, sr.resp) != key {
		t.Fatal("no-store in the body changed the key")
	}
	expectCalls(t, p, 2)
	p.Stop()
	if n := openCacheDB(t, p.DBPath).count(); n != 0 {
		t.Fatalf("%d rows after no-store streams only", n)
	}
}

// TestE2EStreamMaxAge: max-age=0 refuses an entry that is older than the request and fetches again; a large
// max-age accepts it. The body's s-maxage does the same.
func TestE2EStreamMaxAge(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatStreamBody("how old is this", false)
	sr, raw := p.postStream(chatPath, body)
	m := expectStream(t, "miss", sr, raw, "MISS")
	key := cacheKey(t, sr.resp)
	d := openCacheDB(t, p.DBPath)
	var created int64
	waitFor(t, "the entry on disk", func() bool {
		c, ok := d.createdAt(key)
		created = c
		return ok
	})
	waitFor(t, "the entry to be at least 1 ms old", func() bool { return time.Now().UnixMilli() > created })

	sr, raw = p.postStream(chatPath, body, "Cache-Control", "max-age=3600")
	h := expectStream(t, "max-age=3600", sr, raw, "HIT")
	if streamID(t, "hit", h) != streamID(t, "miss", m) {
		t.Fatal("max-age=3600 did not serve the entry")
	}
	expectCalls(t, p, 1)

	sr, raw = p.postStream(chatPath, body, "Cache-Control", "max-age=0")
	r := expectStream(t, "max-age=0", sr, raw, "MISS")
	expectCalls(t, p, 2)
	if streamID(t, "refetch", r) == streamID(t, "miss", m) {
		t.Fatal("max-age=0 served the old entry")
	}
	if cacheKey(t, sr.resp) != key {
		t.Fatal("max-age changed the key")
	}
	// The refetched answer replaced the old one.
	sr, raw = p.postStream(chatPath, body)
	if h := expectStream(t, "after the refetch", sr, raw, "HIT"); streamID(t, "hit", h) != streamID(t, "refetch", r) {
		t.Fatal("the refetched answer did not replace the old entry")
	}
	waitFor(t, "the refetched entry on disk", func() bool {
		c, ok := d.createdAt(key)
		if ok && c > created {
			created = c
			return true
		}
		return false
	})
	waitFor(t, "the entry to be at least 1 ms old", func() bool { return time.Now().UnixMilli() > created })
	sr, raw = p.postStream(chatPath, streamWithCache("how old is this", `{"s-maxage":0}`))
	expectStream(t, `"cache":{"s-maxage":0}`, sr, raw, "MISS")
	expectCalls(t, p, 3)
}

// TestE2EStreamTTL: X-Cache-TTL (or "ttl") on a streamed miss sets the stored entry's expiry; once it has
// passed, the entry is not served.
func TestE2EStreamTTL(t *testing.T) {
	p := newTestProxy(t, nil)
	d := openCacheDB(t, p.DBPath)
	for _, v := range []struct {
		name, content string
		body          func(string) string
		header        []string
	}{
		{"X-Cache-TTL", "ttl by header", func(c string) string { return chatStreamBody(c, false) }, []string{"X-Cache-TTL", "100"}},
		{`"cache":{"ttl":100}`, "ttl by body", func(c string) string { return streamWithCache(c, `{"ttl":100}`) }, nil},
	} {
		before := time.Now().UnixMilli()
		sr, raw := p.postStream(chatPath, v.body(v.content), v.header...)
		expectStream(t, v.name, sr, raw, "MISS")
		key := cacheKey(t, sr.resp)
		if plainKey := func() string {
			r, b := p.Post(chatPath, chatBody(v.content))
			expectCache(t, v.name+": non-streamed", r, b, 200, "HIT")
			return cacheKey(t, r)
		}(); plainKey != key {
			t.Fatalf("%s changed the key", v.name)
		}
		var row dbRow
		waitFor(t, v.name+": the entry on disk", func() bool {
			r, ok := d.row(key)
			row = r
			return ok
		})
		after := time.Now().UnixMilli()
		if row.ExpiresAt < before+100_000 || row.ExpiresAt > after+100_000 {
			t.Fatalf("%s: expires_at %d, want about 100 s after the request (%d..%d)", v.name, row.ExpiresAt, before+100_000, after+100_000)
		}
	}
	expectCalls(t, p, 2)

	// An entry with a 1 s TTL is not served once it has expired.
	body := chatStreamBody("short lived", false)
	sr, raw := p.postStream(chatPath, body, "X-Cache-TTL", "1")
	first := expectStream(t, "ttl 1", sr, raw, "MISS")
	key := cacheKey(t, sr.resp)
	var row dbRow
	waitFor(t, "the short-lived entry on disk", func() bool {
		r, ok := d.row(key)
		row = r
		return ok
	})
	if row.ExpiresAt == 0 {
		t.Fatal("X-Cache-TTL: 1 stored an entry that never expires")
	}
	waitFor(t, "the entry to expire", func() bool { return time.Now().UnixMilli() > row.ExpiresAt })
	sr, raw = p.postStream(chatPath, body)
	again := expectStream(t, "after expiry", sr, raw, "MISS")
	if streamID(t, "again", again) == streamID(t, "first", first) {
		t.Fatal("an expired entry was served")
	}
	expectCalls(t, p, 4)
}

// TestE2EStreamNamespaceAndSample: namespaces and sample indexes keep streamed entries apart, and the body
// form names the same spaces as the headers.
func TestE2EStreamNamespaceAndSample(t *testing.T) {
	p := newTestProxy(t, nil)
	const content = "spaces for streams"
	body := chatStreamBody(content, false)
	type variant struct {
		name, body string
		header     []string
	}
	distinct := []variant{
		{"default", body, nil},
		{"namespace a", body, []string{"X-Cache-Namespace", "a"}},
		{"sample 1", body, []string{"X-Cache-Sample", "1"}},
	}
	ids := map[string]string{}
	keys := map[string]string{}
	for i, v := range distinct {
		sr, raw := p.postStream(chatPath, v.body, v.header...)
		a := expectStream(t, v.name, sr, raw, "MISS")
		expectCalls(t, p, int64(i+1))
		k := cacheKey(t, sr.resp)
		if other, dup := keys[k]; dup {
			t.Fatalf("%s and %s share a key", v.name, other)
		}
		keys[k] = v.name
		ids[v.name] = streamID(t, v.name, a)
	}
	same := []struct {
		variant
		as string
	}{
		{variant{"body namespace a", streamWithCache(content, `{"namespace":"a"}`), nil}, "namespace a"},
		{variant{"body sample 1", streamWithCache(content, `{"sample":1}`), nil}, "sample 1"},
		{variant{"header namespace a", body, []string{"X-Cache-Namespace", "a"}}, "namespace a"},
		{variant{"sample 0", body, []string{"X-Cache-Sample", "0"}}, "default"},
	}
	for _, v := range same {
		sr, raw := p.postStream(chatPath, v.body, v.header...)
		a := expectStream(t, v.name, sr, raw, "HIT")
		if got := keys[cacheKey(t, sr.resp)]; got != v.as {
			t.Errorf("%s: served under %q's key, want %q's", v.name, got, v.as)
		}
		if streamID(t, v.name, a) != ids[v.as] {
			t.Errorf("%s: not %q's answer", v.name, v.as)
		}
	}
	expectCalls(t, p, int64(len(distinct)))
	p.Stop()
	d := openCacheDB(t, p.DBPath)
	for k, name := range keys {
		r, ok := d.row(k)
		if !ok {
			t.Fatalf("%s: no row", name)
		}
		if want := map[bool]string{true: "a", false: ""}[name == "namespace a"]; r.Namespace != want {
			t.Errorf("%s: row namespace %q, want %q", name, r.Namespace, want)
		}
	}
}

// TestE2EStreamModes: read_only never calls the upstream (a streamed miss is a 404 cache_miss, a streamed hit
// a replay); write_only always fetches and stores (REFRESH, never merged); off neither reads nor stores
// (BYPASS).
func TestE2EStreamModes(t *testing.T) {
	p, gate := newGatedProxy(t, nil)
	gate.release() // open; it shuts below to hold requests in flight at once
	for _, v := range []struct {
		name, body string
		header     []string
	}{
		{"X-Cache-Mode: read_only", chatStreamBody("never seen", false), []string{"X-Cache-Mode", "read_only"}},
		{`"cache":{"mode":"read_only"}`, streamWithCache("never seen", `{"mode":"read_only"}`), nil},
	} {
		sr, raw := p.postStream(chatPath, v.body, v.header...)
		if e := expectError(t, v.name, sr.resp, raw, 404); str(e.Error.Code) != "cache_miss" {
			t.Errorf("%s: error code %s, want cache_miss", v.name, e.Error.Code)
		}
	}
	expectCalls(t, p, 0)

	// off: answered, not stored, not read.
	offBody := chatStreamBody("mode off", false)
	sr, raw := p.postStream(chatPath, offBody, "X-Cache-Mode", "off")
	off1 := expectStream(t, "off", sr, raw, "BYPASS")
	sr, raw = p.postStream(chatPath, streamWithCache("mode off", `{"mode":"off"}`))
	off2 := expectStream(t, `"cache":{"mode":"off"}`, sr, raw, "BYPASS")
	if streamID(t, "off", off1) == streamID(t, "off again", off2) {
		t.Fatal("mode off was served from the cache")
	}
	expectCalls(t, p, 2)
	sr, raw = p.postStream(chatPath, offBody, "X-Cache-Mode", "read_only")
	expectError(t, "read_only after mode off", sr.resp, raw, 404)

	// write_only: fetched even when cached, and stored.
	wBody := chatStreamBody("mode write_only", false)
	sr, raw = p.postStream(chatPath, wBody)
	m := expectStream(t, "miss", sr, raw, "MISS")
	sr, raw = p.postStream(chatPath, wBody, "X-Cache-Mode", "write_only")
	w1 := expectStream(t, "write_only", sr, raw, "REFRESH")
	sr, raw = p.postStream(chatPath, streamWithCache("mode write_only", `{"mode":"write_only"}`))
	w2 := expectStream(t, `"cache":{"mode":"write_only"}`, sr, raw, "REFRESH")
	expectCalls(t, p, 5)
	if streamID(t, "w1", w1) == streamID(t, "miss", m) || streamID(t, "w2", w2) == streamID(t, "w1", w1) {
		t.Fatal("write_only was served from the cache")
	}
	for _, v := range [][]string{{"X-Cache-Mode", "read_only"}, nil} {
		sr, raw = p.postStream(chatPath, wBody, v...)
		h := expectStream(t, "read after write_only", sr, raw, "HIT")
		if streamID(t, "hit", h) != streamID(t, "w2", w2) {
			t.Fatal("the last write_only answer is not the one stored")
		}
	}
	expectCalls(t, p, 5)

	// write_only requests in flight at once are not merged: both calls reach the gate.
	gate.hold()
	calls := gate.arrived.Load()
	out := make(chan []result, 1)
	go func() { out <- sendAll(p.URL+chatPath, []string{wBody, wBody}, "X-Cache-Mode", "write_only") }()
	gate.waitArrived(t, calls+2)
	gate.release()
	res := <-out
	for i, r := range res {
		if r.err != nil || r.status != 200 || r.header.Get("X-Cache") != "REFRESH" {
			t.Fatalf("write_only %d: %v %d %q", i, r.err, r.status, r.header.Get("X-Cache"))
		}
	}
	expectCalls(t, p, 7)
}

// TestE2EStreamInvalidControls: an invalid control on a streamed request is a 400 (JSON, not a stream) whose
// message or param names the control; nothing goes upstream.
func TestE2EStreamInvalidControls(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatStreamBody("bad controls", false)
	for _, v := range []struct {
		name, body string
		header     []string
		control    string
	}{
		{"X-Cache-TTL abc", body, []string{"X-Cache-TTL", "abc"}, "X-Cache-TTL"},
		{"X-Cache-TTL -5", body, []string{"X-Cache-TTL", "-5"}, "X-Cache-TTL"},
		{"X-Cache-Sample x", body, []string{"X-Cache-Sample", "x"}, "X-Cache-Sample"},
		{"X-Cache-Mode bogus", body, []string{"X-Cache-Mode", "bogus"}, "X-Cache-Mode"},
		{"max-age=soon", body, []string{"Cache-Control", "max-age=soon"}, "max-age"},
		{"cache.ttl string", streamWithCache("bad controls", `{"ttl":"10"}`), nil, "ttl"},
		{"cache.ttl fraction", streamWithCache("bad controls", `{"ttl":1.5}`), nil, "ttl"},
		{"cache.mode", streamWithCache("bad controls", `{"mode":"sometimes"}`), nil, "mode"},
		{"cache.no-cache", streamWithCache("bad controls", `{"no-cache":"yes"}`), nil, "no-cache"},
		{"cache.no-store", streamWithCache("bad controls", `{"no-store":1}`), nil, "no-store"},
		{"cache.sample", streamWithCache("bad controls", `{"sample":-1}`), nil, "sample"},
		{"cache.s-maxage", streamWithCache("bad controls", `{"s-maxage":null}`), nil, "s-maxage"},
		{"cache.namespace", streamWithCache("bad controls", `{"namespace":7}`), nil, "namespace"},
		{"cache unknown", streamWithCache("bad controls", `{"colour":"blue"}`), nil, "colour"},
		{"cache not an object", streamWithCache("bad controls", `true`), nil, "cache"},
		{"stream not a boolean", `{"model":"fake-model","stream":"yes","messages":[{"role":"user","content":"x"}]}`, nil, "stream"},
	} {
		sr, raw := p.postStream(chatPath, v.body, v.header...)
		e := expectError(t, v.name, sr.resp, raw, 400)
		param := str(e.Error.Param)
		if !strings.Contains(param, v.control) && !strings.Contains(e.Error.Message, v.control) {
			t.Errorf("%s: the error names neither %q in param (%q) nor in message (%q)", v.name, v.control, param, e.Error.Message)
		}
		if e.Error.Type != "invalid_request_error" {
			t.Errorf("%s: error type %q", v.name, e.Error.Type)
		}
	}
	expectCalls(t, p, 0)
}

// TestE2EStreamNotStoredNotShared: an answer that is not stored (no-store, or a stream cut upstream) is never
// handed to a request sent after it ended: each of these sequential requests goes upstream. (The flight of
// a streamed miss ends for its clients at [DONE], a moment before the dispatcher forgets it.)
func TestE2EStreamNotStoredNotShared(t *testing.T) {
	// Cut streams count against the endpoint's health; this test cuts more than eject_after of them.
	p := newTestProxy(t, func(c *fileConfig) { c.EjectAfter = 1000 })
	const n = 30
	ids := map[string]bool{}
	for i := range n {
		sr, raw := p.postStream(chatPath, chatStreamBody("sequential no-store", false), "Cache-Control", "no-store")
		a := expectStream(t, "no-store", sr, raw, "MISS")
		if src := sr.resp.Header.Get("X-Cache-Source"); src != "upstream" {
			t.Fatalf("no-store request %d: X-Cache-Source %q: it was given an earlier request's answer", i, src)
		}
		ids[streamID(t, "no-store", a)] = true
	}
	expectCalls(t, p, n)
	if len(ids) != n {
		t.Fatalf("%d sequential no-store requests got %d distinct upstream answers", n, len(ids))
	}
	for i := range n {
		sr, raw := p.postStream(chatPath, chatStreamBody("sequential cuts", false), "X-Fake-Cut-After", "2")
		if sr.a == nil || sr.a.ErrorData == "" {
			t.Fatalf("cut %d: no error event: %s", i, raw)
		}
		if src := sr.resp.Header.Get("X-Cache-Source"); src != "upstream" {
			t.Fatalf("cut request %d: X-Cache-Source %q: it was given an earlier request's broken stream", i, src)
		}
	}
	expectCalls(t, p, 2*n)
}
