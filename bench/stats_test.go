package bench

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"llmcache/bench/fakeupstream"
	"llmcache/pipeline"
)

// BenchmarkHitStats is the cost of statistics on the memory-hit path: the proxy as users run it (request
// counters, the request-duration histogram, the stats actor) with a scraper reading /stats and /metrics ten
// times a second, against the same proxy with its request counters off and nobody scraping, in one run.
func BenchmarkHitStats(b *testing.B) {
	fake := startFake(b, fakeupstream.Options{})
	body := fakeupstream.ChatRequest(1)
	for _, on := range []bool{false, true, false, true} {
		name := "stats=off"
		if on {
			name = "stats=on"
		}
		b.Run(name, func(b *testing.B) {
			p := startProxyWith(b, fake.URL(), func(c *pipeline.Config) { c.NoStats = !on })
			if on {
				stop := make(chan struct{})
				go func() {
					t := time.NewTicker(100 * time.Millisecond)
					defer t.Stop()
					for {
						select {
						case <-t.C:
							fasthttp.Get(nil, "http://"+p.addr+"/stats")
							fasthttp.Get(nil, "http://"+p.addr+"/metrics")
						case <-stop:
							return
						}
					}
				}()
				b.Cleanup(func() { close(stop) })
			}
			warm(b, p, [][]byte{body})
			measure(b, p.addr, func() []byte { return body }, nil)
		})
	}
}
