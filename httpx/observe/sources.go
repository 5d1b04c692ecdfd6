// Package observe turns what the stages count into what operators read: GET /stats (JSON), GET /metrics
// (Prometheus text), the dashboard's view and the periodic summary log line. Every figure comes from the
// same sources, read the same way: a request's outcome as the pipeline counted it, and the one hit-rate
// definition, pipeline.HitRate.
package observe

import (
	"math"
	"time"

	"llmcache/actors"
	"llmcache/pipeline"
	"llmcache/pipeline/batch"
)

// StoreFigures is the persistent tier's size, as the store reports it.
type StoreFigures struct {
	Backend      string `json:"backend"`     // "sqlite" or "redis"
	Entries      int64  `json:"entries"`     // rows of cached answers
	HitEntries   int64  `json:"hit_entries"` // entries hit at least once
	FileBytes    int64  `json:"file_bytes"`  // the database file
	WALBytes     int64  `json:"wal_bytes"`   // its write-ahead log
	PageSize     int64  `json:"page_size"`
	PageCount    int64  `json:"page_count"`
	FreePages    int64  `json:"free_pages"`    // reclaimable by incremental vacuum
	DriverPanics int64  `json:"driver_panics"` // panics of the SQLite driver recovered into errors
	// Compression (SQLite): dictionaries trained from the cache's answers, the one new answers use (0: none
	// yet, they are stored as they are), and stored bodies found corrupt (each served as a miss). The shared
	// store keeps bodies as they are: 0 there.
	Dictionaries  int64 `json:"dictionaries"`
	Dictionary    int64 `json:"dictionary"`
	CorruptBodies int64 `json:"corrupt_bodies"`
	// Shared is the shared store's state and counts (backend "redis"); Entries is then every key of its
	// database.
	Shared *SharedStoreFigures `json:"shared,omitempty"`
}

// SharedStoreFigures are the shared store's state and counts (db/redisstore's Figures, field for field).
type SharedStoreFigures struct {
	Up            bool    `json:"up"`
	LastError     string  `json:"last_error,omitempty"`
	Keys          int64   `json:"keys"`       // DBSIZE over the primaries: entries, locks, and whatever else shares the database
	UsedBytes     int64   `json:"used_bytes"` // used_memory over the primaries
	Reads         int64   `json:"reads"`
	ReadErrors    int64   `json:"read_errors"`   // reads that failed (unreachable, timeout): served as misses
	DecodeErrors  int64   `json:"decode_errors"` // entries that did not decode: served as misses
	Puts          int64   `json:"puts"`
	WriteErrors   int64   `json:"write_errors"` // failed batches (kept and retried by the writer)
	ReadP50MS     float64 `json:"read_latency_p50_ms"`
	ReadP99MS     float64 `json:"read_latency_p99_ms"`
	WriteP50MS    float64 `json:"write_latency_p50_ms"`
	WriteP99MS    float64 `json:"write_latency_p99_ms"`
	FlightsLed    int64   `json:"flights_led"`        // misses that took the cross-instance lock and went upstream
	FlightsWaited int64   `json:"flights_waited"`     // misses that found another instance's lock and waited
	FromStore     int64   `json:"flights_from_store"` // misses answered from the store after the lock (another instance's answer)
	LockTimeouts  int64   `json:"lock_timeouts"`      // waits that passed lock_timeout_seconds and went upstream
	LockErrors    int64   `json:"lock_errors"`        // lock calls that failed: those misses went upstream without one
	DropsSent     int64   `json:"invalidations_sent"`
	DropsReceived int64   `json:"invalidations_received"`
	MemoryResets  int64   `json:"memory_resets"` // the memory layer emptied because the events connection dropped
}

// Sources are what the figures are read from.
type Sources struct {
	Started     time.Time
	Pipeline    *pipeline.Pipeline
	Writer      *actors.Writer
	Stats       *actors.Stats
	Maintenance *actors.Maintenance          // nil: [cache_maintenance] off
	IdleFlush   *actors.IdleFlusher          // nil: [idle_flush] off
	Store       func() (StoreFigures, error) // may count rows: called on demand only
	Batches     *batch.Manager               // nil: no Batch API
}

// Sample gives the stats actor the running totals it samples.
func (s *Sources) Sample() actors.StatsSample {
	c := s.Pipeline.Counts()
	return actors.StatsSample{Hits: c.Hits(), Fetched: c.Fetched(),
		Other: c.Outcome(pipeline.OutcomeCoalesced) + c.Outcome(pipeline.OutcomeError)}
}

// Summary is the periodic log line's attributes: enough to follow a long evaluation run from its log alone.
func (s *Sources) Summary(v *actors.StatsView) []any {
	c := s.Pipeline.Counts()
	w := s.Writer.Stats()
	attrs := []any{"requests", c.Total(), "last_minute", v.RequestsLastMinute, "hits", c.Hits(), "misses", c.Fetched(),
		"coalesced", c.Outcome(pipeline.OutcomeCoalesced), "errors", c.Outcome(pipeline.OutcomeError), "tokens_saved", c.TokensSaved,
		"upstream_calls", c.UpstreamCalls, "upstream_errors", c.UpstreamErrors, "retries", c.Retries,
		"in_flight", c.UpstreamInFlight, "queued", c.Queued, "memory_entries", c.MemoryEntries, "writer_pending", w.Pending}
	if rate, ok := c.HitRate(); ok {
		attrs = append(attrs, "hit_rate", round3(rate))
	}
	if rate, ok := pipeline.HitRate(v.HitsLastMinute, v.FetchedLastMinute); ok {
		attrs = append(attrs, "hit_rate_last_minute", round3(rate))
	}
	for _, e := range s.Pipeline.Endpoints() {
		if e.Health != pipeline.Healthy {
			attrs = append(attrs, "endpoint_"+e.Name, e.Health.String())
		}
	}
	return attrs
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
