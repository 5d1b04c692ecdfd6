package bench

import (
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"llmcache/bench/fakeupstream"
	llmproxy "llmcache/httpx/proxy"
)

// BenchmarkHitCompressed compares hits of realistic ~1.3 KB answers (prose in OpenAI's indented JSON, see
// fakeupstream.Options.Text) from memory and from SQLite, the latter with bodies stored as they are and
// compressed with a dictionary trained from the cache's answers, in one run. The target is SQLite hits,
// decompression included, at least 0.6x memory hits.
func BenchmarkHitCompressed(b *testing.B) {
	text, err := fakeupstream.GoDocText()
	if err != nil {
		b.Fatal(err)
	}
	fake := startFake(b, fakeupstream.Options{Text: text, AnswerBytes: answerBytes, Indent: true})
	bodies := make([][]byte, 256)
	for i := range bodies {
		bodies[i] = fakeupstream.ChatRequest(i)
	}
	run := func(b *testing.B, p *proxy) {
		var next atomic.Int64
		b.SetBytes(1300)
		measure(b, p.addr, func() []byte { return bodies[int(next.Add(1))%len(bodies)] }, func(r *fasthttp.Response) {
			if string(r.Header.Peek("X-Cache")) != "HIT" {
				b.Errorf("X-Cache %q", r.Header.Peek("X-Cache"))
			}
		})
	}
	b.Run("source=memory", func(b *testing.B) {
		p := startProxyConfig(b, fake.URL(), func(c *llmproxy.Config) {})
		warm(b, p, bodies)
		run(b, p)
	})
	b.Run("source=db/compress=off", func(b *testing.B) {
		p := startProxyConfig(b, fake.URL(), func(c *llmproxy.Config) {
			c.Pipeline.MemoryEnabled, c.Store.SQLite.NoCompression = false, true
		})
		warm(b, p, bodies)
		run(b, p)
	})
	b.Run("source=db/compress=on", func(b *testing.B) {
		p := startProxyConfig(b, fake.URL(), func(c *llmproxy.Config) {
			c.Pipeline.MemoryEnabled, c.Store.SQLite.TrainAfter = false, 500
		})
		trainDictionary(b, p, 1000)
		warm(b, p, bodies) // stored compressed
		run(b, p)
	})
}

// trainDictionary sends distinct requests (from number from on) until the proxy compresses with a
// dictionary trained from their answers.
func trainDictionary(b *testing.B, p *proxy, from int) {
	c := client(p.addr)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	for i, deadline := from, time.Now().Add(2*time.Minute); ; i++ {
		post(b, c, chatPath, fakeupstream.ChatRequest(i), req, resp)
		if i%50 == 0 && p.dictionary(b) != 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("no dictionary within two minutes")
		}
		if i-from > 500 {
			time.Sleep(10 * time.Millisecond) // training runs; each write may be the one that adopts it
		}
	}
}

// dictionary is /stats store.dictionary: the dictionary new answers are compressed with (0: none).
func (p *proxy) dictionary(tb testing.TB) int64 {
	tb.Helper()
	status, body, err := fasthttp.Get(nil, "http://"+p.addr+"/stats")
	var f struct {
		Store struct {
			Dictionary int64 `json:"dictionary"`
		} `json:"store"`
	}
	if err != nil || status != 200 || json.Unmarshal(body, &f) != nil {
		tb.Fatalf("/stats: %d %v %s", status, err, body)
	}
	return f.Store.Dictionary
}
