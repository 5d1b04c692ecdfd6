// Package pipeline carries requests through channel-linked stages: keying → memory (sharded LRU actors) →
// hit pool or miss pool (SQLite reads) → dispatcher (flights, limits, endpoint choice, upstream calls) →
// writer actor. Each stage owns its state; see DESIGN.md section 1.
package pipeline

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"llmcache/actors"
	"llmcache/db"
	"llmcache/pipeline/trim"
)

// Pipeline owns every stage goroutine: New starts them, Stop stops them in order.
type Pipeline struct {
	cfg       Config
	store     db.Store
	writer    *actors.Writer
	transport Transport

	keyCh    chan *Request
	shards   []*memShard
	hitCh    chan *Request
	missCh   chan *Request
	dispatch *dispatcher
	models   *modelsActor

	endpointVersion map[string]int64 // immutable after New
	tokenizer       *trim.Tokenizer  // context trimming's; nil when it is off

	keyWG, lookupWG, poolWG, shardWG, modelsWG sync.WaitGroup
	keyQuit, memQuit                           chan struct{}
	stopOnce                                   sync.Once

	stats counters

	// generation counts admin deletes: the dispatcher's recent answers from an older generation are not
	// served, since they may be what was deleted.
	generation atomic.Int64
}

// New checks cfg, opens a read connection per miss-pool worker and starts every stage.
func New(cfg Config, store db.Store, writer *actors.Writer, transport Transport) (*Pipeline, error) {
	cfg.setDefaults()
	if cfg.KeyingWorkers <= 0 {
		cfg.KeyingWorkers = runtime.GOMAXPROCS(0)
	}
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("no api_endpoints configured")
	}
	p := &Pipeline{
		cfg:             cfg,
		store:           store,
		writer:          writer,
		transport:       transport,
		stats:           counters{off: cfg.NoStats},
		keyCh:           make(chan *Request, cfg.StageQueueSize),
		hitCh:           make(chan *Request, cfg.StageQueueSize),
		missCh:          make(chan *Request, cfg.StageQueueSize),
		keyQuit:         make(chan struct{}),
		memQuit:         make(chan struct{}),
		endpointVersion: make(map[string]int64, len(cfg.Endpoints)),
	}
	for _, e := range cfg.Endpoints {
		p.endpointVersion[e.Name] = e.Version
	}
	if cfg.Trim.Enabled {
		// Loaded now (a fraction of a second for o200k_base) rather than on the first long chat.
		tok, err := trim.NewTokenizer(cfg.Trim.Tokenizer)
		if err != nil {
			return nil, fmt.Errorf("context_trim: %w", err)
		}
		p.tokenizer = tok
	}
	readers := make([]db.Reader, cfg.MissPoolSize)
	for i := range readers {
		r, err := store.OpenReader()
		if err != nil {
			for _, o := range readers[:i] {
				o.Close()
			}
			return nil, fmt.Errorf("cannot open read connection %d for the miss pool: %w", i, err)
		}
		readers[i] = r
	}

	p.dispatch = newDispatcher(p)
	p.models = newModelsActor(p)
	p.modelsWG.Add(1)
	go func() {
		defer p.modelsWG.Done()
		p.models.run(p.keyQuit)
	}()
	perShardItems := (cfg.MemoryMaxItems + cfg.MemoryShards - 1) / cfg.MemoryShards
	perShardBytes := cfg.MemoryMaxBytes / int64(cfg.MemoryShards)
	p.shards = make([]*memShard, cfg.MemoryShards)
	for i := range p.shards {
		p.shards[i] = newMemShard(perShardItems, perShardBytes, cfg.StageQueueSize/cfg.MemoryShards+64)
		s := p.shards[i]
		p.lookupWG.Add(1)
		p.shardWG.Add(1)
		go func() {
			defer p.shardWG.Done()
			p.runMemShard(s, p.lookupWG.Done)
		}()
	}
	for range cfg.KeyingWorkers {
		p.keyWG.Add(1)
		go func() {
			defer p.keyWG.Done()
			p.runKeying(newKeyer(&p.cfg))
		}()
	}
	for range cfg.HitPoolSize {
		p.poolWG.Add(1)
		go func() {
			defer p.poolWG.Done()
			p.runHitWorker()
		}()
	}
	for _, rd := range readers {
		p.poolWG.Add(1)
		go func() {
			defer p.poolWG.Done()
			defer rd.Close()
			p.runMissWorker(rd)
		}()
	}
	return p, nil
}

// Submit hands r to the keying stage; its answer arrives on r.Done(). Requests submitted after Stop began are
// never answered (the front end stops first, so this happens only past its shutdown timeout).
func (p *Pipeline) Submit(r *Request) {
	if r.Kind == KindModels {
		if !enqueue(p.models.in, r, r.Arrived.Add(p.cfg.QueueTimeout)) {
			p.overloaded(r)
		}
		return
	}
	if !enqueue(p.keyCh, r, r.Arrived.Add(p.cfg.QueueTimeout)) {
		p.overloaded(r)
	}
}

// Stop waits for every submitted request to be answered and every upstream call to end, then stops the
// stages. The writer is not stopped: its owner stops it after this returns, so that it drains last.
func (p *Pipeline) Stop() {
	p.stopOnce.Do(func() {
		// keyCh is never closed: a handler still running past the front end's shutdown timeout must not
		// panic on a closed channel while the writer has answers to drain.
		close(p.keyQuit)
		p.keyWG.Wait()
		for _, s := range p.shards {
			close(s.lookups)
		}
		p.lookupWG.Wait()
		close(p.hitCh)
		close(p.missCh)
		p.poolWG.Wait()
		p.dispatch.stop()
		p.modelsWG.Wait()
		close(p.memQuit)
		p.shardWG.Wait()
	})
}

// Endpoints returns a snapshot of each endpoint's figures, in configuration order.
func (p *Pipeline) Endpoints() []EndpointCounts {
	out := make([]EndpointCounts, len(p.dispatch.endpoints))
	for i, e := range p.dispatch.endpoints {
		out[i] = e.counts()
	}
	return out
}

// Key is a cache key: the SHA-256 of a request's framed canonical record (DESIGN section 4).
type Key = db.Key

// Selection names the cached answers an admin delete removes: the keys given, or those matching every
// filter set. All alone selects everything.
type Selection struct {
	Keys      []Key
	Namespace *string   // nil: any namespace ("" is the default one)
	Model     string    // the model the client asked for
	OlderThan time.Time // stored before then
	All       bool
}

// Delete removes the answers sel names: from SQLite through the writer (after what waits there, so an
// answer stored just before is deleted too), and from memory: the keys named, or everything when sel filters
// by namespace, model or age, which memory entries do not record (they reload from SQLite on demand).
func (p *Pipeline) Delete(sel Selection) (int64, error) {
	f := db.Filter{Keys: sel.Keys, Namespace: sel.Namespace, Model: sel.Model, All: sel.All}
	if !sel.OlderThan.IsZero() {
		f.OlderThan = sel.OlderThan.UnixMilli()
	}
	n, err := p.writer.Do(func(s db.Store) (int64, error) { return s.Delete(f) })
	p.generation.Add(1)
	all := f.All || f.Namespace != nil || f.Model != "" || f.OlderThan != 0 || f.ExpiredBy != 0 || len(f.Keys) == 0
	var wg sync.WaitGroup
	for _, s := range p.shards {
		wg.Add(1)
		s.purges <- memPurge{keys: f.Keys, all: all, done: wg.Done}
	}
	wg.Wait()
	return n, err
}

func (p *Pipeline) runKeying(k *keyer) {
	for {
		var r *Request
		select {
		case r = <-p.keyCh:
		case <-p.keyQuit:
			// Drain what was submitted before the stop, then end.
			select {
			case r = <-p.keyCh:
			default:
				return
			}
		}
		if e := k.key(r); e != nil {
			p.stats.count(r.Kind, OutcomeError)
			r.fail(e)
			continue
		}
		c := &r.Controls
		if r.Kind == KindEmbedding || !p.cfg.MemoryEnabled || c.NoCache || c.Mode == ModeWriteOnly || c.Mode == ModeOff {
			p.toMissPool(r)
			continue
		}
		s := p.shardFor(&r.Key)
		if !enqueue(s.lookups, r, r.Arrived.Add(p.cfg.QueueTimeout)) {
			p.overloaded(r)
		}
	}
}

// overloaded answers r 503 when a stage queue stayed full past its deadline, and counts the error.
func (p *Pipeline) overloaded(r *Request) {
	p.stats.count(r.Kind, OutcomeError)
	r.fail(errOverloaded)
}

func (p *Pipeline) toHitPool(r *Request) {
	if !enqueue(p.hitCh, r, r.Arrived.Add(p.cfg.QueueTimeout)) {
		p.overloaded(r)
	}
}

func (p *Pipeline) toMissPool(r *Request) {
	if !enqueue(p.missCh, r, r.Arrived.Add(p.cfg.QueueTimeout)) {
		p.overloaded(r)
	}
}

// usable reports whether a stored answer may serve a request with controls c: young enough for its max-age
// and, under cache_override_mode, not below the current cache_version or its endpoint's version.
func (p *Pipeline) usable(c *Controls, createdAt, version int64, endpoint string, now int64) bool {
	if c.MaxAge >= 0 && now-createdAt > c.MaxAge*1000 {
		return false
	}
	if p.cfg.OverrideMode {
		if version < p.cfg.CacheVersion {
			return false
		}
		if v, ok := p.endpointVersion[endpoint]; ok && version < v {
			return false
		}
	}
	return true
}

// enqueue sends r on ch, waiting until deadline when ch is full. The timer is made only on that slow path.
func enqueue[T any](ch chan<- T, v T, deadline time.Time) bool {
	select {
	case ch <- v:
		return true
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case ch <- v:
		return true
	case <-t.C:
		return false
	}
}

func nowMillis() int64 { return time.Now().UnixMilli() }
