// Package pipeline carries requests through the cache's stages:
//
//	keyer → memory → hit pool (answer)            — inline, in the request's own goroutine
//	               → miss pool (SQLite read, request prepared) → scheduler (flights, queue, limits,
//	                 endpoint health) → caller (attempts, retries, transport) → storer (writer + memory)
//
// Each stage is a type that owns its state. The keyer, memory, hit pool and miss pool run inline in the
// goroutine of the request (a goroutine hand-off per stage cost more than the stage's own work on the hot
// path, bench/README.md). The scheduler is guarded by a mutex rather than run as an actor for the same
// reason: a non-streamed miss that finds a free slot makes its upstream call in its own goroutine too. Other
// attempts (retries, queued calls, streams) run on the caller's goroutines, which report results back to the
// scheduler as values.
package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"llmcache/db"
	"llmcache/pipeline/trim"
)

// Pipeline owns every stage: New starts them, Stop stops them in order.
type Pipeline struct {
	cfg    Config
	keyers *keyers
	mem    *memory
	hits   *hitPool
	misses *missPool
	touch  *touchLog
	storer *storer
	caller *caller
	sched  *scheduler
	models *models
	absent *absentKeys // nil when the store offers no key scan
	stats  counters
	cancel context.CancelFunc // ends waits for other instances' flights at Stop
}

// New checks cfg, opens a read connection per miss-pool slot and starts every stage. store is read through
// the miss pool's connections; every write goes through writer.
func New(cfg Config, store db.Store, writer Writer, transport Transport) (*Pipeline, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	p := &Pipeline{cfg: cfg}
	c := &p.cfg
	p.stats.off = c.NoStats
	var tok *trim.Tokenizer
	if c.Trim.Enabled {
		// Loaded now (a fraction of a second for o200k_base) rather than on the first long chat.
		var err error
		if tok, err = trim.NewTokenizer(c.Trim.Tokenizer); err != nil {
			return nil, fmt.Errorf("context_trim: %w", err)
		}
	}
	var absent *absentKeys
	if ks, ok := store.(db.KeyScanner); ok && writer != nil {
		absent = newAbsentKeys(ks.ScanKeys, func() error { _, err := writer.Do(nil); return err }, c.Log)
	}
	p.absent = absent
	misses, err := newMissPool(store, c.MissPoolSize, absent)
	if err != nil {
		return nil, err
	}
	p.misses = misses
	p.keyers = newKeyers(c)
	p.mem = newMemory(c)
	p.hits = newHitPool(c.HitPoolSize)
	p.touch = newTouchLog(writer, &p.stats)
	p.storer = newStorer(writer, p.mem, absent)
	var ctx context.Context
	ctx, p.cancel = context.WithCancel(context.Background())
	p.caller = newCaller(ctx, c, transport, p.storer, p.touch, &p.stats, tok)
	p.sched = newScheduler(c, p.caller, p.storer)
	p.models = newModels(c, p.sched)
	p.absent.start()
	return p, nil
}

// Submit carries r through the stages; its answer arrives on r.Done(). A hit is answered before Submit
// returns. A miss is answered when its upstream call ends (or its stream starts); Submit may itself make
// that call and return only then, so a caller must be ready to wait on r.Done() and nothing else. A miss
// submitted after Stop began gets a 503 (the front end stops first, so this happens only past its
// shutdown timeout).
func (p *Pipeline) Submit(r *Request) {
	r.stats = &p.stats
	switch r.Kind {
	case KindModels:
		p.models.submit(r)
		return
	case KindResponseByID:
		p.serveResponseByID(r)
		return
	}
	if r.Kind == KindPassThrough {
		p.passThrough(r)
		return
	}
	if e := p.keyers.key(r); e != nil {
		r.fail(e)
		return
	}
	deadline := r.Arrived.Add(p.cfg.QueueTimeout)
	if r.Kind == KindEmbedding {
		p.serveEmbedding(r, deadline)
		return
	}
	if r.Kind == KindCompletion && len(r.items) > 0 {
		p.servePrompts(r, deadline) // a prompt array: cached prompt by prompt
		return
	}
	c := &r.Controls
	lookup := !c.NoCache && c.Mode != ModeWriteOnly && c.Mode != ModeOff
	if lookup {
		// The arrival's clock reading serves the whole hit (whether the entry was fresh when it was asked for):
		// each reading costs ~0.1 µs, a few per cent of a memory hit.
		now := r.Arrived.UnixMilli()
		if e := p.mem.get(&r.Key, now); e != nil && p.cfg.usable(c, e.createdAt, e.version, e.endpoint, now) {
			if !p.hits.acquire(deadline) {
				r.fail(errOverloaded)
				return
			}
			ok := p.answerHit(r, e, SourceMemory, now)
			p.hits.release()
			if ok {
				return
			}
			lookup = false // its stored answer cannot be replayed as a stream: fetch afresh
		}
	}
	w := p.misses.acquire(deadline)
	if w == nil {
		r.fail(errOverloaded)
		return
	}
	if lookup && p.dbHit(w, r) {
		p.misses.release(w)
		return
	}
	if c.Mode == ModeReadOnly {
		p.misses.release(w)
		readOnlyMiss(r)
		return
	}
	body, ms, me, err := p.cfg.upstreamBody(&w.parser, &w.sub, r)
	p.misses.release(w)
	p.dispatch(r, body, ms, me, err, nil, nil)
}

// answerHit answers r from a memory entry, replayed as SSE when r streams (the replay is kept on the
// entry), and counts the hit for the store. It returns false, leaving r unanswered, when the answer cannot
// be replayed as a stream: the caller treats that as a miss, whose fresh answer replaces the entry.
func (p *Pipeline) answerHit(r *Request, e *memEntry, src Source, now int64) bool {
	body, contentType := e.body, e.contentType
	if r.Stream {
		var ok bool
		if body, ok = p.mem.replay(e, r); !ok {
			return false
		}
		contentType = "text/event-stream"
	}
	answered(r, body, contentType, src, e.tokens)
	p.touch.add(&e.key, now)
	return true
}

// replay is e's answer as SSE for r, synthesised once per usage choice and kept on e, counted against the
// memory layer's budget.
func (m *memory) replay(e *memEntry, r *Request) ([]byte, bool) {
	slot := &e.replays[0]
	if r.includeUsage {
		slot = &e.replays[1]
	}
	if b := slot.Load(); b != nil {
		return *b, true
	}
	b, err := replay(r, e.body)
	if err != nil {
		return nil, false
	}
	if cap(b)-len(b) > len(b)/8 {
		// Made in room for the longest replay (five times the body): kept, it would hold and count all of it.
		b = bytes.Clone(b)
	}
	if slot.CompareAndSwap(nil, &b) { // two first hits may both make it: one is kept and counted
		m.keepReplay(e)
	}
	return b, true
}

// answerStored answers r with a stored body (replayed as SSE when r streams); false when it cannot be.
func answerStored(r *Request, body []byte, contentType string, src Source, tokens int64) bool {
	if r.Stream {
		sseBody, err := replay(r, body)
		if err != nil {
			return false
		}
		body, contentType = sseBody, "text/event-stream"
	}
	answered(r, body, contentType, src, tokens)
	return true
}

// answered answers r with a stored body as a hit from src.
func answered(r *Request, body []byte, contentType string, src Source, tokens int64) {
	o := OutcomeMemoryHit
	if src == SourceDB || src == SourceStore {
		o = OutcomeDBHit
	}
	r.Resp = Response{Status: 200, Body: body, ContentType: contentType, Cache: "HIT", Source: src, CacheStatus: "llmcache; hit",
		HasKey: true, Outcome: o, tokens: tokens}
	r.finish()
}

// dbHit looks r up in SQLite with w's connection and answers it when a usable entry is there, putting the
// entry in memory on the way.
func (p *Pipeline) dbHit(w *missWorker, r *Request) bool {
	epoch := p.storer.current()
	e, found := w.get(&r.Key, &p.stats)
	now := nowMillis()
	if !found || (e.ExpiresAt != 0 && now >= e.ExpiresAt) || !p.cfg.usable(&r.Controls, e.CreatedAt, e.Version, e.Endpoint, now) {
		return false
	}
	m := memEntryOf(r.Key, e)
	m.tokens = usageTokens(m.body)
	if !p.answerHit(r, m, p.cfg.storeSource(), now) {
		return false
	}
	p.storer.remember(m, epoch)
	return true
}

// readOnlyMiss answers a miss in read_only mode: 404 cache_miss, never an upstream call.
func readOnlyMiss(r *Request) {
	r.Resp.HasKey, r.Resp.Cache, r.Resp.CacheStatus = true, "MISS", "llmcache; fwd=miss; detail=read-only"
	r.fail(errCacheMiss)
}

// dispatch hands r's upstream call (body, with its model value at [ms, me)) to the scheduler, or answers r
// when the body could not be prepared (err) or the scheduler stays full. emb or prompts carry what a
// request cached item by item (embeddings, batched completions) found in the cache.
func (p *Pipeline) dispatch(r *Request, body []byte, ms, me int, err error, emb *embCall, prompts *promptCall) {
	if err != nil {
		r.fail(invalidRequest("", "cannot prepare the upstream request: "+err.Error()))
		return
	}
	c := &r.Controls
	stream := r.Stream && emb == nil && prompts == nil
	cl := &call{
		key: r.Key, kind: r.Kind, body: body, modelStart: ms, modelEnd: me,
		// A no-store leader would leave its followers, told MISS, with an answer that was never stored.
		coalesce: !c.NoCache && !c.NoStore && c.Mode == ModeReadWrite,
		stream:   stream,
		enqueued: r.Arrived, waiters: []*Request{r},
		controls: r.Controls, asked: askedModel(r), header: r.forwardHeaders(), emb: emb, prompts: prompts,
	}
	if !p.sched.run(cl) {
		r.fail(errOverloaded)
	}
}

// Stop waits for every submitted request to be answered and every upstream call to end, then stops the
// stages. The writer is not stopped: its owner stops it after this returns, so that it drains last.
func (p *Pipeline) Stop() {
	p.cancel() // a miss waiting for another instance's flight goes upstream now
	p.models.stop()
	p.sched.stop()
	p.caller.stop()
	p.touch.stop()
	p.absent.stop()
	p.misses.close()
}

// Selection names the cached answers an admin delete removes: the keys given, or those matching every
// filter set. All alone selects everything.
type Selection struct {
	Keys      []Key
	Namespace *string   // nil: any namespace ("" is the default one)
	Model     string    // the model the client asked for
	OlderThan time.Time // stored before then
	All       bool
}

// Delete removes the answers sel names from SQLite (after what waits in the writer, so that an answer
// stored just before is deleted too) and from memory, ordered with every store: once it returns, no
// request is answered with what it deleted.
func (p *Pipeline) Delete(sel Selection) (int64, error) {
	f := db.Filter{Keys: sel.Keys, Namespace: sel.Namespace, Model: sel.Model, All: sel.All}
	if !sel.OlderThan.IsZero() {
		f.OlderThan = sel.OlderThan.UnixMilli()
	}
	if !f.All && len(f.Keys) == 0 && f.Namespace == nil && f.Model == "" && f.OlderThan == 0 {
		return 0, errors.New("a delete must name keys or a filter")
	}
	return p.storer.delete(f)
}

// Counts returns a snapshot of the counters.
func (p *Pipeline) Counts() Counts {
	s := &p.stats
	c := Counts{
		TokensSaved: s.tokensSaved.Load(), UpstreamCalls: s.upstreamCalls.Load(), UpstreamErrors: s.upstreamErrors.Load(),
		Retries: s.retries.Load(), UpstreamInFlight: p.sched.inFlightGauge.Load(), Queued: p.sched.queuedGauge.Load(),
		Waiting:    p.sched.waitingGauge.Load(),
		TouchDrops: s.touchDrops.Load(), DBReadErrors: s.dbReadErrors.Load(), TooLarge: s.tooLarge.Load(),
		ReadsSkipped: p.absent.skippedReads(), KeyFilter: p.absent.state(),
		TrimRuns: s.trimRuns.Load(), Trimmed: s.trimmed.Load(), TrimDropped: s.trimDropped.Load(), TrimOverflows: s.trimOverflows.Load(),
	}
	for k := range s.requests {
		for o := range s.requests[k] {
			c.Requests[k][o] = s.requests[k][o].Load()
		}
	}
	c.MemoryEntries, c.MemoryBytes = p.mem.size()
	return c
}

// Endpoints returns a snapshot of each endpoint's figures, in configuration order.
func (p *Pipeline) Endpoints() []EndpointCounts {
	out := make([]EndpointCounts, len(p.sched.endpoints))
	for i, e := range p.sched.endpoints {
		out[i] = e.counts()
	}
	return out
}
