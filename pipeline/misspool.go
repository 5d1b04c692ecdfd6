package pipeline

import (
	"slices"
	"time"

	"llmcache/db"
	"llmcache/pipeline/canon"
)

// runMissWorker owns one read connection. It serves SQLite hits and turns the rest into calls for the
// dispatcher; it never waits on an upstream.
func (p *Pipeline) runMissWorker(rd db.Reader) {
	var (
		entry       db.Entry // reused: Get appends into entry.Body[:0]
		parser, sub canon.Parser
		touches     = newTouchBatcher()
		tick        = time.NewTicker(touchFlushInterval)
	)
	defer tick.Stop()
	for {
		select {
		case r, ok := <-p.missCh:
			if !ok {
				p.flushTouches(&touches)
				return
			}
			p.serveMiss(rd, &entry, &parser, &sub, &touches, r)
		case <-tick.C:
			p.flushTouches(&touches)
		}
	}
}

func (p *Pipeline) serveMiss(rd db.Reader, e *db.Entry, parser, sub *canon.Parser, touches *touchBatcher, r *Request) {
	if r.Kind == KindEmbedding {
		p.serveEmbedding(rd, e, touches, r)
		return
	}
	c := &r.Controls
	if !c.NoCache && c.Mode != ModeWriteOnly && c.Mode != ModeOff && !r.refetch {
		found, err := rd.Get(&r.Key, e)
		if err != nil {
			p.stats.dbReadErrors.Add(1) // a broken read is a miss: the upstream can still answer
		}
		now := nowMillis()
		if found && err == nil && (e.ExpiresAt == 0 || now < e.ExpiresAt) && p.usable(c, e.CreatedAt, e.Version, e.Endpoint, now) {
			body := slices.Clone(e.Body) // e.Body is this worker's buffer; the answer must outlive it
			m := &memEntry{key: r.Key, body: body, contentType: e.ContentType, endpoint: e.Endpoint, createdAt: e.CreatedAt,
				expiresAt: e.ExpiresAt, version: e.Version, size: int64(len(body)) + entryOverhead, tokens: usageTokens(body)}
			p.memInsert(m)
			touches.add(r.Key, now)
			kind := r.Kind // r belongs to the front end once answered
			if answerHit(r, body, e.ContentType, "db") {
				p.stats.hit(kind, OutcomeDBHit, m.tokens)
				return
			}
		}
	}
	if c.Mode == ModeReadOnly {
		p.readOnlyMiss(r)
		return
	}
	body, ms, me, err := p.upstreamBody(parser, sub, r)
	p.dispatchMiss(r, body, ms, me, err, askedModel(r), nil)
}

// readOnlyMiss answers a miss in read_only mode: 404 cache_miss, never an upstream call.
func (p *Pipeline) readOnlyMiss(r *Request) {
	p.stats.count(r.Kind, OutcomeError)
	r.Resp.HasKey, r.Resp.Cache, r.Resp.CacheStatus = true, "MISS", "llmcache; fwd=miss; detail=read-only"
	r.fail(errCacheMiss)
}

// dispatchMiss hands r's upstream call (body, with its model value at [ms, me)) to the dispatcher, or
// answers r when the body could not be prepared (err) or the dispatcher stays full.
func (p *Pipeline) dispatchMiss(r *Request, body []byte, ms, me int, err error, asked string, emb *embCall) {
	if err != nil {
		p.stats.count(r.Kind, OutcomeError)
		r.fail(invalidRequest("", "cannot prepare the upstream request: "+err.Error()))
		return
	}
	c := &r.Controls
	cl := &call{
		key: r.Key, kind: r.Kind, body: body, modelStart: ms, modelEnd: me,
		// A no-store leader would leave its followers, told MISS, with an answer that was never stored.
		coalesce: !c.NoCache && !c.NoStore && c.Mode == ModeReadWrite,
		stream:   r.Stream && emb == nil,
		enqueued: time.Now(), waiters: []*Request{r},
		controls: r.Controls, asked: asked, header: clientHeaders(r), emb: emb,
	}
	if !p.dispatch.submit(cl) {
		p.overloaded(r)
	}
}
