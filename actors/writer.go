// Package actors holds the long-lived actors: the writer, which alone writes to the store, maintenance, the
// idle flush and the stats sampler. Each is a type whose constructor starts its goroutine and whose Stop
// ends it.
package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/pprof"
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
	// MaxPendingBytes (max_pending_bytes) bounds the bytes of answers waiting for the disk; default 256
	// MiB. While writes fail (a full or read-only disk), past it the oldest waiting answers, queued or in
	// the batch, are dropped, counted and logged. While writes work nothing is dropped: a batch holding
	// half of it is written at once, and Put waits (back-pressure) while the queue alone holds all of it,
	// so a slow write can have up to about two and a half times it waiting (the batch being written, taken
	// from a full queue, and the queue filled again meanwhile).
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
//
// Jobs wait in a slice under a mutex rather than in a channel, so that a Put need not wake the writer
// goroutine: it is woken only when it has something to do now (the first job while it sleeps without a
// timer, a full batch, a sync, a Put about to wait). Waking a sleeping goroutine costs the waker a few
// microseconds; a send on a channel did it for every answer, in the upstream call's goroutine, before its
// client had the answer.
//
// The store's share of the work that needs no transaction (the SQLite store compresses bodies: 15-40 µs a
// 1.3 KB answer of prose) runs on preparer goroutines the writer hands each newly taken slice of puts to, and on the
// writer itself when a flush comes before they are done: neither in the request's goroutine, before its
// answer, nor serially inside the writer's transactions.
type Writer struct {
	cfg   WriterConfig
	store db.Store
	prep  db.Preparer // the store's, if it has one
	log   *slog.Logger
	wg    sync.WaitGroup

	stopOnce sync.Once
	stopErr  error // what the final drain could not write; set by the writer goroutine before it ends

	mu     sync.Mutex
	queue  []job         // guarded by mu: jobs not yet taken by the writer goroutine, in order
	wake   chan struct{} // capacity 1: the writer goroutine has something to do
	space  sync.Cond     // L is &mu; Put and Do wait on it while the queue is full
	closed bool          // guarded by mu: Stop was called
	// idle: the writer goroutine sleeps with nothing waiting and no timer, so the next job must wake it.
	// Guarded by mu.
	idle bool
	// soon: FlushSoon was called since the writer last took the queue. A flag rather than a job, so that a
	// full queue cannot lose it. Guarded by mu.
	soon bool
	// unwritten is the puts queued or in the writer's batch, not yet written or dropped; a Put that finds
	// BatchSize or more wakes the writer. Guarded by mu.
	unwritten int
	// queuedBytes is the bytes of the answers in queue, not yet taken by the writer goroutine: Put adds,
	// the writer goroutine subtracts. Put waits on space while it is at MaxPendingBytes.
	queuedBytes int64 // guarded by mu
	putsWaiting int   // Puts blocked on space; guarded by mu

	preps chan *prepWork // to the preparer goroutines; nil when the store has no Preparer

	// Figures for /stats; written by the writer goroutine only (pendingBytes by Put too).
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
	w := &Writer{cfg: cfg, store: store, log: log, wake: make(chan struct{}, 1)}
	w.space.L = &w.mu
	if w.prep, _ = store.(db.Preparer); w.prep != nil {
		// One preparer fewer than the cores: the writer prepares too when a flush finds work left.
		n := max(1, runtime.GOMAXPROCS(0)-1)
		w.preps = make(chan *prepWork, n)
		for range n {
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				// CPU profiles name each stage's share (bench/misses.sh reports them).
				pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("stage", "compress")))
				for p := range w.preps {
					p.run(w.prep)
				}
			}()
		}
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("stage", "writer")))
		w.loop()
	}()
	return w
}

// signal wakes the writer goroutine unless a wake is already pending. mu need not be held.
func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// enqueue adds j under mu (held) and wakes the writer when it sleeps without a timer or now is set.
func (w *Writer) enqueue(j job, now bool) {
	w.queue = append(w.queue, j)
	if now || w.idle {
		w.idle = false
		w.signal()
	}
}

// waitForRoom waits, mu held, while the queue holds QueueSize jobs (or, for a put of n bytes, while the
// answers queued hold MaxPendingBytes), waking the writer first: it may be sleeping on a timer.
func (w *Writer) waitForRoom(n int64) {
	for !w.closed && (len(w.queue) >= w.cfg.QueueSize ||
		n > 0 && w.queuedBytes > 0 && w.queuedBytes+n > w.cfg.MaxPendingBytes) { // an answer alone larger than the bound still goes when the queue is empty
		w.signal()
		w.putsWaiting++
		w.space.Wait()
		w.putsWaiting--
	}
}

// Put queues e for storage, waiting while the queue is full (QueueSize jobs, or MaxPendingBytes of
// answers): back-pressure, never a drop. e must not be modified afterwards.
func (w *Writer) Put(e *db.Entry) {
	n := int64(len(e.Body))
	w.mu.Lock()
	w.waitForRoom(n)
	if w.closed {
		w.mu.Unlock()
		// A programming error (puts after Stop), but an answer is lost: counted and said.
		w.accepted.Add(1)
		w.dropped.Add(1)
		w.droppedBytes.Add(n)
		w.log.Error("an answer was handed to the writer after it stopped; it is not stored")
		return
	}
	w.queuedBytes += n
	w.unwritten++
	w.pendingBytes.Add(n)
	w.accepted.Add(1) // before it is queued: once Put returns, Pending counts e until it is written or dropped
	w.enqueue(job{put: e}, w.unwritten >= w.cfg.BatchSize || w.pendingBytes.Load() >= w.cfg.MaxPendingBytes/2)
	w.mu.Unlock()
}

// TryTouch queues hit counts without waiting; false means the queue was full and the caller keeps them.
func (w *Writer) TryTouch(t []db.Touch) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || len(w.queue) >= w.cfg.QueueSize {
		return false
	}
	w.enqueue(job{touches: t}, false)
	return true
}

// FlushSoon asks the writer to write what waits now rather than when the batch fills or flush_interval_ms
// passes, without waiting for it: another instance waits for an answer queued here (a flight across
// instances). What waits is still written in one batch, even when the queue is full.
func (w *Writer) FlushSoon() {
	w.mu.Lock()
	w.soon, w.idle = true, false
	w.mu.Unlock()
	w.signal()
}

// Flush returns once everything queued before it is written (or the write failed).
func (w *Writer) Flush() error {
	_, err := w.Do(nil)
	return err
}

// errStopped is what Do returns after Stop.
var errStopped = errors.New("the writer has stopped")

// Do runs fn on the store inside the writer's goroutine after flushing what waits, so that admin and
// maintenance deletes are ordered with inserts. fn may be nil.
func (w *Writer) Do(fn func(db.Store) (int64, error)) (int64, error) {
	done := make(chan syncResult, 1)
	w.mu.Lock()
	w.waitForRoom(0)
	if w.closed {
		w.mu.Unlock()
		return 0, errStopped
	}
	w.enqueue(job{sync: done, fn: fn}, true)
	w.mu.Unlock()
	r := <-done
	return r.n, r.err
}

// Stop writes everything queued, checkpoints the WAL and stops the writer. No Put may follow. It returns
// an error when answers that were waiting could not be written (a full or read-only disk): they are lost,
// and the process should say so with its exit code.
func (w *Writer) Stop() error {
	w.stopOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.space.Broadcast()
		w.mu.Unlock()
		w.signal()
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
		LastBatchSize: w.lastBatch.Load(), Touches: w.touchesDone.Load(),
	}
	s.Pending = w.accepted.Load() - s.Written - s.Dropped
	w.mu.Lock()
	s.QueueDepth = len(w.queue)
	w.mu.Unlock()
	if p := w.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	return s
}

// take hands the writer goroutine every job queued (in spare's place, which it empties for reuse),
// whether FlushSoon was called since the last take, and whether Stop was called. With nothing queued and
// sleep set, the writer is about to sleep with nothing to do and no timer: the next job wakes it.
func (w *Writer) take(spare []job, sleep bool) (jobs []job, soon, closed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	jobs, soon = w.queue, w.soon
	w.queue, w.soon = spare[:0], false
	w.idle = len(jobs) == 0 && !soon && sleep && !w.closed
	for _, j := range jobs {
		if j.put != nil {
			w.queuedBytes -= int64(len(j.put.Body))
		}
	}
	if w.putsWaiting > 0 && len(jobs) > 0 {
		w.space.Broadcast()
	}
	return jobs, soon, w.closed
}

// settled tells Put's accounting that n puts left the writer: written or dropped.
func (w *Writer) settled(n int) {
	w.mu.Lock()
	w.unwritten -= n
	w.mu.Unlock()
}

func (w *Writer) loop() {
	var (
		batch      db.Batch
		batchBytes int64 // bytes of the answers in batch.Puts
		jobs       []job // the last jobs taken; reused
		preps      []*prepWork
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
	// prepared returns once every put in the batch is prepared, preparing itself what no preparer took.
	prepared := func() {
		for _, p := range preps {
			p.run(w.prep)
			<-p.done
		}
		clear(preps)
		preps = preps[:0]
	}
	shed := func() {
		prepared() // a preparer may still be reading an answer shed would drop
		n := len(batch.Puts)
		batchBytes = w.shed(&batch, batchBytes, &shedLog)
		if dropped := n - len(batch.Puts); dropped > 0 {
			w.settled(dropped)
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
		prepared()
		n := len(batch.Puts)
		err := w.write(&batch)
		failing = err != nil
		if err != nil {
			retryAt = time.Now().Add(w.cfg.RetryInterval)
			arm(w.cfg.RetryInterval)
			shed()
			return err
		}
		w.settled(n)
		w.pendingBytes.Add(-batchBytes)
		batchBytes = 0
		retryAt = time.Time{} // writes work again: a full batch need not wait out the last failure's pause
		return nil
	}
	// handle takes one job; a sync job first flushes what came before it, keeping the order.
	handle := func(j job) {
		if j.sync == nil {
			if j.put != nil {
				batch.Puts = append(batch.Puts, j.put)
				batchBytes += int64(len(j.put.Body))
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
		prepared()
		if w.preps != nil {
			close(w.preps)
		}
		if err != nil {
			w.log.Error("cannot write cached answers at shutdown; they are lost", "entries", len(batch.Puts), "err", err)
			if n := len(batch.Puts); n > 0 {
				w.dropped.Add(int64(n))
				w.droppedBytes.Add(batchBytes)
				w.pendingBytes.Add(-batchBytes)
				w.settled(n)
				w.stopErr = fmt.Errorf("cannot write %d cached answers (%d bytes) at shutdown; they are lost: %w", n, batchBytes, err)
			}
		}
		if err := w.store.Checkpoint(); err != nil {
			w.log.Warn("cannot checkpoint the WAL at shutdown", "err", err)
		}
	}
	sleep := false // nothing waits and no timer runs: the next take may leave the writer idle
	for {
		var soonNow, closed bool
		jobs, soonNow, closed = w.take(jobs, sleep)
		if len(jobs) > 0 || soonNow {
			soon = soon || soonNow
			first := len(batch.Puts)
			for _, j := range jobs {
				handle(j)
			}
			clear(jobs) // drop references so written bodies can be collected
			if w.prep != nil && len(batch.Puts) > first {
				preps = append(preps, w.dispatch(batch.Puts[first:]))
			}
			if failing {
				// Answers keep arriving while the disk refuses them: hold no more than the bound.
				shed()
			}
			full := soon || len(batch.Puts) >= w.cfg.BatchSize || batchBytes >= w.cfg.MaxPendingBytes/2
			if full && !time.Now().Before(retryAt) {
				soon = false
				flush()
			} else if len(batch.Puts) > 0 || len(batch.Touches) > 0 {
				arm(w.cfg.FlushInterval)
			}
			sleep = false
			continue // take again: jobs that came meanwhile are handled before sleeping
		}
		if closed {
			shutdown()
			return
		}
		if !sleep {
			// Nothing was queued: take once more marking the writer idle if nothing waits for it, so
			// that a job queued from now on wakes it.
			sleep = !armed && len(batch.Puts) == 0 && len(batch.Touches) == 0
			if sleep {
				continue
			}
		}
		select {
		case <-w.wake:
		case <-timer.C:
			armed = false
			flush()
		}
		sleep = false
	}
}

// prepWork is a slice of puts for the preparers (and the writer) to prepare, each claimed by index so that
// every one is prepared exactly once.
type prepWork struct {
	puts []*db.Entry
	next atomic.Int64 // the next index to claim
	left atomic.Int64 // not yet prepared
	done chan struct{}
}

// dispatch hands a copy of puts (the batch's slice may be shed while they are prepared) to the preparers
// and returns the work, which the writer finishes and waits for before it writes or sheds.
func (w *Writer) dispatch(puts []*db.Entry) *prepWork {
	p := &prepWork{puts: slices.Clone(puts), done: make(chan struct{})}
	p.left.Store(int64(len(puts)))
	for range min(len(puts), cap(w.preps)) {
		select {
		case w.preps <- p:
		default:
		}
	}
	return p
}

// run prepares puts until none is left to claim.
func (p *prepWork) run(prep db.Preparer) {
	for {
		i := p.next.Add(1) - 1
		if i >= int64(len(p.puts)) {
			return
		}
		prep.Prepare(p.puts[i])
		if p.left.Add(-1) == 0 {
			close(p.done)
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
