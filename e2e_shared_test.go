package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"llmcache/bench/fakeupstream"
)

func expectSource(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: X-Cache-Source = %q, want %q", what, got, want)
	}
}

// TestE2ESharedMissIsEveryInstancesHit: two instances on one Redis (standalone, then a three-node cluster):
// what one fetched, the other answers from the store with the same bytes (chat, completions, embeddings per
// item, streams replayed), with X-Cache-Source: store, and no upstream call; versions, max-age, TTL (the
// store's own expiry) and namespaces apply as on one machine; hit counts reach the store.
func TestE2ESharedMissIsEveryInstancesHit(t *testing.T) {
	eachShape(t, func(t *testing.T, s *sharedStore) {
		ps, fake := newSharedProxies(t, 2, s, fakeupstream.Options{}, nil)
		a, b := ps[0], ps[1]

		// Chat: a miss on a, a store hit on b with the same bytes, then b's memory hit.
		resp, miss := a.Post("/v1/chat/completions", chatBody("shared hello"))
		expectCache(t, "a first", resp, miss, 200, "MISS")
		key := cacheKey(t, resp)
		a.waitWritten()
		resp, hit := b.Post("/v1/chat/completions", chatBody("shared hello"))
		expectCache(t, "b", resp, hit, 200, "HIT")
		expectSource(t, "b", resp.Header.Get("X-Cache-Source"), "store")
		if !bytes.Equal(hit, miss) {
			t.Fatalf("b's hit differs from a's miss:\n%s\n%s", hit, miss)
		}
		resp, again := b.Post("/v1/chat/completions", chatBody("shared hello"))
		expectSource(t, "b again", resp.Header.Get("X-Cache-Source"), "memory")
		if !bytes.Equal(again, miss) {
			t.Fatal("b's memory hit differs")
		}
		if n := fake.CallsTo("chat"); n != 1 {
			t.Fatalf("upstream chat calls %d, want 1", n)
		}
		// Hit counts are batched to the store (b's two hits).
		waitFor(t, "b's hits to reach the store", func() bool { return s.hitCount(key) == 2 })

		// Streams: b replays what a fetched as a stream, the same bytes as a's own replay from memory.
		sa, rawLive := a.postStream("/v1/chat/completions", chatStreamBody("shared stream", true))
		expectStream(t, "a live", sa, rawLive, "MISS")
		a.waitWritten()
		sb, rawB := b.postStream("/v1/chat/completions", chatStreamBody("shared stream", true))
		expectStream(t, "b replay", sb, rawB, "HIT")
		expectSource(t, "b replay", sb.resp.Header.Get("X-Cache-Source"), "store")
		sa2, rawA := a.postStream("/v1/chat/completions", chatStreamBody("shared stream", true))
		expectStream(t, "a replay", sa2, rawA, "HIT")
		if !bytes.Equal(rawA, rawB) {
			t.Fatalf("replays differ between instances:\n%s\n%s", rawA, rawB)
		}
		if msg := sameAnswer(sb.a, mustWhole(t, b, chatBody("shared stream"))); msg != "" {
			t.Fatalf("b's replay is not the stored answer: %s", msg)
		}

		// Completions.
		resp, miss = b.Post("/v1/completions", completionBody("shared prompt", false, false))
		expectCache(t, "completion on b", resp, miss, 200, "MISS")
		b.waitWritten()
		resp, hit = a.Post("/v1/completions", completionBody("shared prompt", false, false))
		expectCache(t, "completion on a", resp, hit, 200, "HIT")
		expectSource(t, "completion on a", resp.Header.Get("X-Cache-Source"), "store")
		if !bytes.Equal(hit, miss) {
			t.Fatal("completion hit differs")
		}

		// Embeddings, per item: a embeds x and y; b asks y and z, and only z goes upstream.
		resp, body := a.Post(embPath, `{"model":"emb","input":["x","y"]}`)
		expectCache(t, "emb a", resp, body, 200, "MISS")
		a.waitWritten()
		resp, body = b.Post(embPath, `{"model":"emb","input":["y","z"]}`)
		expectCache(t, "emb b", resp, body, 200, "PARTIAL")
		expectVectors(t, "emb b", embeddings(t, body), "y", "z")
		if calls := fake.EmbeddingInputs(); len(calls) != 2 || strings.Join(calls[1], ",") != "z" {
			t.Fatalf("embedding calls %v, want the second to carry only z", calls)
		}
		b.waitWritten()
		resp, body = a.Post(embPath, `{"model":"emb","input":["z","x"]}`)
		expectCache(t, "emb a again", resp, body, 200, "HIT")
		expectSource(t, "emb a again", resp.Header.Get("X-Cache-Source"), "store")

		// Batched completions, per prompt: b's request for two prompts a stored is answered from the store.
		resp, body = a.Post("/v1/completions", `{"model":"m","prompt":["p one","p two"],"max_tokens":3}`)
		expectCache(t, "prompts on a", resp, body, 200, "MISS")
		a.waitWritten()
		resp, body = b.Post("/v1/completions", `{"model":"m","prompt":["p two","p one"],"max_tokens":3}`)
		expectCache(t, "prompts on b", resp, body, 200, "HIT")
		expectSource(t, "prompts on b", resp.Header.Get("X-Cache-Source"), "store")

		// Per-request controls: max-age=0 refuses b's stored answer; a TTL is the store's own expiry; a
		// namespace is a key space of its own.
		resp, body = b.Post("/v1/chat/completions", chatBody("shared hello"), "Cache-Control", "max-age=0")
		expectCache(t, "max-age=0 on b", resp, body, 200, "MISS")
		resp, body = a.Post("/v1/chat/completions", chatBody("with ttl"), "X-Cache-TTL", "3600")
		expectCache(t, "ttl on a", resp, body, 200, "MISS")
		a.waitWritten()
		if ttl, _ := strconv.ParseInt(s.cli("pttl", entryKey(cacheKey(t, resp))), 10, 64); ttl < 3500_000 || ttl > 3600_000 {
			t.Fatalf("the entry stored with X-Cache-TTL: 3600 has PTTL %d in the store", ttl)
		}
		resp, body = b.Post("/v1/chat/completions", chatBody("shared hello"), "X-Cache-Namespace", "other")
		expectCache(t, "namespace on b", resp, body, 200, "MISS")
		if got := getShared(t, b); got.Backend != "redis" || !got.Shared.Up || got.Entries == 0 {
			t.Fatalf("/stats store on b: %+v", got)
		}
	})
}

// mustWhole fetches the non-streamed answer of body from p.
func mustWhole(t *testing.T, p *testProxy, body string) *wholeAnswer {
	t.Helper()
	resp, b := p.Post("/v1/chat/completions", body)
	expectCache(t, "whole", resp, b, 200, "HIT")
	w, err := decodeWhole(b, "chat.completion")
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestE2ESharedVersions: an instance with a higher cache_version in override mode takes another's older
// entry for a miss, and its fresh answer replaces the entry in the store for everyone.
func TestE2ESharedVersions(t *testing.T) {
	s := newSharedStore(t, false, redistestOptions())
	ps, fake := newSharedProxies(t, 2, s, fakeupstream.Options{}, func(i int, c *fileConfig) {
		if i == 1 {
			c.CacheVersion, c.CacheOverrideMode = 2, true
		}
	})
	a, b := ps[0], ps[1]
	resp, body := a.Post("/v1/chat/completions", chatBody("versioned"))
	expectCache(t, "a", resp, body, 200, "MISS")
	a.waitWritten()
	resp, body = b.Post("/v1/chat/completions", chatBody("versioned"))
	expectCache(t, "b (version 2, override)", resp, body, 200, "MISS")
	b.waitWritten()
	if n := fake.CallsTo("chat"); n != 2 {
		t.Fatalf("upstream calls %d, want 2", n)
	}
	// a (version 0, no override) serves every entry: the one b replaced, from the store once its memory
	// has let it go (a restart of a empties it).
	a.Restart()
	resp, body = a.Post("/v1/chat/completions", chatBody("versioned"))
	expectCache(t, "a after b's refresh", resp, body, 200, "HIT")
	expectSource(t, "a after b's refresh", resp.Header.Get("X-Cache-Source"), "store")
}

// TestE2ESharedDeleteReachesEveryInstance: three instances hold an answer in memory; a delete (by key, then
// by a filter, then flushall) on one deletes it from the store and, once the other instances have been told
// (polled on their /stats), none serves it: the next request is a miss everywhere.
func TestE2ESharedDeleteReachesEveryInstance(t *testing.T) {
	eachShape(t, func(t *testing.T, s *sharedStore) {
		ps, fake := newSharedProxies(t, 3, s, fakeupstream.Options{}, nil)
		warm := func(content string) string {
			t.Helper()
			resp, body := ps[0].Post("/v1/chat/completions", chatBody(content))
			ps[0].waitWritten()
			for _, p := range ps[1:] {
				// Twice: the second answer comes from the instance's memory layer.
				for range 2 {
					resp, body = p.Post("/v1/chat/completions", chatBody(content))
					expectCache(t, "warm", resp, body, 200, "HIT")
				}
				expectSource(t, "warm", resp.Header.Get("X-Cache-Source"), "memory")
			}
			return cacheKey(t, resp)
		}
		received := func(p *testProxy) int64 { return getShared(t, p).Shared.DropsReceived }
		deleteOn := func(body, path string) {
			t.Helper()
			before := []int64{received(ps[1]), received(ps[2])}
			resp, out := ps[0].Post(path, body)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", path, resp.StatusCode, out)
			}
			for i, p := range ps[1:] {
				waitFor(t, "the invalidation to reach an instance", func() bool { return received(p) > before[i] })
			}
		}
		expectMissEverywhere := func(content string) {
			t.Helper()
			for i, p := range ps {
				calls := fake.CallsTo("chat")
				resp, body := p.Post("/v1/chat/completions", chatBody(content), "X-Cache-Mode", "read_only")
				if resp.StatusCode != 404 {
					t.Fatalf("instance %d still serves the deleted answer: %d %s (X-Cache-Source %s)", i, resp.StatusCode, body,
						resp.Header.Get("X-Cache-Source"))
				}
				if fake.CallsTo("chat") != calls {
					t.Fatal("a read_only request went upstream")
				}
			}
		}
		key := warm("to delete by key")
		deleteOn(`{"keys":["`+key+`"]}`, "/cache/delete")
		if got := s.cli("exists", entryKey(key)); got != "0" {
			t.Fatalf("the entry is still in the store: exists %s", got)
		}
		expectMissEverywhere("to delete by key")

		warm("to delete by namespace")
		deleteOn(`{"namespace":""}`, "/cache/delete")
		expectMissEverywhere("to delete by namespace")

		warm("to flush")
		deleteOn(``, "/cache/flushall")
		expectMissEverywhere("to flush")
	})
}

// TestE2ESharedExportImport: with STORE_BACKEND=redis and REDIS_URL, llmcache export writes the shared
// store's entries and llmcache import loads them into another store, where they are hits with the same
// bytes; stats reads the store; vacuum refuses.
func TestE2ESharedExportImport(t *testing.T) {
	src, dst := newSharedStore(t, false, redistestOptions()), newSharedStore(t, false, redistestOptions())
	ps, _ := newSharedProxies(t, 1, src, fakeupstream.Options{}, nil)
	var answers []string
	for _, q := range []string{"export one", "export two", "export three"} {
		_, body := ps[0].Post("/v1/chat/completions", chatBody(q))
		answers = append(answers, string(body))
	}
	ps[0].waitWritten()
	file := t.TempDir() + "/cache.jsonl"
	env := map[string]string{"STORE_BACKEND": "redis", "REDIS_URL": src.server.URL()}
	if code, _, stderr := cli(t, env, "export", "-o", file); code != 0 || !strings.Contains(stderr, "exported 3 entries") {
		t.Fatalf("export: %d %s", code, stderr)
	}
	env["REDIS_URL"] = dst.server.URL()
	if code, stdout, stderr := cli(t, env, "import", file); code != 0 || !strings.Contains(stdout, "imported 3 entries") {
		t.Fatalf("import: %d %s %s", code, stdout, stderr)
	}
	if code, stdout, _ := cli(t, env, "stats"); code != 0 || !strings.Contains(stdout, `"chat"                        3 entries`) {
		t.Fatalf("stats: %d %s", code, stdout)
	}
	if code, _, stderr := cli(t, env, "vacuum"); code != 1 || !strings.Contains(stderr, "SQLite") {
		t.Fatalf("vacuum on the shared store: %d %s", code, stderr)
	}
	qs, fake := newSharedProxies(t, 1, dst, fakeupstream.Options{}, nil)
	for i, q := range []string{"export one", "export two", "export three"} {
		resp, body := qs[0].Post("/v1/chat/completions", chatBody(q))
		expectCache(t, q, resp, body, 200, "HIT")
		if string(body) != answers[i] {
			t.Fatalf("%s: imported answer differs", q)
		}
	}
	if fake.CallsTo("chat") != 0 {
		t.Fatal("an imported entry went upstream")
	}
}

// TestE2ESharedRefreshReachesEveryInstance: a refresh (Cache-Control: no-cache) on one instance replaces the
// answer in the store, and the other instances, which held the old one in memory, serve the new one once
// they have been told.
func TestE2ESharedRefreshReachesEveryInstance(t *testing.T) {
	s := newSharedStore(t, false, redistestOptions())
	ps, _ := newSharedProxies(t, 2, s, fakeupstream.Options{}, nil)
	a, b := ps[0], ps[1]
	_, old := a.Post("/v1/chat/completions", chatBody("to refresh"))
	a.waitWritten()
	for range 2 {
		b.Post("/v1/chat/completions", chatBody("to refresh"))
	}
	resp, body := b.Post("/v1/chat/completions", chatBody("to refresh"))
	expectSource(t, "b before", resp.Header.Get("X-Cache-Source"), "memory")
	if !bytes.Equal(body, old) {
		t.Fatal("b serves another answer before the refresh")
	}
	before := getShared(t, b).Shared.DropsReceived
	resp, fresh := a.Post("/v1/chat/completions", chatBody("to refresh"), "Cache-Control", "no-cache")
	expectCache(t, "refresh on a", resp, fresh, 200, "REFRESH")
	if bytes.Equal(fresh, old) {
		t.Fatal("the fake upstream answered the same bytes twice; the test cannot tell them apart")
	}
	waitFor(t, "b to be told of the refresh", func() bool { return getShared(t, b).Shared.DropsReceived > before })
	resp, body = b.Post("/v1/chat/completions", chatBody("to refresh"))
	expectCache(t, "b after", resp, body, 200, "HIT")
	if !bytes.Equal(body, fresh) {
		t.Fatalf("b serves the old answer after the refresh:\n%s\nwant\n%s", body, fresh)
	}
}

// TestE2ESharedResponseByID: a response one instance stored is found by its id on another, in the same
// namespace only.
func TestE2ESharedResponseByID(t *testing.T) {
	eachShape(t, func(t *testing.T, s *sharedStore) {
		ps, fake := newSharedProxies(t, 2, s, fakeupstream.Options{}, nil)
		resp, body := ps[0].Post("/v1/responses", respBody(`"kept by id"`, ""))
		expectCache(t, "the miss on the first instance", resp, body, 200, "MISS")
		var r struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &r); err != nil || r.ID == "" {
			t.Fatalf("no response id: %v %s", err, body)
		}
		ps[0].waitWritten() // in the store: another instance can only find what was written there
		calls := fake.CallsTo("responses_by_id")
		resp, got := ps[1].Get("/v1/responses/" + r.ID)
		if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "HIT" || !bytes.Equal(got, body) {
			t.Fatalf("by id on the other instance: %d X-Cache %q, equal %v: %s", resp.StatusCode, resp.Header.Get("X-Cache"), bytes.Equal(got, body), got)
		}
		if n := fake.CallsTo("responses_by_id"); n != calls {
			t.Errorf("%d lookups went upstream, want none", n-calls)
		}
		req, _ := http.NewRequest("GET", ps[1].URL+"/v1/responses/"+r.ID, nil)
		req.Header.Set("X-Cache-Namespace", "elsewhere")
		req.Header.Set("X-Cache-Mode", "read_only")
		if resp, got := ps[1].do(req); resp.StatusCode != 404 {
			t.Errorf("another namespace: status %d %s, want a 404 cache_miss", resp.StatusCode, got)
		}
	})
}
