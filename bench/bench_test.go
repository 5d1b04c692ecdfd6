package bench

import (
	"bytes"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"llmcache/bench/fakeupstream"
	"llmcache/pipeline"
)

const (
	chatPath       = "/v1/chat/completions"
	embeddingsPath = "/v1/embeddings"
)

// longChat is a multi-turn chat of about 16 KiB.
func longChat() []byte {
	var b bytes.Buffer
	b.WriteString(`{"model":"fake-model","temperature":0.2,"messages":[{"role":"system","content":"You are terse."}`)
	for i := 0; b.Len() < 16<<10; i++ {
		b.WriteString(`,{"role":"user","content":"Turn ` + strconv.Itoa(i) + `: tell me something about caching proxies and eval harnesses."}`)
		b.WriteString(`,{"role":"assistant","content":"Caching proxies answer repeated requests from memory; turn ` + strconv.Itoa(i) + `."}`)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// BenchmarkKeying measures the keying stage's work: validation, RFC 8785 canonical form and SHA-256.
func BenchmarkKeying(b *testing.B) {
	for _, tc := range []struct {
		name string
		body []byte
	}{{"size=500B", fakeupstream.ChatRequest(1)}, {"size=16KiB", longChat()}} {
		b.Run(tc.name, func(b *testing.B) {
			k := pipeline.NewKeyer(pipeline.Config{})
			r := pipeline.Acquire()
			r.Kind = pipeline.KindChat
			r.Body = append(r.Body, tc.body...)
			b.SetBytes(int64(len(tc.body)))
			b.ReportAllocs()
			for b.Loop() {
				r.Controls = pipeline.DefaultControls(pipeline.ModeReadWrite)
				if err := k.Key(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPipelineMemoryHit drives the stages directly (no HTTP): keying → memory shard → hit pool → reply.
func BenchmarkPipelineMemoryHit(b *testing.B) {
	pipe := startPipeline(b, startFake(b, fakeupstream.Options{}).URL())
	body := fakeupstream.ChatRequest(1)
	submit := func() *pipeline.Request {
		r := pipeline.Acquire()
		r.Kind = pipeline.KindChat
		r.Arrived = time.Now()
		r.Body = append(r.Body[:0], body...)
		r.Controls = pipeline.DefaultControls(pipeline.ModeReadWrite)
		pipe.Submit(r)
		return <-r.Done()
	}
	pipeline.Release(submit()) // the miss that fills the cache
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := submit()
			if r.Resp.Cache != "HIT" {
				b.Errorf("X-Cache %q, want HIT", r.Resp.Cache)
			}
			pipeline.Release(r)
		}
	})
}

// BenchmarkHit compares hits over HTTP with a bare fasthttp server returning the same bytes, in one run.
// Sub-benchmarks report req/s; the targets are memory ≥ 0.8x bare and db ≥ 0.5x memory.
func BenchmarkHit(b *testing.B) {
	fake := startFake(b, fakeupstream.Options{})
	body := fakeupstream.ChatRequest(1)
	// One answer from the upstream gives the bytes the bare server returns.
	answer := func() []byte {
		c := client(fake.Addr())
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		post(b, c, chatPath, body, req, resp)
		return append([]byte(nil), resp.Body()...)
	}()
	run := func(b *testing.B, addr string, bodies [][]byte) {
		var next atomic.Int64
		b.SetBytes(int64(len(answer)))
		measure(b, addr, func() []byte { return bodies[int(next.Add(1))%len(bodies)] }, nil)
	}
	b.Run("server=bare-fasthttp", func(b *testing.B) {
		run(b, startBare(b, answer), [][]byte{body})
	})
	b.Run("server=llmcache/source=memory", func(b *testing.B) {
		p := startProxy(b, fake.URL(), true)
		warm(b, p, [][]byte{body})
		run(b, p.addr, [][]byte{body})
	})
	b.Run("server=llmcache/source=db", func(b *testing.B) {
		p := startProxy(b, fake.URL(), false)
		bodies := make([][]byte, 256)
		for i := range bodies {
			bodies[i] = fakeupstream.ChatRequest(i)
		}
		warm(b, p, bodies)
		run(b, p.addr, bodies)
	})
}

// warm sends each body once and waits until the writer has put them on disk.
func warm(b *testing.B, p *proxy, bodies [][]byte) { warmOn(b, p, chatPath, bodies) }

func warmOn(b *testing.B, p *proxy, path string, bodies [][]byte) {
	c := client(p.addr)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	for _, body := range bodies {
		post(b, c, path, body, req, resp)
	}
	p.waitWritten(b)
}

// BenchmarkMiss compares the miss path (every request distinct, stored) with the same load sent straight
// to the fake upstream and through a bare fasthttp reverse proxy, in one run, with the fake's short compact
// answers and with ~1.3 KB answers of natural text in OpenAI's indented JSON (what compression and the
// compaction of streamed replays see). The targets are llmcache ≥ 0.85x the bare proxy's throughput and
// at most 1.5x its CPU a request.
func BenchmarkMiss(b *testing.B) {
	text, err := fakeupstream.GoDocText()
	if err != nil {
		b.Fatal(err)
	}
	for _, answers := range []string{"short", "indented-prose"} {
		opts := fakeupstream.Options{}
		if answers == "indented-prose" {
			opts = fakeupstream.Options{Text: text, AnswerBytes: answerBytes, Indent: true}
		}
		fake := startFake(b, opts)
		var seq atomic.Int64
		run := func(b *testing.B, addr string) {
			measure(b, addr, func() []byte { return fakeupstream.ChatRequest(int(seq.Add(1))) }, nil)
		}
		b.Run("answers="+answers+"/path=direct-upstream", func(b *testing.B) { run(b, fake.Addr()) })
		b.Run("answers="+answers+"/path=bare-reverse-proxy", func(b *testing.B) { run(b, startBareProxy(b, fake.Addr())) })
		b.Run("answers="+answers+"/path=llmcache", func(b *testing.B) {
			p := startProxy(b, fake.URL(), true)
			// Trained before the clock starts: a training is seconds of CPU once at 1,000 answers (then at
			// 10 and 100 times as many), which would otherwise be most of a short run's figure.
			trainDictionary(b, p, 1<<30)
			run(b, p.addr)
		})
	}
}
