// Package actors holds the long-lived actors: the writer, which alone writes to the store, maintenance, the
// idle flush and the stats sampler. Each is a type whose constructor starts its goroutine and whose Stop
// ends it.
package actors

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"llmcache/db"
)

// WriterConfig holds the writer's knobs ([cache] in config.toml).
type WriterConfig struct {
	BatchSize     int           // batch_write_size: a flush starts when this many entries wait; default 20
	FlushInterval time.Duration // flush_interval_ms: or this long after the first one waits; default 200 ms
	QueueSize     int           // jobs that may wait before Put blocks (back-pressure); default 8192
	RetryInterval time.Duration // after a failed write, wait this long before trying again; default 1 s
	MaxPending    int           // answers kept for a retry while writes fail (a full disk); past it the oldest go; default 100,000
}

func (c *WriterConfig) setDefaults() {
	d := DefaultWriterConfig()
	c.BatchSize, c.FlushInterval = orDefault(c.BatchSize, d.BatchSize), orDefault(c.FlushInterval, d.FlushInterval)
	c.QueueSize, c.RetryInterval = orDefault(c.QueueSize, d.QueueSize), orDefault(c.RetryInterval, d.RetryInterval)
	c.MaxPending = orDefault(c.MaxPending, d.MaxPending)
}

// job is one message to the writer: exactly one of its fields is set.
type job struct {
	put     *db.Entry
	touches []db.Touch
	sync    chan<- syncResult // flush (and run fn, if any) then answer
	fn      func(db.Store) (int64, error)
}

type syncResult struct {
	n   int64
	err error
}

// Writer is the actor that owns every write to the store. NewWriter starts it; Stop drains it.
//
// Writes are batched: puts and touches wait in memory until BatchSize puts wait or FlushInterval passed
// since the first one, then everything waiting goes to the store in one transaction. A failed write keeps
// its batch and is retried. Only while writes keep failing (a full or read-only disk) and more than
// MaxPending answers wait are the oldest dropped, counted and logged: memory stays bounded.
type Writer struct {
	cfg   WriterConfig
	store db.Store
	log   *slog.Logger
	jobs  chan job
	wg    sync.WaitGroup

	stopOnce sync.Once

	// Figures for /stats; written by the writer goroutine only.
	queued      atomic.Int64 // puts waiting in the batch, not yet on disk
	accepted    atomic.Int64 // puts handed to Put, counted before they are queued
	written     atomic.Int64 // entries written
	batches     atomic.Int64 // transactions committed
	failures    atomic.Int64 // failed transactions
	dropped     atomic.Int64 // answers given up while writes failed
	lastErr     atomic.Pointer[string]
	lastBatch   atomic.Int64
	touchesDone atomic.Int64
}

// WriterStats is a snapshot of the writer's figures.
type WriterStats struct {
	Pending       int64  `json:"pending"`         // answers handed to the writer and neither written nor given up yet
	Written       int64  `json:"written"`         // answers written since start
	Batches       int64  `json:"batches"`         // transactions committed
	Failures      int64  `json:"failures"`        // failed transactions
	Dropped       int64  `json:"dropped"`         // answers given up while writes kept failing
	LastBatchSize int64  `json:"last_batch_size"` // answers in the last transaction
	Touches       int64  `json:"touches"`         // hit-count updates written
	QueueDepth    int    `json:"queue_depth"`     // jobs waiting in the writer's queue
	LastError     string `json:"last_error"`      // empty when the last write succeeded
}

// shutdownRetries and shutdownRetryPause bound how long a stop keeps trying to write what waits: three
// more tries, each also waiting up to the store's busy timeout for a lock.
const (
	shutdownRetries    = 3
	shutdownRetryPause = 500 * time.Millisecond
)

// NewWriter starts the writer over store. The writer owns the store's write methods from now on.
func NewWriter(store db.Store, cfg WriterConfig, log *slog.Logger) *Writer {
	cfg.setDefaults()
	if log == nil {
		log = slog.Default()
	}
	w := &Writer{cfg: cfg, store: store, log: log, jobs: make(chan job, cfg.QueueSize)}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.loop()
	}()
	return w
}

// Put queues e for storage, waiting while the queue is full: back-pressure, never a drop. e must not be
// modified afterwards.
func (w *Writer) Put(e *db.Entry) {
	w.accepted.Add(1) // before the send: once Put returns, Pending counts e until it is written or dropped
	w.jobs <- job{put: e}
}

// TryTouch queues hit counts without waiting; false means the queue was full and the caller keeps them.
func (w *Writer) TryTouch(t []db.Touch) bool {
	select {
	case w.jobs <- job{touches: t}:
		return true
	default:
		return false
	}
}

// Flush returns once everything queued before it is written (or the write failed).
func (w *Writer) Flush() error {
	_, err := w.Do(nil)
	return err
}

// Do runs fn on the store inside the writer's goroutine after flushing what waits, so that admin and
// maintenance deletes are ordered with inserts. fn may be nil.
func (w *Writer) Do(fn func(db.Store) (int64, error)) (int64, error) {
	done := make(chan syncResult, 1)
	w.jobs <- job{sync: done, fn: fn}
	r := <-done
	return r.n, r.err
}

// Stop writes everything queued, checkpoints the WAL and stops the writer. No Put may follow.
func (w *Writer) Stop() {
	w.stopOnce.Do(func() {
		close(w.jobs)
		w.wg.Wait()
	})
}

// Stats returns the writer's figures.
func (w *Writer) Stats() WriterStats {
	// Written and dropped are read before accepted: Pending may then overcount a put that was just written,
	// but never reads 0 while an answer handed to Put before this call still waits.
	s := WriterStats{
		Written: w.written.Load(), Batches: w.batches.Load(),
		Failures: w.failures.Load(), Dropped: w.dropped.Load(), LastBatchSize: w.lastBatch.Load(), Touches: w.touchesDone.Load(),
		QueueDepth: len(w.jobs),
	}
	s.Pending = w.accepted.Load() - s.Written - s.Dropped
	if p := w.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	return s
}

func (w *Writer) loop() {
	var (
		batch   db.Batch
		timer   = time.NewTimer(time.Hour)
		armed   bool      // timer runs
		retryAt time.Time // after a failed write, size triggers wait until then
	)
	timer.Stop()
	arm := func(d time.Duration) {
		if !armed {
			timer.Reset(d)
			armed = true
		}
	}
	flush := func() error {
		if armed {
			timer.Stop()
			armed = false
		}
		if len(batch.Puts) == 0 && len(batch.Touches) == 0 {
			return nil
		}
		err := w.write(&batch)
		if err != nil {
			retryAt = time.Now().Add(w.cfg.RetryInterval)
			arm(w.cfg.RetryInterval)
			w.shed(&batch)
		}
		return err
	}
	// handle takes one job; a sync job first flushes what came before it, keeping the order.
	handle := func(j job) {
		if j.sync == nil {
			if j.put != nil {
				batch.Puts = append(batch.Puts, j.put)
				w.queued.Store(int64(len(batch.Puts)))
			}
			batch.Touches = append(batch.Touches, j.touches...)
			return
		}
		err := flush()
		var n int64
		if err == nil && j.fn != nil {
			n, err = j.fn(w.store)
		}
		j.sync <- syncResult{n: n, err: err}
	}
	shutdown := func() {
		// Every answer waiting here was acknowledged: a passing error (a lock held by another process,
		// say) gets a few more tries before they are given up.
		err := flush()
		for try := 0; err != nil && try < shutdownRetries; try++ {
			time.Sleep(shutdownRetryPause)
			err = flush()
		}
		if err != nil {
			w.log.Error("cannot write cached answers at shutdown; they are lost", "entries", len(batch.Puts), "err", err)
		}
		if err := w.store.Checkpoint(); err != nil {
			w.log.Warn("cannot checkpoint the WAL at shutdown", "err", err)
		}
	}
	for {
		select {
		case j, ok := <-w.jobs:
			if !ok {
				shutdown()
				return
			}
			handle(j)
			// Take everything else already waiting, so that batches grow past the trigger under load.
		drain:
			for {
				select {
				case j, ok := <-w.jobs:
					if !ok {
						shutdown()
						return
					}
					handle(j)
				default:
					break drain
				}
			}
			if len(batch.Puts) >= w.cfg.BatchSize && !time.Now().Before(retryAt) {
				flush()
			} else if len(batch.Puts) > 0 || len(batch.Touches) > 0 {
				arm(w.cfg.FlushInterval)
			}
		case <-timer.C:
			armed = false
			flush()
		}
	}
}

// write commits batch in one transaction; on success the batch is emptied, on failure kept for a retry.
func (w *Writer) write(batch *db.Batch) error {
	if err := w.store.WriteBatch(batch); err != nil {
		w.failures.Add(1)
		msg := err.Error()
		w.lastErr.Store(&msg)
		w.log.Error("cannot write cached answers; keeping them to retry", "entries", len(batch.Puts), "err", err)
		return err
	}
	w.written.Add(int64(len(batch.Puts)))
	w.batches.Add(1)
	w.lastBatch.Store(int64(len(batch.Puts)))
	w.touchesDone.Add(int64(len(batch.Touches)))
	w.lastErr.Store(nil)
	clear(batch.Puts) // drop references so written bodies can be collected
	batch.Puts = batch.Puts[:0]
	batch.Touches = batch.Touches[:0]
	w.queued.Store(0)
	return nil
}

// shed drops the oldest waiting answers beyond MaxPending after a failed write, and hit counts beyond the
// same bound: a disk that stays full must not grow the process without end.
func (w *Writer) shed(batch *db.Batch) {
	if over := len(batch.Puts) - w.cfg.MaxPending; over > 0 {
		clear(batch.Puts[:over])
		batch.Puts = append(batch.Puts[:0], batch.Puts[over:]...)
		w.dropped.Add(int64(over))
		w.queued.Store(int64(len(batch.Puts)))
		w.log.Error("writes keep failing: dropped the oldest cached answers waiting for disk", "dropped", over, "still_waiting", len(batch.Puts))
	}
	if over := len(batch.Touches) - w.cfg.MaxPending; over > 0 {
		batch.Touches = append(batch.Touches[:0], batch.Touches[over:]...)
	}
}
