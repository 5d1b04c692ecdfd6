package observe

import (
	"io"
	"math"
	"slices"
	"time"

	"llmcache/httpx/dashboard"
	"llmcache/pipeline"
)

// Dashboard renders GET /dashboard from the same figures as /stats.
func (s *Sources) Dashboard(w io.Writer) error {
	c := s.Pipeline.Counts()
	v := s.Stats.View()
	d := dashboard.View{
		Now: time.Now(), Uptime: time.Since(s.Started), RefreshSeconds: 10,
		HitRate: math.NaN(), HitRateLastMinute: math.NaN(),
		TokensSaved: c.TokensSaved, MemoryEntries: c.MemoryEntries, MemoryBytes: c.MemoryBytes, DBEntries: -1, DBBytes: -1,
		UpstreamInFlight: c.UpstreamInFlight, Queued: c.Queued,
	}
	d.Requests = c.Total()
	for o := range pipeline.NumOutcomes {
		d.Outcomes = append(d.Outcomes, dashboard.Count{Name: o.String(), Value: c.Outcome(o)})
	}
	if rate, ok := c.HitRate(); ok {
		d.HitRate = rate
	}
	if rate, ok := pipeline.HitRate(v.HitsLastMinute, v.FetchedLastMinute); ok {
		d.HitRateLastMinute = rate
	}
	if st, err := s.Store(); err == nil {
		d.DBEntries, d.DBBytes = st.Entries, st.FileBytes+st.WALBytes
	}
	ws := s.Writer.Stats()
	d.WriterPending, d.WriterLastError = ws.Pending, ws.LastError
	for _, p := range v.Series {
		pt := dashboard.Point{At: p.At, HitRate: math.NaN(), LatencyP50MS: p.LatencyP50MS, LatencyP99MS: p.LatencyP99MS}
		if p.Seconds > 0 {
			pt.RequestsPerSecond = float64(p.Requests) / p.Seconds
		}
		if rate, ok := pipeline.HitRate(p.Hits, p.Fetched); ok {
			pt.HitRate = rate
		}
		d.Series = append(d.Series, pt)
	}
	for _, e := range s.Pipeline.Endpoints() {
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
	if s.Batches != nil {
		for _, b := range s.Batches.Running() {
			d.Batches = append(d.Batches, dashboard.Batch{ID: b.ID, Endpoint: b.Endpoint, Status: b.Status, Total: b.Total,
				Completed: b.Completed, Failed: b.Failed, Created: b.CreatedAt})
		}
		slices.SortFunc(d.Batches, func(a, b dashboard.Batch) int { return a.Created.Compare(b.Created) })
	}
	return dashboard.Render(w, &d)
}
