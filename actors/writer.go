// Package actors holds the long-lived actors: the writer, which alone writes to the store, maintenance, the
// idle flush and the stats sampler. Each is a type whose constructor starts its goroutine and whose Stop
// ends it.
package actors

import (
	"fmt"
	"log/slog"
	"slices"
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
	// MaxPendingBytes (max_pending_bytes) bounds the bytes of answers waiting for the disk, those queued
	// and those in the batch; default 256 MiB. While writes fail (a full or read-only disk), past it the
	// oldest waiting answers are dropped, counted and logged. While writes work, a batch holding half of
	// it is written at once, and Put waits (back-pressure) while the queue alone holds all of it.
	MaxPendingBytes   int64
	MaxPendingTouches int // hit counts kept for a retry while writes fail; past it the oldest go; default 100,000
}

func (c *WriterConfig) setDefaults() {
	d := DefaultWriterConfig()
	c.BatchSize, c.FlushInterval = orDefault(c.BatchSize, d.BatchSize), orDefault(c.FlushInterval, d.FlushInterval)
	c.QueueSize, c.RetryInterval = orDefault(c.QueueSize, d.QueueSize), orDefault(c.RetryInterval, d.RetryInterval)
	c.MaxPendingBytes, c.MaxPendingTouches = orDefault(c.MaxPendingBytes, d.MaxPendingBytes), orDefault(c.MaxPendingTouches, d.MaxPendingTouches)
}

// job is one message to the writer: exactly one of its fields is set.
type job struct {
	put     *db.Entry
	touches []db.Touch
	sync    chan<- syncResult // flush (and run fn, if any) then answer
	fn      func(db.Store) (int64, error)
	soon    bool // FlushSoon: write what waits without waiting for the batch to fill
}

type syncResult struct {
	n   int64
	err error
}

// Writer is the actor that owns every write to the store. NewWriter starts it; Stop drains it.
//
// Writes are batched: puts and touches wait in memory until BatchSize puts (or half of MaxPendingBytes)
// wait or FlushInterval passed since the first one, then everything waiting goes to the store in one
// transaction. A failed write keeps its batch and is retried. Only while writes keep failing (a full or
// read-only disk) and more than MaxPendingBytes of answers wait are the oldest dropped, counted and
// logged: memory stays bounded.
type Writer struct {
	cfg   WriterConfig
	store db.Store
	prep  db.Preparer // the store's, if it has one: Put runs it in the caller's goroutine
	log   *slog.Logger
	jobs  chan job
	wg    sync.WaitGroup

	stopOnce sync.Once
	stopErr  error // what the final drain could not write; set by the writer goroutine before it ends

	// queuedBytes is the bytes of the answers in jobs, not yet taken by the writer goroutine: Put adds,
	// the writer goroutine subtracts. Put waits on queuedFree while it is at MaxPendingBytes.
	queuedMu    sync.Mutex
	queuedFree  sync.Cond // L is &queuedMu
	queuedBytes int64     // guarded by queuedMu
	putsWaiting int       // Puts blocked on queuedFree; guarded by queuedMu

	// Figures for /stats; written by the writer goroutine only (pendingBytes by Put too).
	queued       atomic.Int64 // puts waiting in the batch, not yet on disk
	accepted     atomic.Int64 // puts handed to Put, counted before they are queued
	pendingBytes atomic.Int64 // bytes of the answers queued or in the batch
	written      atomic.Int64 // entries written
	batches      atomic.Int64 // transactions committed
	failures     atomic.Int64 // failed transactions
	dropped      atomic.Int64 // answers given up while writes failed
	droppedBytes atomic.Int64
	lastErr      atomic.Pointer[string]
	lastBatch    atomic.Int64
	touchesDone  atomic.Int64
}

// WriterStats is a snapshot of the writer's figures.
type WriterStats struct {
	Pending       int64  `json:"pending"`         // answers handed to the writer and neither written nor given up yet
	PendingBytes  int64  `json:"pending_bytes"`   // bytes of the answers queued or waiting for the next write
	Written       int64  `json:"written"`         // answers written since start
	Batches       int64  `json:"batches"`         // transactions committed
	Failures      int64  `json:"failures"`        // failed transactions
	Dropped       int64  `json:"dropped"`         // answers given up while writes kept failing (past max_pending_bytes, or at stop)
	DroppedBytes  int64  `json:"dropped_bytes"`   // their bytes
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
	w.prep, _ = store.(db.Preparer)
	w.queuedFree.L = &w.queuedMu
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.loop()
	}()
	return w
}

// Put queues e for storage, waiting while the queue is full (QueueSize jobs, or MaxPendingBytes of
// answers): back-pressure, never a drop. e must not be modified afterwards.
//
// The store's share of the work that needs no transaction (compressing the body) runs here, in the
// caller's goroutine, beside the writer's transactions instead of inside them: the writer goroutine is the
// one that bounds how many answers are stored per second.
func (w *Writer) Put(e *db.Entry) {
	if w.prep != nil {
		w.prep.Prepare(e)
	}
	n := int64(len(e.Body))
	w.queuedMu.Lock()
	// An answer alone larger than the bound still goes when the queue is empty.
	for w.queuedBytes > 0 && w.queuedBytes+n > w.cfg.MaxPendingBytes {
		w.putsWaiting++
		w.queuedFree.Wait()
		w.putsWaiting--
	}
	w.queuedBytes += n
	w.queuedMu.Unlock()
	w.pendingBytes.Add(n)
	w.accepted.Add(1) // before the send: once Put returns, Pending counts e until it is written or dropped
	w.jobs <- job{put: e}
}

// taken is told by the writer goroutine that a put of n bytes left the queue.
func (w *Writer) taken(n int64) {
	w.queuedMu.Lock()
	w.queuedBytes -= n
	if w.putsWaiting > 0 {
		w.queuedFree.Broadcast()
	}
	w.queuedMu.Unlock()
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

// FlushSoon asks the writer to write what waits now rather than when the batch fills or flush_interval_ms
// passes, without waiting for it: another instance waits for an answer queued here (a flight across
// instances). What waits is still written in one batch. A full queue drops the request: the writer is busy
// writing anyway.
func (w *Writer) FlushSoon() {
	select {
	case w.jobs <- job{soon: true}:
	default:
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

// Stop writes everything queued, checkpoints the WAL and stops the writer. No Put may follow. It returns
// an error when answers that were waiting could not be written (a full or read-only disk): they are lost,
// and the process should say so with its exit code.
func (w *Writer) Stop() error {
	w.stopOnce.Do(func() {
		close(w.jobs)
		w.wg.Wait()
	})
	return w.stopErr
}

// Stats returns the writer's figures.
func (w *Writer) Stats() WriterStats {
	// Written and dropped are read before accepted: Pending may then overcount a put that was just written,
	// but never reads 0 while an answer handed to Put before this call still waits.
	s := WriterStats{
		PendingBytes: w.pendingBytes.Load(), Written: w.written.Load(), Batches: w.batches.Load(),
		Failures: w.failures.Load(), Dropped: w.dropped.Load(), DroppedBytes: w.droppedBytes.Load(),
		LastBatchSize: w.lastBatch.Load(), Touches: w.touchesDone.Load(), QueueDepth: len(w.jobs),
	}
	s.Pending = w.accepted.Load() - s.Written - s.Dropped
	if p := w.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	return s
}

func (w *Writer) loop() {
	var (
		batch      db.Batch
		batchBytes int64 // bytes of the answers in batch.Puts
		timer      = time.NewTimer(time.Hour)
		armed      bool      // timer runs
		failing    bool      // the last write failed
		retryAt    time.Time // after a failed write, size triggers wait until then
		shedLog    shedLog
		soon       bool // a FlushSoon came since the last flush
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
		failing = err != nil
		if err != nil {
			retryAt = time.Now().Add(w.cfg.RetryInterval)
			arm(w.cfg.RetryInterval)
			batchBytes = w.shed(&batch, batchBytes, &shedLog)
			return err
		}
		w.pendingBytes.Add(-batchBytes)
		batchBytes = 0
		return nil
	}
	// handle takes one job; a sync job first flushes what came before it, keeping the order.
	handle := func(j job) {
		if j.soon {
			soon = true
			return
		}
		if j.sync == nil {
			if j.put != nil {
				batch.Puts = append(batch.Puts, j.put)
				n := int64(len(j.put.Body))
				batchBytes += n
				w.taken(n)
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
			if n := len(batch.Puts); n > 0 {
				w.dropped.Add(int64(n))
				w.droppedBytes.Add(batchBytes)
				w.stopErr = fmt.Errorf("cannot write %d cached answers (%d bytes) at shutdown; they are lost: %w", n, batchBytes, err)
			}
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
			if failing {
				// Answers keep arriving while the disk refuses them: hold no more than the bound.
				batchBytes = w.shed(&batch, batchBytes, &shedLog)
			}
			full := soon || len(batch.Puts) >= w.cfg.BatchSize || batchBytes >= w.cfg.MaxPendingBytes/2
			if full && !time.Now().Before(retryAt) {
				soon = false
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

// shedLog keeps the drop log to a line per RetryInterval while a full disk drops answers continuously.
type shedLog struct {
	last           time.Time
	answers, bytes int64 // dropped since the last line
}

// shed drops the oldest waiting answers while more than MaxPendingBytes wait (queued and in batch, whose
// answers hold batchBytes), and the oldest hit counts beyond MaxPendingTouches: a disk that stays full must
// not grow the process without end. It returns the bytes left in batch. Writer goroutine only.
func (w *Writer) shed(batch *db.Batch, batchBytes int64, lg *shedLog) int64 {
	over := w.pendingBytes.Load() - w.cfg.MaxPendingBytes
	drop, freed := 0, int64(0)
	for ; drop < len(batch.Puts) && freed < over; drop++ {
		freed += int64(len(batch.Puts[drop].Body))
	}
	if drop > 0 {
		// slices.Delete also zeroes the vacated tail: a stale pointer there would keep a dropped answer alive.
		batch.Puts = slices.Delete(batch.Puts, 0, drop)
		w.queued.Store(int64(len(batch.Puts)))
		w.pendingBytes.Add(-freed)
		w.dropped.Add(int64(drop))
		w.droppedBytes.Add(freed)
		lg.answers += int64(drop)
		lg.bytes += freed
		if now := time.Now(); now.Sub(lg.last) >= w.cfg.RetryInterval {
			w.log.Error("writes keep failing: dropped the oldest cached answers waiting for the disk (max_pending_bytes)",
				"dropped", lg.answers, "dropped_bytes", lg.bytes, "still_waiting", len(batch.Puts),
				"pending_bytes", w.pendingBytes.Load(), "max_pending_bytes", w.cfg.MaxPendingBytes)
			lg.last, lg.answers, lg.bytes = now, 0, 0
		}
	}
	if over := len(batch.Touches) - w.cfg.MaxPendingTouches; over > 0 {
		batch.Touches = append(batch.Touches[:0], batch.Touches[over:]...)
	}
	return batchBytes - freed
}
