package actors

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/histogram"
)

// StatsSample is what the stats actor reads from the stages on every tick: running totals since start.
// The stages keep them as atomic counters, so the hot path never waits on the actor.
type StatsSample struct {
	Hits    int64 // memory and SQLite hits
	Fetched int64 // requests answered by an upstream call of their own
	Other   int64 // coalesced, errors: requests that are neither
}

// StatsConfig tunes the stats actor. Zero values mean the defaults.
type StatsConfig struct {
	Tick     time.Duration // how often the totals are sampled; default 1 s
	Bucket   time.Duration // one point of the charts; default 10 s
	History  time.Duration // how far back the charts go; default 1 h
	Window   time.Duration // per-endpoint latency quantiles cover about this long; default 5 min
	LogEvery time.Duration // the summary log line's period (stats_log_interval_seconds); 0 = none
	Queue    int           // upstream latency reports buffered before they are dropped; default 8192
	// Histogram, when set, gives the histogram an endpoint's latencies (in seconds) also go to, for /metrics.
	Histogram func(endpoint string) *metrics.PrometheusHistogram
}

// StatsPoint is one chart point: what happened during one bucket.
type StatsPoint struct {
	At                         time.Time // the bucket's end
	Seconds                    float64   // its length
	Requests, Hits, Fetched    int64
	LatencyP50MS, LatencyP99MS float64 // upstream attempts ending in it; NaN when there were none
}

// LatencyQuantiles are one endpoint's upstream latency over the recent window; NaN when it had no calls.
type LatencyQuantiles struct {
	P50MS, P90MS, P99MS float64
}

// StatsView is the actor's figures at one moment.
type StatsView struct {
	Series             []StatsPoint // oldest first, at most History/Bucket points
	RequestsLastMinute int64
	// Hits and fetched answers over the last minute: the hit rate's two sides (its one definition is the
	// pipeline's, which the readers of this view apply).
	HitsLastMinute, FetchedLastMinute int64
	Latency                           map[string]LatencyQuantiles
	Dropped                           int64 // latency reports dropped because the queue was full
}

type upstreamReport struct {
	endpoint string
	took     time.Duration
}

// endpointLatency keeps two windows, swapped every Window/2: quantiles come from the current one once it
// has a few calls, else from the one before, so they always describe recent calls. Each window is a
// reservoir of at most 1,000 samples (valyala/histogram), so memory stays bounded under any load.
type endpointLatency struct {
	cur, prev   *histogram.Fast
	curN, prevN int
}

// minWindowCalls is how many calls the current window needs before its quantiles are shown.
const minWindowCalls = 20

// Stats is the stats actor: it samples the stages' counters into a history for the charts and the
// last-minute hit rate, collects upstream latencies into quantiles, and writes the periodic log line.
// Stages report to it with Upstream, which never waits for the actor: when the queue is full the report is
// dropped and counted.
//
// Reports are not messages: Upstream appends them to a buffer under a mutex, and the actor takes the buffer
// when it fills (reportBatch), on every tick and before every view. Sending each report on a channel woke
// the actor once per upstream call, a goroutine hand-off on every miss's path that cost more than the report
// (bench/README.md).
type Stats struct {
	cfg     StatsConfig
	sample  func() StatsSample
	summary func(v *StatsView) []any
	log     *slog.Logger
	queries chan chan StatsView
	quit    chan struct{}
	done    chan struct{}
	dropped atomic.Int64

	mu      sync.Mutex
	pending []upstreamReport                        // guarded by mu; taken by the actor
	proms   map[string]*metrics.PrometheusHistogram // guarded by mu: /metrics sees each call at once
	full    chan struct{}                           // pending reached reportBatch: the actor takes it

	// Owned by the actor goroutine.
	spare      []upstreamReport // the buffer taken last time, given back to Upstream next time
	endpoints  map[string]*endpointLatency
	seconds    []StatsSample // the last 61 per-tick samples, for the last minute
	series     []StatsPoint  // ring of closed buckets, oldest first
	bucketFrom StatsSample   // totals when the open bucket began
	bucketAt   time.Time
	bucketLat  *histogram.Fast
}

// NewStats makes the stats actor. Upstream may be called at once (reports wait in the queue); Start runs it.
func NewStats(cfg StatsConfig, log *slog.Logger) *Stats {
	d := DefaultStatsConfig()
	cfg.Tick, cfg.Bucket, cfg.History = orDefault(cfg.Tick, d.Tick), orDefault(cfg.Bucket, d.Bucket), orDefault(cfg.History, d.History)
	cfg.Window, cfg.Queue = orDefault(cfg.Window, d.Window), orDefault(cfg.Queue, d.Queue)
	s := &Stats{
		cfg: cfg, log: log,
		pending:   make([]upstreamReport, 0, min(cfg.Queue, reportBatch)),
		proms:     make(map[string]*metrics.PrometheusHistogram),
		full:      make(chan struct{}, 1),
		queries:   make(chan chan StatsView),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		endpoints: make(map[string]*endpointLatency),
		bucketLat: histogram.NewFast(),
	}
	return s
}

// Start runs the actor. sample is called from its goroutine once per tick and when a view is asked for;
// summary gives the attributes of the periodic log line (nil: no line).
func (s *Stats) Start(sample func() StatsSample, summary func(v *StatsView) []any) {
	s.sample, s.summary = sample, summary
	first := sample()
	s.seconds = append(s.seconds, first)
	s.bucketFrom, s.bucketAt = first, time.Now()
	go s.run()
}

// reportBatch is how many reports wait before the actor is woken to take them.
const reportBatch = 256

// Upstream reports one upstream attempt's latency. It never blocks on the actor.
func (s *Stats) Upstream(endpoint string, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Histogram != nil {
		h := s.proms[endpoint]
		if h == nil {
			h = s.cfg.Histogram(endpoint)
			s.proms[endpoint] = h
		}
		h.Update(took.Seconds())
	}
	if len(s.pending) >= s.cfg.Queue {
		s.dropped.Add(1)
		return
	}
	s.pending = append(s.pending, upstreamReport{endpoint, took})
	if len(s.pending) == reportBatch {
		select {
		case s.full <- struct{}{}:
		default:
		}
	}
}

// take records every waiting report. Only the actor calls it.
func (s *Stats) take() {
	s.mu.Lock()
	reports := s.pending
	s.pending = s.spare[:0]
	s.mu.Unlock()
	for _, r := range reports {
		s.record(r)
	}
	s.spare = reports
}

// View returns the actor's figures now.
func (s *Stats) View() StatsView {
	reply := make(chan StatsView, 1)
	select {
	case s.queries <- reply:
		return <-reply
	case <-s.done:
		return StatsView{}
	}
}

// Stop ends the actor.
func (s *Stats) Stop() {
	close(s.quit)
	<-s.done
}

func (s *Stats) run() {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	swap := time.NewTicker(s.cfg.Window / 2)
	defer swap.Stop()
	var logC <-chan time.Time
	if s.cfg.LogEvery > 0 && s.summary != nil {
		t := time.NewTicker(s.cfg.LogEvery)
		defer t.Stop()
		logC = t.C
	}
	for {
		select {
		case <-s.full:
			s.take()
		case reply := <-s.queries:
			s.take()
			reply <- s.view()
		case now := <-tick.C:
			s.take()
			s.tick(now)
		case <-swap.C:
			s.take() // what came before the swap belongs to the window it ends
			// Always swap: an endpoint idle for two windows shows no quantiles rather than old ones.
			for _, e := range s.endpoints {
				e.prev, e.cur = e.cur, e.prev
				e.prevN, e.curN = e.curN, 0
				e.cur.Reset()
			}
		case <-logC:
			s.take()
			v := s.view()
			s.log.Info("stats", s.summary(&v)...)
		case <-s.quit:
			return
		}
	}
}

func (s *Stats) record(r upstreamReport) {
	e := s.endpoints[r.endpoint]
	if e == nil {
		e = &endpointLatency{cur: histogram.NewFast(), prev: histogram.NewFast()}
		s.endpoints[r.endpoint] = e
	}
	ms := float64(r.took) / float64(time.Millisecond)
	e.cur.Update(ms)
	e.curN++
	s.bucketLat.Update(ms)
}

func (s *Stats) tick(now time.Time) {
	cur := s.sample()
	s.seconds = append(s.seconds, cur)
	if len(s.seconds) > 61 {
		s.seconds = s.seconds[len(s.seconds)-61:]
	}
	if now.Sub(s.bucketAt) < s.cfg.Bucket {
		return
	}
	p := StatsPoint{At: now, Seconds: now.Sub(s.bucketAt).Seconds(), Hits: cur.Hits - s.bucketFrom.Hits, Fetched: cur.Fetched - s.bucketFrom.Fetched}
	p.Requests = p.Hits + p.Fetched + cur.Other - s.bucketFrom.Other
	// An empty reservoir gives NaN: a gap in the latency chart.
	p.LatencyP50MS, p.LatencyP99MS = s.bucketLat.Quantile(0.5), s.bucketLat.Quantile(0.99)
	s.bucketLat.Reset()
	s.bucketFrom, s.bucketAt = cur, now
	s.series = append(s.series, p)
	if limit := int(s.cfg.History / s.cfg.Bucket); len(s.series) > limit {
		s.series = append(s.series[:0], s.series[len(s.series)-limit:]...)
	}
}

func (s *Stats) view() StatsView {
	v := StatsView{Series: append([]StatsPoint(nil), s.series...),
		Latency: make(map[string]LatencyQuantiles, len(s.endpoints)), Dropped: s.dropped.Load()}
	now := s.sample()
	then := s.seconds[0]
	hits, fetched := now.Hits-then.Hits, now.Fetched-then.Fetched
	v.RequestsLastMinute = hits + fetched + now.Other - then.Other
	v.HitsLastMinute, v.FetchedLastMinute = hits, fetched
	var qs [3]float64
	for name, e := range s.endpoints {
		h := e.prev
		if e.curN >= minWindowCalls || e.prevN == 0 {
			h = e.cur // an empty one gives NaN
		}
		h.Quantiles(qs[:0], []float64{0.5, 0.9, 0.99})
		v.Latency[name] = LatencyQuantiles{P50MS: qs[0], P90MS: qs[1], P99MS: qs[2]}
	}
	return v
}
