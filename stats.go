package main

import (
	"io"
	"math"
	"time"

	"llmcache/actors"
	"llmcache/db"
	"llmcache/httpx/dashboard"
	"llmcache/pipeline"
)

// statsReport is GET /stats: what the proxy has done since it started, and the state of its store. Field
// names are stable (README lists them).
type statsReport struct {
	UptimeSeconds      float64            `json:"uptime_seconds"`
	Requests           requestStats       `json:"requests"`
	HitRate            float64            `json:"hit_rate"`             // hits / (hits + fetched answers), since start
	HitRateLastMinute  *float64           `json:"hit_rate_last_minute"` // null when nothing was answered in the last minute
	RequestsLastMinute int64              `json:"requests_last_minute"`
	TokensSaved        int64              `json:"tokens_saved"` // upstream total_tokens of the answers hits served
	Memory             memoryStats        `json:"memory"`
	Upstream           upstreamStats      `json:"upstream"`
	Writer             actors.WriterStats `json:"writer"`
	Store              *db.Stats          `json:"store,omitempty"`
	StoreError         string             `json:"store_error,omitempty"`
	DBReadErrors       int64              `json:"store_read_errors"` // failed SQLite reads, answered as misses
	Maintenance        *maintenanceStats  `json:"maintenance,omitempty"`
	ContextTrim        contextTrimStats   `json:"context_trim"`
	DroppedReports     int64              `json:"stats_dropped_reports"` // upstream latency reports the stats actor had no room for
}

type requestStats struct {
	Total      int64                       `json:"total"`
	MemoryHits int64                       `json:"memory_hits"`
	DBHits     int64                       `json:"db_hits"`
	Misses     int64                       `json:"misses"`
	Coalesced  int64                       `json:"coalesced"`
	Refreshes  int64                       `json:"refreshes"`
	Bypasses   int64                       `json:"bypasses"`
	Partial    int64                       `json:"partial"`
	Errors     int64                       `json:"errors"`
	ByRoute    map[string]map[string]int64 `json:"by_route"` // route (chat, completions, embeddings, models) → outcome → count
}

type contextTrimStats struct {
	Runs            int64 `json:"runs"`             // chat bodies counted on their way upstream
	TrimmedRequests int64 `json:"trimmed_requests"` // bodies that lost messages
	DroppedMessages int64 `json:"dropped_messages"`
	Overflows       int64 `json:"overflows"` // too long even trimmed: rejected, or passed with on_overflow = "pass"
}

type memoryStats struct {
	Entries    int64 `json:"entries"`
	Bytes      int64 `json:"bytes"`
	TouchDrops int64 `json:"touch_drops"` // hit-count updates dropped while the writer's queue was full
}

type upstreamStats struct {
	Calls     int64           `json:"calls"`
	Errors    int64           `json:"errors"`
	Retries   int64           `json:"retries"`
	InFlight  int64           `json:"in_flight"`
	Queued    int64           `json:"queued"`
	Waiting   int64           `json:"waiting"` // requests waiting for an upstream call's answer (leaders and coalesced followers)
	Endpoints []endpointStats `json:"endpoints"`
}

type endpointStats struct {
	Name          string           `json:"name"`
	Health        string           `json:"health"` // healthy, ejected, probing
	Weight        int              `json:"weight"`
	Calls         int64            `json:"calls"`
	Retries       int64            `json:"retries"`
	Ejections     int64            `json:"ejections"`
	InFlight      int64            `json:"in_flight"`
	Errors        map[string]int64 `json:"errors"`
	LatencyMeanMS float64          `json:"latency_mean_ms"` // since start, every attempt
	LatencyMS     *latencyStats    `json:"latency_ms"`      // quantiles over the last minutes; null before the first call
	LastError     string           `json:"last_error,omitempty"`
}

type latencyStats struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

type maintenanceStats struct {
	Runs            int64 `json:"runs"`
	LastExpired     int64 `json:"last_expired_deleted"`
	LastUnused      int64 `json:"last_unused_deleted"`
	LastEvicted     int64 `json:"last_evicted"`
	LastBytesBefore int64 `json:"last_file_bytes_before"`
	LastBytesAfter  int64 `json:"last_file_bytes_after"`
	LastDurationMS  int64 `json:"last_duration_ms"`
}

func (a *app) stats() any {
	c := a.pipe.Counts()
	v := a.statsActor.View()
	r := statsReport{
		UptimeSeconds: time.Since(a.started).Seconds(),
		Requests: requestStats{MemoryHits: c.Outcome(pipeline.OutcomeMemoryHit), DBHits: c.Outcome(pipeline.OutcomeDBHit),
			Misses: c.Outcome(pipeline.OutcomeMiss), Coalesced: c.Outcome(pipeline.OutcomeCoalesced),
			Refreshes: c.Outcome(pipeline.OutcomeRefresh), Bypasses: c.Outcome(pipeline.OutcomeBypass),
			Partial: c.Outcome(pipeline.OutcomePartial), Errors: c.Outcome(pipeline.OutcomeError),
			ByRoute: map[string]map[string]int64{}},
		RequestsLastMinute: v.RequestsLastMinute,
		TokensSaved:        c.TokensSaved,
		Memory:             memoryStats{Entries: c.MemoryEntries, Bytes: c.MemoryBytes, TouchDrops: c.TouchDrops},
		DBReadErrors:       c.DBReadErrors,
		Upstream: upstreamStats{Calls: c.UpstreamCalls, Errors: c.UpstreamErrors, Retries: c.Retries, InFlight: c.UpstreamInFlight,
			Queued: c.Queued, Waiting: c.Waiting, Endpoints: []endpointStats{}},
		Writer:         a.writer.Stats(),
		DroppedReports: v.Dropped,
		ContextTrim:    contextTrimStats{Runs: c.TrimRuns, TrimmedRequests: c.Trimmed, DroppedMessages: c.TrimDropped, Overflows: c.TrimOverflows},
	}
	for k := range pipeline.NumKinds {
		route := pipeline.Kind(k).Route()
		if route == "other" {
			continue
		}
		m := map[string]int64{}
		for o := range pipeline.NumOutcomes {
			m[o.String()] = c.Requests[k][o]
			r.Requests.Total += c.Requests[k][o]
		}
		r.Requests.ByRoute[route] = m
	}
	if !math.IsNaN(v.HitRateLastMinute) {
		r.HitRateLastMinute = &v.HitRateLastMinute
	}
	if hits, total := c.Hits(), c.Hits()+c.Fetched(); total > 0 {
		r.HitRate = float64(hits) / float64(total)
	}
	for _, e := range a.pipe.Endpoints() {
		es := endpointStats{Name: e.Name, Health: e.Health.String(), Weight: e.Weight,
			Calls: e.Calls, Retries: e.Retries, Ejections: e.Ejections, InFlight: e.InFlight, Errors: e.Errors,
			LatencyMeanMS: e.LatencyMeanMS, LastError: e.LastError}
		if q, ok := v.Latency[e.Name]; ok && !math.IsNaN(q.P50MS) {
			es.LatencyMS = &latencyStats{P50: q.P50MS, P90: q.P90MS, P99: q.P99MS}
		}
		r.Upstream.Endpoints = append(r.Upstream.Endpoints, es)
	}
	if st, err := a.store.Stats(); err != nil {
		r.StoreError = err.Error()
	} else {
		r.Store = &st
	}
	if a.maint != nil {
		last, runs := a.maint.Last()
		r.Maintenance = &maintenanceStats{Runs: runs, LastExpired: last.Expired, LastUnused: last.Unused, LastEvicted: last.Evicted,
			LastBytesBefore: last.BytesBefore, LastBytesAfter: last.BytesAfter, LastDurationMS: last.Duration.Milliseconds()}
	}
	return r
}

// statsSample gives the stats actor the running totals it samples.
func (a *app) statsSample() actors.StatsSample {
	c := a.pipe.Counts()
	s := actors.StatsSample{Hits: c.Hits(), Fetched: c.Fetched()}
	s.Other = c.Outcome(pipeline.OutcomeCoalesced) + c.Outcome(pipeline.OutcomeError)
	return s
}

// summary is the periodic log line: enough to follow a long evaluation run from its log alone.
func (a *app) summary(v *actors.StatsView) []any {
	c := a.pipe.Counts()
	w := a.writer.Stats()
	attrs := []any{"requests", c.Hits() + c.Fetched() + c.Outcome(pipeline.OutcomeCoalesced) + c.Outcome(pipeline.OutcomeError),
		"last_minute", v.RequestsLastMinute, "hits", c.Hits(), "misses", c.Fetched(), "coalesced", c.Outcome(pipeline.OutcomeCoalesced),
		"errors", c.Outcome(pipeline.OutcomeError), "tokens_saved", c.TokensSaved,
		"upstream_calls", c.UpstreamCalls, "upstream_errors", c.UpstreamErrors, "retries", c.Retries,
		"in_flight", c.UpstreamInFlight, "queued", c.Queued, "memory_entries", c.MemoryEntries, "writer_pending", w.Pending}
	if total := c.Hits() + c.Fetched(); total > 0 {
		attrs = append(attrs, "hit_rate", math.Round(float64(c.Hits())/float64(total)*1000)/1000)
	}
	if !math.IsNaN(v.HitRateLastMinute) {
		attrs = append(attrs, "hit_rate_last_minute", math.Round(v.HitRateLastMinute*1000)/1000)
	}
	for _, e := range a.pipe.Endpoints() {
		if e.Health != pipeline.Healthy {
			attrs = append(attrs, "endpoint_"+e.Name, e.Health.String())
		}
	}
	return attrs
}

// dashboard renders GET /dashboard from the same figures as /stats.
func (a *app) dashboard(w io.Writer) error {
	c := a.pipe.Counts()
	v := a.statsActor.View()
	d := dashboard.View{
		Now: time.Now(), Uptime: time.Since(a.started), RefreshSeconds: 10,
		HitRate: math.NaN(), HitRateLastMinute: v.HitRateLastMinute,
		TokensSaved: c.TokensSaved, MemoryEntries: c.MemoryEntries, MemoryBytes: c.MemoryBytes, DBEntries: -1, DBBytes: -1,
		UpstreamInFlight: c.UpstreamInFlight, Queued: c.Queued,
	}
	for o := range pipeline.NumOutcomes {
		n := c.Outcome(o)
		d.Requests += n
		d.Outcomes = append(d.Outcomes, dashboard.Count{Name: o.String(), Value: n})
	}
	if total := c.Hits() + c.Fetched(); total > 0 {
		d.HitRate = float64(c.Hits()) / float64(total)
	}
	if st, err := a.store.Stats(); err == nil {
		d.DBEntries, d.DBBytes = st.Entries, st.FileBytes+st.WALBytes
	}
	ws := a.writer.Stats()
	d.WriterPending, d.WriterLastError = ws.Pending, ws.LastError
	for _, p := range v.Series {
		pt := dashboard.Point{At: p.At, HitRate: math.NaN(), LatencyP50MS: p.LatencyP50MS, LatencyP99MS: p.LatencyP99MS}
		if p.Seconds > 0 {
			pt.RequestsPerSecond = float64(p.Requests) / p.Seconds
		}
		if p.Hits+p.Fetched > 0 {
			pt.HitRate = float64(p.Hits) / float64(p.Hits+p.Fetched)
		}
		d.Series = append(d.Series, pt)
	}
	for _, e := range a.pipe.Endpoints() {
		de := dashboard.Endpoint{Name: e.Name, Health: e.Health.String(), Weight: e.Weight, Calls: e.Calls, Retries: e.Retries,
			Ejections: e.Ejections, InFlight: e.InFlight, LastError: e.LastError, LatencyP50MS: math.NaN(), LatencyP99MS: math.NaN()}
		for _, n := range e.Errors {
			de.Errors += n
		}
		if q, ok := v.Latency[e.Name]; ok {
			de.LatencyP50MS, de.LatencyP99MS = q.P50MS, q.P99MS
		}
		d.Endpoints = append(d.Endpoints, de)
	}
	return dashboard.Render(w, &d)
}
