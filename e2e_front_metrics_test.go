package main

import (
	"math"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// hasSeries reports whether family name has a sample whose labels include want.
func hasSeries(families map[string]*dto.MetricFamily, name string, want map[string]string) bool {
	f := families[name]
	if f == nil {
		return false
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		return true
	}
	return false
}

// /metrics carries series only for the routes and outcomes that occurred, with a bucket layout for LLM
// latencies: after three requests it was 74 KB, 704 of its 915 lines zero-filled histogram buckets.
func TestMetricsHoldOnlyWhatOccurred(t *testing.T) {
	t.Parallel()
	p := newTestProxy(t, nil)
	p.Post("/v1/chat/completions", chatBody("metrics a"))
	p.Post("/v1/chat/completions", chatBody("metrics a"))
	p.Post("/v1/chat/completions", chatBody("metrics b"))
	_, body := p.Get("/metrics")
	lines := strings.Count(string(body), "\n")
	t.Logf("/metrics: %d bytes, %d lines", len(body), lines)
	if len(body) > 12<<10 || lines > 200 {
		t.Errorf("/metrics is %d bytes in %d lines after three requests; want it small", len(body), lines)
	}
	families := scrape(t, p)
	for _, name := range []string{"llmcache_requests_total", "llmcache_request_duration_seconds"} {
		for _, occurred := range []string{"miss", "memory_hit"} {
			if !hasSeries(families, name, map[string]string{"route": "chat", "outcome": occurred}) {
				t.Errorf("%s has no chat/%s series", name, occurred)
			}
		}
		for _, absent := range []map[string]string{
			{"route": "chat", "outcome": "coalesced"}, {"route": "chat", "outcome": "error"},
			{"route": "embeddings"}, {"route": "completions"}, {"route": "models"},
		} {
			if hasSeries(families, name, absent) {
				t.Errorf("%s has a series for %v, which never occurred", name, absent)
			}
		}
	}
	if hasSeries(families, "llmcache_upstream_errors_total", nil) {
		t.Error("llmcache_upstream_errors_total has series, but no upstream call failed")
	}
	for _, name := range []string{"llmcache_request_duration_seconds", "llmcache_upstream_request_duration_seconds"} {
		for _, m := range families[name].Metric {
			b := m.Histogram.GetBucket()
			if len(b) > 0 && math.IsInf(b[len(b)-1].GetUpperBound(), 1) {
				b = b[:len(b)-1]
			}
			if len(b) > 15 || len(b) == 0 {
				t.Fatalf("%s has %d finite buckets a series; want 1 to 15", name, len(b))
			}
			if b[0].GetUpperBound() > 0.001 || b[len(b)-1].GetUpperBound() < 600 {
				t.Errorf("%s buckets span %v..%v s; want a memory hit (1 ms) to a long generation (10 min)",
					name, b[0].GetUpperBound(), b[len(b)-1].GetUpperBound())
			}
		}
	}
	// A failed call adds its kind, and only it.
	p.Fake.FailNext(5, 500, "", nil)
	p.Post("/v1/chat/completions", chatBody("metrics fails"))
	families = scrape(t, p)
	if !hasSeries(families, "llmcache_upstream_errors_total", map[string]string{"kind": "status_5xx"}) ||
		hasSeries(families, "llmcache_upstream_errors_total", map[string]string{"kind": "timeout"}) {
		t.Errorf("llmcache_upstream_errors_total: %v, want status_5xx alone", families["llmcache_upstream_errors_total"])
	}
	if !hasSeries(families, "llmcache_request_duration_seconds", map[string]string{"route": "chat", "outcome": "error"}) {
		t.Error("no chat/error duration series after an error")
	}
}
