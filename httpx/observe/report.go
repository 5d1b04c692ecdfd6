package observe

import (
	"math"
	"time"

	"llmcache/actors"
	"llmcache/pipeline"
)

// statsReport is GET /stats: what the proxy has done since it started, and the state of its store. Field
// names are stable (README lists them).
type statsReport struct {
	UptimeSeconds      float64            `json:"uptime_seconds"`
	Requests           requestStats       `json:"requests"`
	HitRate            float64            `json:"hit_rate"`             // pipeline.HitRate since start; 0 before anything counted
	HitRateLastMinute  *float64           `json:"hit_rate_last_minute"` // null when nothing was answered in the last minute
	RequestsLastMinute int64              `json:"requests_last_minute"`
	TokensSaved        int64              `json:"tokens_saved"` // upstream total_tokens of the answers hits served
	Memory             memoryStats        `json:"memory"`
	Upstream           upstreamStats      `json:"upstream"`
	Writer             actors.WriterStats `json:"writer"`
	Store              *StoreFigures      `json:"store,omitempty"`
	StoreError         string             `json:"store_error,omitempty"`
	DBReadErrors       int64              `json:"store_read_errors"`   // failed SQLite reads, answered as misses
	ReadsSkipped       int64              `json:"store_reads_skipped"` // misses that did not read SQLite: the filter of the keys on disk said absent
	KeyFilter          string             `json:"key_filter"`          // that filter: off, loading or ready
	AnswersTooLarge    int64              `json:"answers_too_large"`   // answers over max_answer_bytes: passed on, not stored
	Maintenance        *maintenanceStats  `json:"maintenance,omitempty"`
	IdleFlushes        *int64             `json:"idle_flushes,omitempty"` // idle flushes done; absent when [idle_flush] is off
	ContextTrim        contextTrimStats   `json:"context_trim"`
	DroppedReports     int64              `json:"stats_dropped_reports"`        // upstream latency reports the stats actor had no room for
	Batches            map[string]int64   `json:"batches,omitempty"`            // batches by status
	BatchLines         map[string]int64   `json:"batch_lines,omitempty"`        // batch lines answered since start, by outcome
	BatchLineRetries   *int64             `json:"batch_line_retries,omitempty"` // batch lines submitted again after a local overload (503)
	BatchesError       string             `json:"batches_error,omitempty"`      // the batch records could not be read
}

type requestStats struct {
	Total      int64                       `json:"total"` // every request answered, every route and outcome
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

// Report is GET /stats.
func (s *Sources) Report() any {
	c := s.Pipeline.Counts()
	v := s.Stats.View()
	r := statsReport{
		UptimeSeconds: time.Since(s.Started).Seconds(),
		Requests: requestStats{MemoryHits: c.Outcome(pipeline.OutcomeMemoryHit), DBHits: c.Outcome(pipeline.OutcomeDBHit),
			Misses: c.Outcome(pipeline.OutcomeMiss), Coalesced: c.Outcome(pipeline.OutcomeCoalesced),
			Refreshes: c.Outcome(pipeline.OutcomeRefresh), Bypasses: c.Outcome(pipeline.OutcomeBypass),
			Partial: c.Outcome(pipeline.OutcomePartial), Errors: c.Outcome(pipeline.OutcomeError),
			ByRoute: map[string]map[string]int64{}},
		RequestsLastMinute: v.RequestsLastMinute,
		TokensSaved:        c.TokensSaved,
		Memory:             memoryStats{Entries: c.MemoryEntries, Bytes: c.MemoryBytes, TouchDrops: c.TouchDrops},
		DBReadErrors:       c.DBReadErrors,
		ReadsSkipped:       c.ReadsSkipped,
		KeyFilter:          c.KeyFilter,
		AnswersTooLarge:    c.TooLarge,
		Upstream: upstreamStats{Calls: c.UpstreamCalls, Errors: c.UpstreamErrors, Retries: c.Retries, InFlight: c.UpstreamInFlight,
			Queued: c.Queued, Waiting: c.Waiting, Endpoints: []endpointStats{}},
		Writer:         s.Writer.Stats(),
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
		}
		r.Requests.ByRoute[route] = m
	}
	if rate, ok := pipeline.HitRate(v.HitsLastMinute, v.FetchedLastMinute); ok {
		r.HitRateLastMinute = &rate
	}
	r.Requests.Total = c.Total()
	r.HitRate, _ = c.HitRate()
	for _, e := range s.Pipeline.Endpoints() {
		es := endpointStats{Name: e.Name, Health: e.Health.String(), Weight: e.Weight,
			Calls: e.Calls, Retries: e.Retries, Ejections: e.Ejections, InFlight: e.InFlight, Errors: e.Errors,
			LatencyMeanMS: e.LatencyMeanMS, LastError: e.LastError}
		if q, ok := v.Latency[e.Name]; ok && !math.IsNaN(q.P50MS) {
			es.LatencyMS = &latencyStats{P50: q.P50MS, P90: q.P90MS, P99: q.P99MS}
		}
		r.Upstream.Endpoints = append(r.Upstream.Endpoints, es)
	}
	if st, err := s.Store(); err != nil {
		r.StoreError = err.Error()
	} else {
		r.Store = &st
	}
	if s.Maintenance != nil {
		last, runs := s.Maintenance.Last()
		r.Maintenance = &maintenanceStats{Runs: runs, LastExpired: last.Expired, LastUnused: last.Unused, LastEvicted: last.Evicted,
			LastBytesBefore: last.BytesBefore, LastBytesAfter: last.BytesAfter, LastDurationMS: last.Duration.Milliseconds()}
	}
	if s.IdleFlush != nil {
		n := s.IdleFlush.Runs()
		r.IdleFlushes = &n
	}
	if s.Batches != nil {
		bc := s.Batches.Counts()
		r.Batches, r.BatchLineRetries, r.BatchLines = bc.Batches, &bc.Retries, map[string]int64{}
		for o := range pipeline.NumOutcomes {
			r.BatchLines[o.String()] = bc.Lines[o]
		}
		if bc.Err != nil {
			r.BatchesError = bc.Err.Error()
		}
	}
	return r
}
