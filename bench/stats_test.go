package bench

import (
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"llmcache/actors"
	"llmcache/bench/fakeupstream"
	"llmcache/httpx"
	"llmcache/pipeline"
)

// BenchmarkHitStats is the cost of statistics on the memory-hit path: the same hits with the request
// counters off, and with them on plus a request-duration histogram per answer (as main's /metrics has),
// the stats actor sampling the counters and a scraper reading them ten times a second (a busy /stats,
// /metrics and dashboard), in one run.
func BenchmarkHitStats(b *testing.B) {
	fake := startFake(b, fakeupstream.Options{})
	body := fakeupstream.ChatRequest(1)
	for _, on := range []bool{false, true, false, true} {
		name := "stats=off"
		if on {
			name = "stats=on"
		}
		b.Run(name, func(b *testing.B) {
			var durations [pipeline.NumKinds]*metrics.PrometheusHistogram
			set := metrics.NewSet()
			for k := range durations {
				durations[k] = set.NewPrometheusHistogram(`llmcache_request_duration_seconds{route="` + strconv.Itoa(k) + `"}`)
			}
			p := startProxyFull(b, fake.URL(), func(c *pipeline.Config) { c.MemoryEnabled, c.NoStats = true, !on }, func(h *httpx.Config) {
				if on {
					h.Observe = func(k pipeline.Kind, _ *pipeline.Response, took time.Duration) { durations[k].Update(took.Seconds()) }
				}
			})
			if on {
				st := actors.NewStats(actors.StatsConfig{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
				st.Start(func() actors.StatsSample {
					c := p.pipe.Counts()
					return actors.StatsSample{Hits: c.Hits(), Fetched: c.Fetched()}
				}, nil)
				stop := make(chan struct{})
				go func() {
					t := time.NewTicker(100 * time.Millisecond)
					defer t.Stop()
					for {
						select {
						case <-t.C:
							p.pipe.Counts()
							st.View()
						case <-stop:
							return
						}
					}
				}()
				b.Cleanup(func() { close(stop); st.Stop() })
			}
			warm(b, p, [][]byte{body})
			measure(b, p.addr, func() []byte { return body }, nil)
		})
	}
}
