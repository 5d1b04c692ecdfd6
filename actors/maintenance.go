package actors

import (
	"log/slog"
	"sync"
	"time"

	"llmcache/db"
)

// MaintenanceConfig holds the knobs of [cache_maintenance].
type MaintenanceConfig struct {
	Interval    time.Duration // interval_hours: time between runs; default 12 h
	Retention   time.Duration // retention_days: entries unused this long (and rarely hit) go; 0 = keep them
	MinHitCount int64         // min_hit_count: the retention rule spares entries hit at least this often
	OnStartup   bool          // cleanup_on_startup: run once right after start, in the background
	ChunkRows   int           // rows deleted per writer job, so the writer is never held long; default 500
	MaxDBBytes  int64         // max_db_bytes: past it the least recently used entries go; 0 = no limit
}

// MaintenanceReport is what one run did.
type MaintenanceReport struct {
	Expired, Unused, Evicted int64
	BytesBefore, BytesAfter  int64
	Duration                 time.Duration
}

// vacuumer is the store's incremental vacuum, when it has one.
type vacuumer interface{ IncrementalVacuum(pages int64) error }

// evicter deletes the least recently used entries, when the store can.
type evicter interface{ DeleteLRU(n int) (int64, error) }

// Maintenance is the actor that deletes expired entries and entries unused for the retention period, in
// small writer jobs between the writer's other work, then gives the freed pages back to the file system.
// NewMaintenance starts it; Stop stops it.
type Maintenance struct {
	cfg    MaintenanceConfig
	writer *Writer
	store  db.Store // for file sizes only; every write goes through the writer
	log    *slog.Logger
	quit   chan struct{}
	wg     sync.WaitGroup

	mu   sync.Mutex
	last MaintenanceReport // guarded by mu
	runs int64             // guarded by mu
}

// NewMaintenance starts the maintenance actor.
func NewMaintenance(cfg MaintenanceConfig, writer *Writer, store db.Store, log *slog.Logger) *Maintenance {
	d := DefaultMaintenanceConfig()
	cfg.Interval, cfg.ChunkRows = orDefault(cfg.Interval, d.Interval), orDefault(cfg.ChunkRows, d.ChunkRows)
	m := &Maintenance{cfg: cfg, writer: writer, store: store, log: log, quit: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.loop()
	}()
	return m
}

// Stop ends the actor, interrupting a run between two chunks.
func (m *Maintenance) Stop() {
	close(m.quit)
	m.wg.Wait()
}

// Last returns the latest run's report and how many runs finished.
func (m *Maintenance) Last() (MaintenanceReport, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, m.runs
}

func (m *Maintenance) loop() {
	if m.cfg.OnStartup {
		m.run()
	}
	tick := time.NewTicker(m.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-m.quit:
			return
		case <-tick.C:
			m.run()
		}
	}
}

// run does one pass: expired entries, then unused ones, then the incremental vacuum.
func (m *Maintenance) run() {
	start := time.Now()
	rep := MaintenanceReport{BytesBefore: m.fileBytes()}
	now := start.UnixMilli()
	var err error
	rep.Expired, err = m.deleteChunks(db.Filter{ExpiredBy: now})
	if err == nil && m.cfg.Retention > 0 {
		rep.Unused, err = m.deleteChunks(db.Filter{UnusedBefore: now - m.cfg.Retention.Milliseconds(), HitsBelow: m.cfg.MinHitCount})
	}
	if err == nil && m.cfg.MaxDBBytes > 0 {
		rep.Evicted, err = m.evict()
	}
	if err == nil && rep.Expired+rep.Unused > 0 {
		err = m.vacuum()
	}
	rep.BytesAfter, rep.Duration = m.fileBytes(), time.Since(start)
	if err != nil {
		m.log.Error("cache maintenance failed", "err", err, "expired_deleted", rep.Expired, "unused_deleted", rep.Unused)
	} else {
		m.log.Info("cache maintenance", "expired_deleted", rep.Expired, "unused_deleted", rep.Unused, "evicted", rep.Evicted,
			"file_bytes_before", rep.BytesBefore, "file_bytes_after", rep.BytesAfter, "took", rep.Duration.Round(time.Millisecond))
	}
	m.mu.Lock()
	m.last, m.runs = rep, m.runs+1
	m.mu.Unlock()
}

// deleteChunks deletes what f selects, ChunkRows at a time, each chunk its own writer job, until a chunk
// comes back short or the actor is stopped.
func (m *Maintenance) deleteChunks(f db.Filter) (int64, error) {
	f.Limit = m.cfg.ChunkRows
	var total int64
	for {
		select {
		case <-m.quit:
			return total, nil
		default:
		}
		n, err := m.writer.Do(func(s db.Store) (int64, error) { return s.Delete(f) })
		total += n
		if err != nil || n < int64(f.Limit) {
			return total, err
		}
	}
}

func (m *Maintenance) vacuum() error {
	_, err := m.writer.Do(func(s db.Store) (int64, error) {
		if v, ok := s.(vacuumer); ok {
			return 0, v.IncrementalVacuum(0)
		}
		return 0, nil
	})
	return err
}

// evict deletes least recently used entries while the pages in use exceed MaxDBBytes. How many to delete
// is estimated from the average entry size, so the rows are counted only once per round.
func (m *Maintenance) evict() (int64, error) {
	var total int64
	// Freed rows free pages only when a page empties, so a round may fall short: go again, a bounded number
	// of times, each round taking at least a few rows.
	for round := 0; round < 20; round++ {
		st, err := m.store.Stats()
		if err != nil {
			return total, err
		}
		// Pages, not the file's size: in WAL mode the file shrinks only at a checkpoint.
		used := (st.PageCount - st.FreePages) * st.PageSize
		if used <= m.cfg.MaxDBBytes || st.Entries == 0 {
			return total, nil
		}
		perEntry := max(used/st.Entries, 1)
		want := max((used-m.cfg.MaxDBBytes)/perEntry+1, 8)
		for want > 0 {
			select {
			case <-m.quit:
				return total, nil
			default:
			}
			n, err := m.writer.Do(func(s db.Store) (int64, error) {
				if e, ok := s.(evicter); ok {
					return e.DeleteLRU(int(min(want, int64(m.cfg.ChunkRows))))
				}
				return 0, nil
			})
			total += n
			want -= n
			if err != nil || n == 0 {
				return total, err
			}
		}
		if err := m.vacuum(); err != nil {
			return total, err
		}
	}
	return total, nil
}

func (m *Maintenance) fileBytes() int64 {
	st, err := m.store.Stats()
	if err != nil {
		return 0
	}
	return st.FileBytes
}
