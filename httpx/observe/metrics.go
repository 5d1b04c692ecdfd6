package observe

import (
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"llmcache/pipeline"
)

// Metrics is GET /metrics: the figures of /stats as Prometheus counters, gauges and histograms,
// exposed by VictoriaMetrics/metrics. The hot path keeps its own atomic counters; a scrape copies them
// into the set, then the library writes the exposition. A series appears once what it counts has
// happened: a route and outcome that never occurred (most of them, on most proxies) would otherwise fill
// the page with zeros, a histogram's worth of buckets each.
type Metrics struct {
	mu  sync.Mutex // one scrape at a time: the copy and the write go together
	set *metrics.Set
	src *Sources // set by Serve

	// durations are llmcache_request_duration_seconds by route and outcome, each made at the first
	// request it counts; a request after that only loads a pointer (no name to build, no map to look up).
	durations     [pipeline.NumKinds][pipeline.NumOutcomes]atomic.Pointer[metrics.PrometheusHistogram]
	durationNames [pipeline.NumKinds][pipeline.NumOutcomes]string // "" for routes not counted
}

// NewMetrics makes the set; Serve gives it its sources.
func NewMetrics() *Metrics {
	metrics.ExposeMetadata(true) // # TYPE lines, so counters and gauges parse as such
	m := &Metrics{set: metrics.NewSet()}
	for k := range pipeline.NumKinds {
		route := pipeline.Kind(k).Route()
		if route == "other" {
			continue
		}
		for o := range pipeline.NumOutcomes {
			m.durationNames[k][o] = label("llmcache_request_duration_seconds", "route", route, "outcome", o.String())
		}
	}
	return m
}

// latencyBuckets suit an LLM proxy's answers: a memory hit (well under 1 ms) and a SQLite hit (a few ms)
// at the low end, a streamed answer's first byte (0.1 to a few seconds) and a whole generation (seconds to
// the 10-minute default timeout) above; 15 bounds where the library's default has 11 per decade, zeros
// included, for every series.
var latencyBuckets = []float64{0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Observe records one answered request (httpx.Config.Observe): the time to its answer's headers, by route
// and outcome. It allocates nothing once the route and outcome have been seen.
func (m *Metrics) Observe(kind pipeline.Kind, resp *pipeline.Response, took time.Duration) {
	if int(kind) >= pipeline.NumKinds {
		return
	}
	o := responseOutcome(resp)
	slot := &m.durations[kind][o]
	h := slot.Load()
	if h == nil {
		name := m.durationNames[kind][o]
		if name == "" {
			return
		}
		// Two first requests may both get here: the set hands both the same histogram.
		h = m.set.GetOrCreatePrometheusHistogramExt(name, latencyBuckets)
		slot.Store(h)
	}
	h.Update(took.Seconds())
}

// responseOutcome is the request's outcome, as the pipeline counts it.
func responseOutcome(r *pipeline.Response) pipeline.Outcome {
	if r.Err != nil || r.Status >= 400 {
		return pipeline.OutcomeError
	}
	return r.Outcome
}

// labelEscaper escapes a label value as the text format wants: backslash, double quote, newline.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// label renders name{k="v",...} with the values escaped.
func label(name string, kv ...string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i])
		b.WriteString(`="`)
		b.WriteString(labelEscaper.Replace(kv[i+1]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func (m *Metrics) counter(name string, v int64) {
	m.set.GetOrCreateCounter(name).Set(uint64(max(v, 0)))
}

// occurred sets a counter of a labelled family, whose series appear only once their count is above zero.
// Counts only grow, so a series never disappears once shown.
func (m *Metrics) occurred(name string, v int64) {
	if v > 0 {
		m.counter(name, v)
	}
}
func (m *Metrics) gauge(name string, v float64) { m.set.GetOrCreateGauge(name, nil).Set(v) }

// Latency is the upstream latency histogram of one endpoint, fed by the stats actor.
func (m *Metrics) Latency(endpoint string) *metrics.PrometheusHistogram {
	return m.set.GetOrCreatePrometheusHistogramExt(label("llmcache_upstream_request_duration_seconds", "endpoint", endpoint), latencyBuckets)
}

// Serve makes src the figures Write reads.
func (m *Metrics) Serve(src *Sources) {
	m.mu.Lock()
	m.src = src
	m.mu.Unlock()
}

// Write copies the current figures into the set and writes the exposition to w.
func (m *Metrics) Write(w io.Writer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.src
	c := a.Pipeline.Counts()
	for k := range pipeline.NumKinds {
		route := pipeline.Kind(k).Route()
		if route == "other" {
			continue
		}
		for o := range pipeline.NumOutcomes {
			m.occurred(label("llmcache_requests_total", "route", route, "outcome", o.String()), c.Requests[k][o])
		}
	}
	m.counter("llmcache_tokens_saved_total", c.TokensSaved)
	m.counter("llmcache_answers_too_large_total", c.TooLarge)
	if rate, ok := c.HitRate(); ok { // the hit rate itself, as /stats has it
		m.gauge("llmcache_hit_ratio", rate)
	}
	m.counter("llmcache_context_trim_runs_total", c.TrimRuns)
	m.counter("llmcache_context_trim_trimmed_total", c.Trimmed)
	m.counter("llmcache_context_trim_dropped_messages_total", c.TrimDropped)
	m.counter("llmcache_context_trim_overflows_total", c.TrimOverflows)
	m.gauge("llmcache_upstream_in_flight", float64(c.UpstreamInFlight))
	m.gauge("llmcache_upstream_queued", float64(c.Queued))
	m.gauge("llmcache_upstream_waiting", float64(c.Waiting))
	m.gauge("llmcache_memory_entries", float64(c.MemoryEntries))
	m.gauge("llmcache_memory_bytes", float64(c.MemoryBytes))
	for _, e := range a.Pipeline.Endpoints() {
		ep := e.Name
		m.counter(label("llmcache_upstream_calls_total", "endpoint", ep), e.Calls)
		m.counter(label("llmcache_upstream_retries_total", "endpoint", ep), e.Retries)
		m.counter(label("llmcache_upstream_ejections_total", "endpoint", ep), e.Ejections)
		m.gauge(label("llmcache_upstream_endpoint_in_flight", "endpoint", ep), float64(e.InFlight))
		up := 0.0
		if e.Health == pipeline.Healthy {
			up = 1
		}
		m.gauge(label("llmcache_upstream_endpoint_healthy", "endpoint", ep), up)
		for kind, n := range e.Errors {
			m.occurred(label("llmcache_upstream_errors_total", "endpoint", ep, "kind", kind), n)
		}
	}
	w1 := a.Writer.Stats()
	m.gauge("llmcache_writer_pending", float64(w1.Pending))
	m.gauge("llmcache_writer_queue_depth", float64(w1.QueueDepth))
	m.gauge("llmcache_writer_last_batch_size", float64(w1.LastBatchSize))
	m.counter("llmcache_writer_written_total", w1.Written)
	m.counter("llmcache_writer_batches_total", w1.Batches)
	m.counter("llmcache_writer_failures_total", w1.Failures)
	m.counter("llmcache_writer_dropped_total", w1.Dropped)
	if st, err := a.Store(); err == nil {
		m.gauge("llmcache_db_entries", float64(st.Entries))
		m.gauge("llmcache_db_bytes", float64(st.FileBytes+st.WALBytes))
		if sh := st.Shared; sh != nil {
			m.sharedStore(sh)
		}
	}
	if a.Maintenance != nil {
		last, runs := a.Maintenance.Last()
		m.counter("llmcache_maintenance_runs_total", runs)
		m.gauge("llmcache_maintenance_last_deleted", float64(last.Expired+last.Unused+last.Evicted))
	}
	if a.Stats != nil {
		m.counter("llmcache_stats_reports_dropped_total", a.Stats.View().Dropped)
	}
	if a.Batches != nil {
		bc := a.Batches.Counts()
		var batches int64
		for _, n := range bc.Batches {
			batches += n
		}
		if batches > 0 { // every status once there is a batch, so that a status emptied reads 0
			for status, n := range bc.Batches {
				m.gauge(label("llmcache_batches", "status", status), float64(n))
			}
		}
		for o := range pipeline.NumOutcomes {
			m.occurred(label("llmcache_batch_lines_total", "outcome", o.String()), bc.Lines[o])
		}
		m.occurred("llmcache_batch_line_retries_total", bc.Retries)
	}
	m.set.WritePrometheus(w)
}

// sharedStore writes the shared store's figures (backend = "redis").
func (m *Metrics) sharedStore(sh *SharedStoreFigures) {
	up := 0.0
	if sh.Up {
		up = 1
	}
	m.gauge("llmcache_store_up", up)
	m.gauge("llmcache_db_bytes", float64(sh.UsedBytes))
	m.counter("llmcache_store_reads_total", sh.Reads)
	m.counter("llmcache_store_read_errors_total", sh.ReadErrors)
	m.counter("llmcache_store_decode_errors_total", sh.DecodeErrors)
	m.counter("llmcache_store_puts_total", sh.Puts)
	m.counter("llmcache_store_write_errors_total", sh.WriteErrors)
	m.gauge("llmcache_store_read_latency_p99_seconds", sh.ReadP99MS/1000)
	m.gauge("llmcache_store_write_latency_p99_seconds", sh.WriteP99MS/1000)
	for _, f := range []struct {
		result string
		n      int64
	}{{"led", sh.FlightsLed}, {"waited", sh.FlightsWaited}, {"from_store", sh.FromStore}, {"lock_timeout", sh.LockTimeouts}, {"lock_error", sh.LockErrors}} {
		m.occurred(label("llmcache_store_flights_total", "result", f.result), f.n)
	}
	m.counter("llmcache_store_invalidations_sent_total", sh.DropsSent)
	m.counter("llmcache_store_invalidations_received_total", sh.DropsReceived)
	m.counter("llmcache_store_memory_resets_total", sh.MemoryResets)
}
