package actors

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Latency reports wait in a buffer rather than waking the actor; a view must still count every report
// made before it, and /metrics' histogram every report at once.
func TestStatsViewSeesEveryReport(t *testing.T) {
	set := metrics.NewSet()
	cfg := StatsConfig{Queue: 1000, Histogram: func(ep string) *metrics.PrometheusHistogram {
		return set.NewPrometheusHistogram(`latency{endpoint="` + ep + `"}`)
	}}
	s := NewStats(cfg, slog.New(slog.DiscardHandler))
	s.Start(func() StatsSample { return StatsSample{} }, nil)
	defer s.Stop()
	for i := range 100 { // less than a batch: nothing wakes the actor before the view
		s.Upstream("a", time.Duration(i+1)*time.Millisecond)
	}
	s.Upstream("b", 7*time.Millisecond)
	var out bytes.Buffer
	set.WritePrometheus(&out)
	if want := `latency_count{endpoint="a"} 100`; !strings.Contains(out.String(), want) {
		t.Errorf("/metrics before any view has no %s:\n%s", want, out.String())
	}
	v := s.View()
	if q, ok := v.Latency["b"]; !ok || q.P50MS != 7 {
		t.Errorf("endpoint b's quantiles %+v (present %v), want p50 7 ms", q, ok)
	}
	if q := v.Latency["a"]; q.P50MS < 45 || q.P50MS > 55 {
		t.Errorf("endpoint a's p50 %.1f ms, want about 50", q.P50MS)
	}
	if v.Dropped != 0 {
		t.Errorf("%d reports dropped, want none", v.Dropped)
	}
}

// Reports beyond the queue are dropped and counted, never waited for.
func TestStatsDropsPastTheQueue(t *testing.T) {
	s := NewStats(StatsConfig{Queue: 10}, slog.New(slog.DiscardHandler)) // not started: nothing takes them
	for range 25 {
		s.Upstream("a", time.Millisecond)
	}
	if n := s.dropped.Load(); n != 15 {
		t.Errorf("%d reports dropped, want 15", n)
	}
}
