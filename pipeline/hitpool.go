package pipeline

import (
	"time"

	"llmcache/db"
)

// touchFlushInterval is how often pool workers hand their hit counts to the writer. Counting locally and
// handing over a batch keeps the hit path free of a channel send per hit.
const touchFlushInterval = time.Second

// touchBatcher counts hits per key for one pool worker, which alone touches it.
type touchBatcher struct {
	pending map[db.Key]db.Touch
}

func newTouchBatcher() touchBatcher { return touchBatcher{pending: make(map[db.Key]db.Touch)} }

func (t *touchBatcher) add(k db.Key, now int64) {
	v := t.pending[k]
	v.Key = k
	v.Hits++
	v.At = now
	t.pending[k] = v
}

// flush offers the counts to the writer without waiting: a hit must never wait on disk. If the writer is
// busy the counts stay here and go with the next flush.
func (p *Pipeline) flushTouches(t *touchBatcher) {
	if len(t.pending) == 0 || p.writer == nil {
		return
	}
	batch := make([]db.Touch, 0, len(t.pending))
	for _, v := range t.pending {
		batch = append(batch, v)
	}
	if p.writer.TryTouch(batch) {
		clear(t.pending)
	} else {
		p.stats.touchDrops.Add(1)
	}
}

// runHitWorker answers memory hits. It never touches disk or upstream.
func (p *Pipeline) runHitWorker() {
	touches := newTouchBatcher()
	tick := time.NewTicker(touchFlushInterval)
	defer tick.Stop()
	for {
		select {
		case r, ok := <-p.hitCh:
			if !ok {
				p.flushTouches(&touches)
				return
			}
			e := r.entry
			touches.add(e.key, nowMillis())
			kind := r.Kind // r belongs to the front end once answered
			if answerHit(r, e.body, e.contentType, "memory") {
				p.stats.hit(kind, OutcomeMemoryHit, e.tokens)
			} else {
				r.refetch = true
				p.toMissPool(r)
			}
		case <-tick.C:
			p.flushTouches(&touches)
		}
	}
}

// answerHit answers r from a stored answer, replayed as SSE when r streams. It returns false, leaving r
// unanswered, when a stored answer cannot be replayed as a stream: the caller treats that as a miss, whose
// fresh answer replaces the entry.
func answerHit(r *Request, body []byte, contentType, source string) bool {
	if r.Stream {
		sseBody, err := replay(r, body)
		if err != nil {
			return false
		}
		body, contentType = sseBody, "text/event-stream"
	}
	r.Resp = Response{Status: 200, Body: body, ContentType: contentType, Cache: "HIT", Source: source, CacheStatus: "llmcache; hit", HasKey: true}
	r.finish()
	return true
}
