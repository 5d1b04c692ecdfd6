package redisstore

import (
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/histogram"

	"llmcache/db"
)

// figures are the store's counters for /stats and /metrics.
type figures struct {
	reads, readErrors, decodeErrors atomic.Int64 // entry reads; failed ones (unreachable, timeout); garbage ones
	puts, writeErrors               atomic.Int64 // entries written; failed batches
	readLat, writeLat               latency

	flightsLed, flightsWaited, flightsFromStore, flightTimeouts, flightErrors atomic.Int64
	dropsSent, dropsReceived, memoryResets                                    atomic.Int64

	garbageLog rateLog
}

func (f *figures) read(d time.Duration) {
	f.reads.Add(1)
	f.readLat.add(d)
}

func (f *figures) write(d time.Duration) { f.writeLat.add(d) }

// latency keeps recent call times: a histogram swapped every latencyWindow, read as quantiles.
type latency struct {
	mu        sync.Mutex
	cur, prev *histogram.Fast
	since     time.Time
}

const latencyWindow = time.Minute

func (l *latency) add(d time.Duration) {
	l.mu.Lock()
	if l.cur == nil || time.Since(l.since) > latencyWindow {
		l.prev, l.cur, l.since = l.cur, histogram.NewFast(), time.Now()
	}
	l.cur.Update(float64(d.Microseconds()) / 1000)
	l.mu.Unlock()
}

// quantiles are p50 and p99 in ms over the last one or two windows; ok false before any call.
func (l *latency) quantiles() (p50, p99 float64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.cur
	if h == nil {
		return 0, 0, false
	}
	if time.Since(l.since) > 2*latencyWindow {
		return 0, 0, false
	}
	return h.Quantile(0.5), h.Quantile(0.99), true
}

// rateLog logs a line at most once a second, saying how many it left out.
type rateLog struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

func (r *rateLog) log(l *slog.Logger, msg string, args ...any) {
	r.mu.Lock()
	if time.Since(r.last) < time.Second {
		r.skipped++
		r.mu.Unlock()
		return
	}
	skipped := r.skipped
	r.last, r.skipped = time.Now(), 0
	r.mu.Unlock()
	if skipped > 0 {
		args = append(args, "similar_lines_left_out", skipped)
	}
	l.Error(msg, args...)
}

// Figures is the store's state and counts, for /stats.
type Figures struct {
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

// Figures reads the counts and asks the store for its size (DBSIZE and INFO memory of each primary).
func (s *Store) Figures() (Figures, error) {
	f := &s.figures
	out := Figures{Up: s.up.Load(), Reads: f.reads.Load(), ReadErrors: f.readErrors.Load(), DecodeErrors: f.decodeErrors.Load(),
		Puts: f.puts.Load(), WriteErrors: f.writeErrors.Load(), FlightsLed: f.flightsLed.Load(), FlightsWaited: f.flightsWaited.Load(),
		FromStore: f.flightsFromStore.Load(), LockTimeouts: f.flightTimeouts.Load(), LockErrors: f.flightErrors.Load(),
		DropsSent: f.dropsSent.Load(), DropsReceived: f.dropsReceived.Load(), MemoryResets: f.memoryResets.Load()}
	if p := s.lastErr.Load(); p != nil {
		out.LastError = *p
	}
	out.ReadP50MS, out.ReadP99MS, _ = f.readLat.quantiles()
	out.WriteP50MS, out.WriteP99MS, _ = f.writeLat.quantiles()
	ctx, cancel := s.ctx()
	defer cancel()
	nodes, err := s.masters(ctx)
	if err != nil {
		return out, err
	}
	for _, n := range nodes {
		size, err := n.Do(ctx, n.B().Dbsize().Build()).AsInt64()
		if err != nil {
			return out, err
		}
		out.Keys += size
		info, err := n.Do(ctx, n.B().Info().Section("memory").Build()).ToString()
		if err != nil {
			return out, err
		}
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
				b, _ := strconv.ParseInt(v, 10, 64)
				out.UsedBytes += b
			}
		}
	}
	return out, nil
}

// Stats implements db.Store: Entries is every key of the store's database (DBSIZE), FileBytes the memory it
// uses.
func (s *Store) Stats() (db.Stats, error) {
	f, err := s.Figures()
	return db.Stats{Entries: f.Keys, FileBytes: f.UsedBytes}, err
}
