package main

import (
	"bytes"
	"fmt"
	"testing"
)

// TestE2ECompressedAndPlainAnswersServedAfterRestart: answers stored before compression was turned on,
// after it was turned on but before a dictionary was trained, and after (compressed with the dictionary
// trained from the cache's own answers) are all served byte for byte from SQLite after a restart, without
// an upstream call.
func TestE2ECompressedAndPlainAnswersServedAfterRestart(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.Cache.CompressBodies = false
		c.Cache.Enabled = false // every hit below is read from SQLite
		c.trainAfter = 40
	})
	answers := map[string][]byte{} // request body -> the answer the client got
	ask := func(i int) {
		t.Helper()
		req := chatBody(fmt.Sprintf("question %d: what does a cache keep, and for how long, when answers repeat?", i))
		resp, body := p.Post("/v1/chat/completions", req)
		if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "MISS" {
			t.Fatalf("request %d: %d %s %s", i, resp.StatusCode, resp.Header.Get("X-Cache"), body)
		}
		answers[req] = body
	}
	for i := range 30 { // compression off
		ask(i)
	}
	p.waitWritten()

	p.cfg.Cache.CompressBodies = true
	p.Restart()
	i := 30
	waitFor(t, "a compression dictionary trained from the cache's answers", func() bool {
		ask(i) // each answer stored may be the one whose batch writes the trained dictionary
		i++
		p.waitWritten()
		return getStats(t, p).Store.Dictionary != 0
	})
	for range 30 { // compressed with it
		ask(i)
		i++
	}
	p.waitWritten()

	byEncoding := map[int64]int64{}
	d := openCacheDB(t, p.DBPath)
	st, _, err := d.c.Prepare(`SELECT encoding, count(*), sum(length(body)) FROM entries GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for st.Step() {
		byEncoding[st.ColumnInt64(0)] = st.ColumnInt64(1)
	}
	st.Close()
	if byEncoding[0] < 30 || byEncoding[1] < 30 {
		t.Fatalf("entries by encoding %v: want the first 30 or more as they are, the last 30 or more compressed", byEncoding)
	}

	p.Restart()
	calls := p.Fake.CallsTo("chat")
	for req, want := range answers {
		resp, body := p.Post("/v1/chat/completions", req)
		if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "HIT" || resp.Header.Get("X-Cache-Source") != "db" {
			t.Fatalf("after a restart: %d %s from %q", resp.StatusCode, resp.Header.Get("X-Cache"), resp.Header.Get("X-Cache-Source"))
		}
		if !bytes.Equal(body, want) {
			t.Fatalf("after a restart the answer differs:\n got %s\nwant %s", body, want)
		}
	}
	if got := p.Fake.CallsTo("chat"); got != calls {
		t.Fatalf("%d upstream calls for answers on disk", got-calls)
	}
	if s := getStats(t, p); s.Store.CorruptBodies != 0 || s.Store.Dictionaries != 1 {
		t.Fatalf("store figures %+v", s.Store)
	}
}
