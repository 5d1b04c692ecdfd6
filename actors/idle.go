package actors

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"llmcache/db"
)

// IdleConfig holds the idle flush's knobs ([idle_flush] in config.toml).
type IdleConfig struct {
	Timeout       time.Duration // idle_timeout_seconds: quiet time before a flush; default 300 s
	CheckInterval time.Duration // check_interval_seconds: how often quiet time is checked; default 10 s
}

// Activity records when requests last came. The front end calls Touch per request; it writes the shared
// word only when the second changed, so cores do not fight over its cache line.
type Activity struct{ last atomic.Int64 } // unix nanoseconds

// Touch records a request at now.
func (a *Activity) Touch(now time.Time) {
	n := now.UnixNano()
	if n-a.last.Load() > int64(time.Second) {
		a.last.Store(n)
	}
}

func (a *Activity) since(now time.Time) time.Duration { return now.Sub(time.Unix(0, a.last.Load())) }

// IdleFlusher is the actor that, after a quiet spell, writes whatever waits, runs PRAGMA optimize and then
// checkpoints the WAL with TRUNCATE, last, since optimize itself writes to the WAL: a quiet proxy leaves
// an empty WAL behind. NewIdleFlusher starts it; Stop stops it.
type IdleFlusher struct {
	cfg      IdleConfig
	writer   *Writer
	activity *Activity
	log      *slog.Logger
	quit     chan struct{}
	wg       sync.WaitGroup
	runs     atomic.Int64
}

// NewIdleFlusher starts the idle flush over writer, watching activity.
func NewIdleFlusher(cfg IdleConfig, writer *Writer, activity *Activity, log *slog.Logger) *IdleFlusher {
	d := DefaultIdleConfig()
	cfg.Timeout, cfg.CheckInterval = orDefault(cfg.Timeout, d.Timeout), orDefault(cfg.CheckInterval, d.CheckInterval)
	f := &IdleFlusher{cfg: cfg, writer: writer, activity: activity, log: log, quit: make(chan struct{})}
	activity.Touch(time.Now())
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.loop()
	}()
	return f
}

// Runs counts the idle flushes done.
func (f *IdleFlusher) Runs() int64 { return f.runs.Load() }

// Stop ends the actor and waits for it.
func (f *IdleFlusher) Stop() {
	close(f.quit)
	f.wg.Wait()
}

func (f *IdleFlusher) loop() {
	tick := time.NewTicker(f.cfg.CheckInterval)
	defer tick.Stop()
	var flushedAt int64 // the activity mark of the last flush: one flush per quiet spell
	for {
		select {
		case <-f.quit:
			return
		case now := <-tick.C:
			mark := f.activity.last.Load()
			if mark == flushedAt || f.activity.since(now) < f.cfg.Timeout {
				continue
			}
			flushedAt = mark
			_, err := f.writer.Do(func(s db.Store) (int64, error) {
				if err := s.Optimize(); err != nil {
					return 0, err
				}
				return 0, s.Checkpoint()
			})
			f.runs.Add(1)
			if err != nil {
				f.log.Warn("idle flush failed", "err", err)
				continue
			}
			f.log.Debug("idle flush: written, optimized, WAL checkpointed")
		}
	}
}
