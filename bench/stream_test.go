package bench

import (
	"bytes"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"llmcache/bench/fakeupstream"
)

// streamed turns a chat request body into its streamed twin (same cache key).
func streamed(body []byte) []byte {
	return append(bytes.TrimSuffix(bytes.Clone(body), []byte("}")), []byte(`,"stream":true,"stream_options":{"include_usage":true}}`)...)
}

// BenchmarkStreamHit compares a streamed hit (SSE synthesised from the stored answer) with a plain memory
// hit of the same entry, in one run.
func BenchmarkStreamHit(b *testing.B) {
	p := startProxy(b, startFake(b, fakeupstream.Options{}).URL(), true)
	body := fakeupstream.ChatRequest(1)
	warm(b, p, [][]byte{body})
	for _, tc := range []struct {
		name string
		body []byte
	}{{"stream=false", body}, {"stream=true", streamed(body)}} {
		b.Run(tc.name, func(b *testing.B) {
			measure(b, p.addr, func() []byte { return tc.body }, func(resp *fasthttp.Response) {
				if string(resp.Header.Peek("X-Cache")) != "HIT" {
					b.Errorf("X-Cache %q, want HIT", resp.Header.Peek("X-Cache"))
				}
			})
		})
	}
}

// BenchmarkCoalesce sends 1,000 identical misses at once (half streamed) against a slow upstream, a new
// prompt each iteration, and reports the upstream calls per burst: the target is exactly 1.
func BenchmarkCoalesce(b *testing.B) {
	fake := startFake(b, fakeupstream.Options{Latency: 100 * time.Millisecond})
	p := startProxy(b, fake.URL(), true)
	c := &fasthttp.HostClient{Addr: p.addr, MaxConns: 1100, ReadTimeout: time.Minute}
	const burst = 1000
	fake.ResetCounters()
	n := 0
	for b.Loop() {
		n++
		plain := []byte(`{"model":"fake-model","messages":[{"role":"user","content":"coalesce ` + strconv.Itoa(n) + `"}]}`)
		stream := streamed(plain)
		var wg sync.WaitGroup
		for i := range burst {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				body := plain
				if i%2 == 1 {
					body = stream
				}
				post(b, c, chatPath, body, req, resp)
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(fake.CallsTo(fakeupstream.RouteChat))/float64(n), "upstream-calls/burst")
}
