// Package batch is OpenAI's Batch API answered by llmcache itself: files uploaded through /v1/files, batches
// created through /v1/batches and run here, line by line, through the same pipeline as live requests, so
// that a cached line is answered at once and only the lines the cache lacks reach an upstream, over the
// ordinary endpoints (local servers have no Batch API of their own).
//
// The Manager owns it all: the files under the batch folder, the records in the cache database (through
// db.Batches, a connection of its own), and one goroutine per unfinished batch (a run), which reads the
// input file, admits lines into the pipeline (at most Config.Concurrency lines at once over every batch,
// so that live requests keep the rest of the upstream slots), and appends each line's result to the
// batch's output or error file as it finishes. A run records its progress as it goes, so that a batch
// interrupted by a stop or a crash resumes where it was (see run.go).
package batch

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"llmcache/actors"
	"llmcache/db"
	"llmcache/pipeline"
)

// Config is the Batch API's configuration.
type Config struct {
	// Dir (batch_dir) holds the files; "" = a folder beside the cache database (cache.db.batches).
	Dir string
	// MaxFileBytes (max_batch_file_bytes) bounds an uploaded file: this route's own limit, not max_body_bytes.
	MaxFileBytes int64
	// MaxLines bounds the requests in an uploaded file (OpenAI's 50,000).
	MaxLines int
	// Concurrency (batch_concurrency) is how many lines of every batch together may be in the pipeline at
	// once. 0 = half of the pipeline's max_concurrent_requests (composition decides), at least 1.
	Concurrency int
	// Retention (batch_retention_days) is how long a finished batch, its files and input files no batch
	// still needs are kept; 0 = forever.
	Retention time.Duration
	// DefaultMode (cache_mode) is the mode of lines whose body sets none.
	DefaultMode pipeline.Mode
	// MaxBodyBytes (max_body_bytes) bounds a line's body as it bounds a live request's: a larger one is that
	// line's 413. 0 = no limit.
	MaxBodyBytes int
	// Checkpoint is how often a running batch syncs its files and records its progress (default 200 ms).
	Checkpoint time.Duration
	// RetryPause is how long a line the pipeline refused as overloaded waits before it is submitted again
	// (default 1 s).
	RetryPause time.Duration
	// SweepEvery is how often finished batches past Retention are looked for (default 1 h; also at start).
	SweepEvery time.Duration
	// Tenant, when client keys are configured, gives the lines of a batch the tenant of the key that made it:
	// owner is that key's namespace ("" for a key without one). nil = no client keys.
	Tenant func(owner string) *pipeline.Tenant
	// Activity is told of every line run, as of every live request, for the idle flush; nil = nobody listens.
	Activity *actors.Activity
	Log      *slog.Logger
}

// DefaultConfig is the Batch API's configuration with every default.
func DefaultConfig() Config {
	return Config{MaxFileBytes: 200_000_000, MaxLines: 50_000, Retention: 30 * 24 * time.Hour, DefaultMode: pipeline.ModeReadWrite,
		Checkpoint: 200 * time.Millisecond, RetryPause: time.Second, SweepEvery: time.Hour}
}

// DirFor is the batch folder for a cache database at dbPath when batch_dir is not set.
func DirFor(dbPath string) string { return db.PathFromURL(dbPath) + ".batches" }

// Manager runs the Batch API. New starts it; Stop stops it.
type Manager struct {
	cfg   Config
	pipe  *pipeline.Pipeline
	store *db.Batches
	log   *slog.Logger

	// slots bounds the lines of every batch in the pipeline at once: a run sends to admit a line and takes
	// back when the line's result is in.
	slots chan struct{}
	quit  chan struct{}
	wg    sync.WaitGroup // runs and the retention sweeper

	mu   sync.Mutex
	runs map[string]*run // unfinished batches by id
	// stopping: Stop has begun, no run starts any more. Guarded by mu.
	stopping bool

	lines   [pipeline.NumOutcomes]atomic.Int64 // lines answered since start, by outcome
	retries atomic.Int64                       // lines submitted again after a local overload
}

// New opens the batch records of the cache database at dbPath (Open has migrated it), makes the batch
// folder, and resumes every unfinished batch. Lines go through pipe.
func New(cfg Config, pipe *pipeline.Pipeline, dbPath string) (*Manager, error) {
	d := DefaultConfig()
	if cfg.Dir == "" {
		cfg.Dir = DirFor(dbPath)
	}
	if cfg.MaxFileBytes <= 0 {
		cfg.MaxFileBytes = d.MaxFileBytes
	}
	if cfg.MaxLines <= 0 {
		cfg.MaxLines = d.MaxLines
	}
	cfg.Concurrency = max(cfg.Concurrency, 1)
	if cfg.Checkpoint <= 0 {
		cfg.Checkpoint = d.Checkpoint
	}
	if cfg.RetryPause <= 0 {
		cfg.RetryPause = d.RetryPause
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = d.SweepEvery
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot make the batch folder %q (set batch_dir): %w", cfg.Dir, err)
	}
	removeUploadLeftovers(cfg.Dir, cfg.Log)
	store, err := db.OpenBatches(dbPath, cfg.Log)
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, pipe: pipe, store: store, log: cfg.Log, slots: make(chan struct{}, cfg.Concurrency),
		quit: make(chan struct{}), runs: map[string]*run{}}
	unfinished, err := store.BatchesIn(unfinishedStatuses...)
	if err != nil {
		store.Close()
		return nil, err
	}
	for i := range unfinished {
		m.log.Info("resuming batch", "batch", unfinished[i].ID, "status", unfinished[i].Status,
			"completed", unfinished[i].Completed, "failed", unfinished[i].Failed, "total", unfinished[i].Total)
		m.start(unfinished[i])
	}
	m.wg.Add(1)
	go m.sweeper()
	return m, nil
}

// Stop stops admitting lines, waits for the lines in the pipeline to be answered and recorded, records
// every batch's progress and closes the records. Unfinished batches resume at the next start. Call it
// before the pipeline stops: lines in flight need it to be answered.
func (m *Manager) Stop() error {
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return nil
	}
	m.stopping = true
	m.mu.Unlock()
	close(m.quit)
	m.wg.Wait()
	return m.store.Close()
}

// start runs batch rec on a goroutine of its own, unless the manager is stopping.
func (m *Manager) start(rec db.BatchRecord) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping {
		return
	}
	r := newRun(m, rec)
	m.runs[rec.ID] = r
	m.wg.Add(1)
	go r.main()
}

// running returns the run of batch id, nil when it is not running.
func (m *Manager) running(id string) *run {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runs[id]
}

func (m *Manager) finished(id string) {
	m.mu.Lock()
	delete(m.runs, id)
	m.mu.Unlock()
}

// path is where a file named name lives.
func (m *Manager) path(name string) string { return filepath.Join(m.cfg.Dir, name) }

// newID is prefix followed by 24 random hex digits: ids are not guessable, so that one client cannot read
// another's files by trying ids (ownership is checked as well).
func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// uploadPrefix names the files an upload writes before it is complete; New removes those a crash left.
const uploadPrefix = ".upload-"

func removeUploadLeftovers(dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), uploadPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				log.Warn("cannot remove an unfinished upload", "file", e.Name(), "err", err)
			}
		}
	}
}

// Counts are the Batch API's figures for /stats and /metrics.
type Counts struct {
	Batches map[string]int64            // by status, from the records
	Lines   [pipeline.NumOutcomes]int64 // lines answered since start, by outcome
	Retries int64                       // lines submitted again after the pipeline refused them as overloaded
	Running []Progress                  // batches running now
	Err     error                       // the records could not be read
}

// Progress is one running batch's state.
type Progress struct {
	ID, Endpoint, Status     string
	Total, Completed, Failed int64
	CreatedAt                time.Time
}

// Counts returns the Batch API's figures. It counts the batch records: call it on demand.
func (m *Manager) Counts() Counts {
	c := Counts{Retries: m.retries.Load()}
	for o := range c.Lines {
		c.Lines[o] = m.lines[o].Load()
	}
	c.Batches, c.Err = m.store.StatusCounts()
	for _, s := range allStatuses {
		if _, ok := c.Batches[s]; !ok && c.Batches != nil {
			c.Batches[s] = 0
		}
	}
	c.Running = m.Running()
	return c
}

// Running returns the progress of every batch running now.
func (m *Manager) Running() []Progress {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Progress, 0, len(m.runs))
	for _, r := range m.runs {
		out = append(out, r.progress())
	}
	return out
}
