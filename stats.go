package main

import (
	"llmcache/actors"
	"llmcache/db"
)

// statsReport is GET /stats: what the proxy has done since it started, and the state of its store. Field
// names are stable (README lists them); the observability issue adds latency figures and /metrics.
type statsReport struct {
	Requests    requestStats       `json:"requests"`
	HitRate     float64            `json:"hit_rate"` // hits / (hits + fetched answers)
	Upstream    upstreamStats      `json:"upstream"`
	Writer      actors.WriterStats `json:"writer"`
	Store       *db.Stats          `json:"store,omitempty"`
	StoreError  string             `json:"store_error,omitempty"`
	Maintenance *maintenanceStats  `json:"maintenance,omitempty"`
}

type requestStats struct {
	MemoryHits int64 `json:"memory_hits"`
	DBHits     int64 `json:"db_hits"`
	Misses     int64 `json:"misses"`
	Coalesced  int64 `json:"coalesced"`
	Refreshes  int64 `json:"refreshes"`
	Bypasses   int64 `json:"bypasses"`
	Errors     int64 `json:"errors"`
}

type upstreamStats struct {
	Calls     int64           `json:"calls"`
	Errors    int64           `json:"errors"`
	Retries   int64           `json:"retries"`
	InFlight  int64           `json:"in_flight"`
	Queued    int64           `json:"queued"`
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
	LatencyMeanMS float64          `json:"latency_mean_ms"`
	LastError     string           `json:"last_error,omitempty"`
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
	r := statsReport{
		Requests: requestStats{MemoryHits: c.MemoryHits, DBHits: c.DBHits, Misses: c.Misses, Coalesced: c.Coalesced,
			Refreshes: c.Refreshes, Bypasses: c.Bypasses, Errors: c.Errors},
		Upstream: upstreamStats{Calls: c.UpstreamCalls, Errors: c.UpstreamErrors, Retries: c.Retries, InFlight: c.UpstreamInFlight, Queued: c.Queued},
		Writer:   a.writer.Stats(),
	}
	for _, e := range a.pipe.Endpoints() {
		r.Upstream.Endpoints = append(r.Upstream.Endpoints, endpointStats{Name: e.Name, Health: e.Health.String(), Weight: e.Weight,
			Calls: e.Calls, Retries: e.Retries, Ejections: e.Ejections, InFlight: e.InFlight, Errors: e.Errors,
			LatencyMeanMS: e.LatencyMeanMS, LastError: e.LastError})
	}
	hits := c.MemoryHits + c.DBHits
	if total := hits + c.Misses + c.Refreshes + c.Bypasses; total > 0 {
		r.HitRate = float64(hits) / float64(total)
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
