// Package dashboard renders the proxy's status page, GET /dashboard, as one self-contained HTML document:
// inline CSS, server-drawn SVG charts, a meta refresh and no script, so it works with no internet and no
// front-end build. It knows nothing of HTTP or of where the figures come from; the caller fills a View.
package dashboard

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// View is everything the page shows; the caller fills it from its stats.
type View struct {
	Now            time.Time // the right edge of the charts; zero = the last point's time
	Uptime         time.Duration
	Version        string // may be empty
	RefreshSeconds int    // <meta http-equiv="refresh"> period; 0 or less = 10

	// Headline figures
	HitRate, HitRateLastMinute float64 // 0..1; NaN = no requests yet
	Requests                   int64   // total since start
	TokensSaved                int64   // upstream tokens that hits did not spend
	MemoryEntries, MemoryBytes int64
	DBEntries, DBBytes         int64 // SQLite; -1 = unknown
	WriterPending              int64
	WriterLastError            string // non-empty = show a warning banner
	UpstreamInFlight, Queued   int64

	// Series over the last hour, oldest first, one point per interval (10 s gives up to 360 points).
	// Missing intervals are allowed and break the lines; points older than an hour before Now are ignored.
	Series []Point
	// Requests by outcome (memory_hit, db_hit, miss, coalesced, refresh, bypass, partial, error), in the
	// order the table shows them.
	Outcomes  []Count
	Endpoints []Endpoint
	// Batches are the batches running now (Batch API), oldest first.
	Batches []Batch
}

// Batch is one running batch, a row of the batches table.
type Batch struct {
	ID, Endpoint, Status     string
	Total, Completed, Failed int64
	Created                  time.Time
}

// Point is one interval of the series.
type Point struct {
	At                         time.Time
	RequestsPerSecond          float64
	HitRate                    float64 // 0..1 over the interval; NaN = no requests in it (drawn as a gap, not 0)
	LatencyP50MS, LatencyP99MS float64 // upstream latency over the interval; NaN = no upstream calls
}

// Count is one row of the outcomes table.
type Count struct {
	Name  string
	Value int64
}

// Endpoint is one upstream, a row of the endpoints table.
type Endpoint struct {
	Name, Health                        string // health: "healthy", "ejected", "probing"
	Weight                              int
	Calls, Retries, Ejections, InFlight int64
	Errors                              int64   // sum of all error kinds
	LatencyP50MS, LatencyP99MS          float64 // NaN = no data
	LastError                           string
}

// Render writes the page for v (nil renders the empty page). It renders into a buffer first so that on
// error nothing has reached w and the caller can still answer 500.
func Render(w io.Writer, v *View) error {
	if v == nil {
		v = &View{DBEntries: -1, DBBytes: -1}
	}
	var buf bytes.Buffer
	buf.Grow(32 << 10) // a full hour of four series renders to about 25 KB
	if err := pageTemplate.Execute(&buf, build(v)); err != nil {
		return fmt.Errorf("cannot render dashboard: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// page is View turned into display strings, so the template only places them.
type page struct {
	Refresh     int
	Version     string
	Updated     string
	Uptime      string
	WriterError string
	Banner      string
	Tiles       []tileView
	Charts      []chart
	Endpoints   []endpointView
	Outcomes    []outcomeView
	Batches     []batchView
}

type batchView struct{ ID, Endpoint, Status, Done, Completed, Failed, Total, Age, Width string }

type tileView struct{ Label, Value, Sub, Class string }

type endpointView struct {
	Name, Health, HealthClass, Weight, Calls, Errors, Retries, Ejections, InFlight, P50, P99 string
	LastError, LastErrorFull                                                                 string
}

type outcomeView struct{ Name, Value, Share, Width, Class string }

func build(v *View) *page {
	now := v.Now
	if now.IsZero() && len(v.Series) > 0 {
		now = v.Series[len(v.Series)-1].At
	}
	p := &page{Refresh: v.RefreshSeconds, Version: v.Version, Uptime: formatDuration(v.Uptime),
		WriterError: truncate(v.WriterLastError, 300)}
	if p.Refresh <= 0 {
		p.Refresh = 10
	}
	if !v.Now.IsZero() {
		p.Updated = v.Now.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	if v.WriterLastError != "" {
		p.Banner = formatInt(v.WriterPending) + " answers waiting to be written; answers are still served, but new ones may not reach SQLite."
	}

	t := newTimeline(v.Series, now)
	latestRate := ""
	for i := len(t.pts) - 1; i >= 0; i-- {
		if r := t.pts[i].RequestsPerSecond; finite(r) {
			latestRate = formatRate(r) + " now"
			break
		}
	}
	healthy := 0
	for _, e := range v.Endpoints {
		if e.Health == "healthy" {
			healthy++
		}
	}
	upClass := ""
	switch {
	case len(v.Endpoints) > 0 && healthy == 0:
		upClass = "bad"
	case healthy < len(v.Endpoints):
		upClass = "warn"
	}
	dbSub := formatInt(v.DBEntries) + " entries"
	if v.DBEntries < 0 {
		dbSub = "entries unknown"
	}
	dbSub += " · " + formatInt(v.WriterPending) + " pending"
	dbClass := ""
	if v.WriterLastError != "" {
		dbClass = "bad"
	}
	hitRate, hitRateMinute := v.HitRate, v.HitRateLastMinute
	if v.Requests == 0 { // no requests: the rate is undefined, and "0.0%" would read as all misses
		hitRate, hitRateMinute = math.NaN(), math.NaN()
	}
	p.Tiles = []tileView{
		{Label: "Hit rate", Value: formatPercent(hitRate), Sub: formatPercent(hitRateMinute) + " last minute"},
		{Label: "Requests", Value: formatInt(v.Requests), Sub: latestRate},
		{Label: "Tokens saved", Value: formatInt(v.TokensSaved), Sub: "not spent upstream"},
		{Label: "Memory cache", Value: formatBytes(v.MemoryBytes), Sub: formatInt(v.MemoryEntries) + " entries"},
		{Label: "SQLite", Value: formatBytes(v.DBBytes), Sub: dbSub, Class: dbClass},
		{Label: "Upstreams healthy", Value: strconv.Itoa(healthy) + " / " + strconv.Itoa(len(v.Endpoints)),
			Sub: formatInt(v.UpstreamInFlight) + " in flight · " + formatInt(v.Queued) + " queued", Class: upClass},
	}

	p.Charts = []chart{
		buildChart(t, chartSpec{series: "hit_rate", title: "Hit rate over the last hour, %", heading: "Hit rate",
			fixedHi: 100, tickLabel: tickPercent, idle: "no requests in the last hour",
			lines: []lineSpec{{name: "hit_rate", class: "c-hit", scale: 100, format: formatPercent,
				value: func(p *Point) float64 { return p.HitRate }}}}),
		buildChart(t, chartSpec{series: "requests_per_second", title: "Requests per second over the last hour",
			heading: "Requests/s", tickLabel: tickNumber, idle: "no requests in the last hour",
			lines: []lineSpec{{name: "requests_per_second", class: "c-req", scale: 1, format: formatRate,
				value: func(p *Point) float64 { return p.RequestsPerSecond }}}}),
		buildChart(t, chartSpec{series: "upstream_latency_ms", title: "Upstream latency p50 and p99 over the last hour, ms",
			heading: "Upstream latency", tickLabel: tickMS, idle: "no upstream calls in the last hour",
			lines: []lineSpec{
				{name: "p50", class: "c-p50", scale: 1, format: p50Label, value: func(p *Point) float64 { return p.LatencyP50MS }},
				{name: "p99", class: "c-p99", scale: 1, format: p99Label, value: func(p *Point) float64 { return p.LatencyP99MS }},
			}}),
	}

	for _, e := range v.Endpoints {
		ev := endpointView{Name: e.Name, Health: e.Health, HealthClass: "unknown", Weight: strconv.Itoa(e.Weight),
			Calls: formatInt(e.Calls), Errors: formatInt(e.Errors), Retries: formatInt(e.Retries),
			Ejections: formatInt(e.Ejections), InFlight: formatInt(e.InFlight),
			P50: formatMS(e.LatencyP50MS), P99: formatMS(e.LatencyP99MS),
			LastError: truncate(e.LastError, 120), LastErrorFull: e.LastError}
		// The class comes from a fixed set: the health text is the caller's and could be anything.
		switch e.Health {
		case "healthy", "ejected", "probing":
			ev.HealthClass = e.Health
		}
		if e.Calls > 0 && e.Errors > 0 {
			ev.Errors += " (" + formatPercent(float64(e.Errors)/float64(e.Calls)) + ")"
		}
		p.Endpoints = append(p.Endpoints, ev)
	}

	for _, b := range v.Batches {
		bv := batchView{ID: b.ID, Endpoint: b.Endpoint, Status: b.Status, Done: dash, Completed: formatInt(b.Completed),
			Failed: formatInt(b.Failed), Total: formatInt(b.Total), Age: dash, Width: "0%"}
		if b.Total > 0 {
			f := min(float64(b.Completed+b.Failed)/float64(b.Total), 1)
			bv.Done, bv.Width = formatPercent(f), strconv.FormatFloat(f*100, 'f', 1, 64)+"%"
		}
		if !b.Created.IsZero() && !v.Now.IsZero() {
			bv.Age = formatDuration(v.Now.Sub(b.Created))
		}
		p.Batches = append(p.Batches, bv)
	}

	var total int64
	for _, c := range v.Outcomes {
		total += max(c.Value, 0)
	}
	for _, c := range v.Outcomes {
		ov := outcomeView{Name: c.Name, Value: formatInt(c.Value), Share: dash, Width: "0%", Class: outcomeClass(c.Name)}
		if total > 0 {
			f := float64(max(c.Value, 0)) / float64(total)
			ov.Share = formatPercent(f)
			if c.Value > 0 && f < 0.001 {
				ov.Share = "<0.1%" // "0.0%" would read as never
			}
			ov.Width = strconv.FormatFloat(f*100, 'f', 1, 64) + "%"
		}
		p.Outcomes = append(p.Outcomes, ov)
	}
	return p
}

func p50Label(ms float64) string { return "p50 " + formatMS(ms) }
func p99Label(ms float64) string { return "p99 " + formatMS(ms) }

// outcomeClass colours the outcome bars: answers from the cache green, answers that cost an upstream call
// blue, failures red.
func outcomeClass(name string) string {
	switch name {
	case "memory_hit", "db_hit", "coalesced":
		return "o-hit"
	case "miss", "refresh", "bypass":
		return "o-up"
	case "error", "partial":
		return "o-err"
	}
	return "o-other"
}
