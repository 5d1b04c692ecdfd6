package pipeline

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"

	"llmcache/db"
	"llmcache/pipeline/canon"
	"llmcache/pipeline/wire"
)

// call is one upstream call and everyone waiting for it: a flight. waiters[0] is the leader, whose body and
// headers are sent; the others joined while it was queued or in flight.
type call struct {
	key                  db.Key
	kind                 Kind
	body                 []byte // the upstream body before the endpoint's model override
	modelStart, modelEnd int    // the model value in body
	coalesce             bool   // identical requests may join it
	stream               bool   // the leader streams, so the upstream call streams
	enqueued             time.Time
	ep                   *endpointState

	// The leader's settings, copied when the call is made: a streaming leader is answered (and its
	// Request released) long before the call ends.
	controls Controls
	asked    string      // the model the client asked for
	header   [][2]string // the client's headers to forward

	// waiters are the requests not answered yet; only the dispatcher goroutine touches the slice.
	waiters []*Request
	isLive  bool // the dispatcher has answered the streaming waiters with live; later ones join it at once

	live   *LiveStream // set by the call goroutine before it reports the stream started
	resp   Response    // the answer, set by the call goroutine before it reports completion
	stored bool        // resp was handed to the writer, set with resp
	emb    *embCall    // embeddings: the items, the cached vectors and what is asked upstream
	entry  *memEntry   // what was stored (times, version), set with stored

	answeredAt time.Time // when complete ran; for the recent answers
	generation int64     // Pipeline.generation when it was remembered

	// Retries. The call goroutine sets result, retry and retryAfter before reporting done; the dispatcher
	// owns the rest.
	attempt    int            // attempts made
	result     outcome        // of the last attempt
	retry      bool           // the last attempt failed, may be retried, and attempts remain; resp holds its answer meanwhile
	retryAfter string         // the last answer's Retry-After
	avoid      *endpointState // where the last attempt failed: a retry goes elsewhere when it can
	readyAt    time.Time      // when a retry may start
	probe      bool           // this attempt probes an endpoint back from its rest
	minWindow  int            // set when the chat did not fit an endpoint's window: only larger ones may take it

	// Context trimming, by the call goroutine: the body trimmed for a window and model override, kept
	// for retries.
	trimBudget  int
	trimModel   string
	trimBody    []byte
	trimDropped int
}

// dispatcher owns the flights, the FIFO queue of calls waiting for a slot, the endpoints' load and the
// choice of endpoint. Calls run in goroutines of their own so that a 30-second upstream wait holds no worker.
type dispatcher struct {
	p         *Pipeline
	in        chan *call
	started   chan *call // a streamed call went live
	done      chan *call
	endpoints []*endpointState
	flights   map[db.Key]*call
	idle      chan *call    // call goroutines waiting for their next call receive here
	quit      chan struct{} // closed by stop: idle call goroutines end
	queue     []*call       // new calls waiting for a slot, FIFO
	retries   []*call       // calls waiting to retry: they go before new ones once their pause is over

	// recent holds answered flights whose answers were stored, for RecentGrace after they were answered:
	// until the writer has them on disk, a request that missed memory (a dropped or late insert, or the
	// memory layer off) and SQLite would otherwise make a second upstream call for an answer already
	// paid for. recentQ is in answer order, for expiry; at most maxRecent are kept.
	recent   map[db.Key]*call
	recentQ  []*call
	inFlight int
	wg       sync.WaitGroup // the loop and every call goroutine

	inFlightGauge atomic.Int64 // inFlight, readable from other goroutines
	queuedGauge   atomic.Int64 // len(queue) + len(retries), likewise
}

func newDispatcher(p *Pipeline) *dispatcher {
	d := &dispatcher{
		p:       p,
		in:      make(chan *call, p.cfg.StageQueueSize),
		started: make(chan *call, p.cfg.MaxConcurrentRequests),
		done:    make(chan *call, p.cfg.MaxConcurrentRequests),
		flights: make(map[db.Key]*call),
		recent:  make(map[db.Key]*call),
		idle:    make(chan *call),
		quit:    make(chan struct{}),
	}
	for i := range p.cfg.Endpoints {
		e := &p.cfg.Endpoints[i]
		st := &endpointState{cfg: e}
		for _, k := range []Kind{KindChat, KindCompletion, KindEmbedding} {
			st.urls[k] = wire.RouteURL(e.URL, k.path())
		}
		if p.cfg.Trim.Enabled {
			st.window = p.cfg.Trim.MaxContextTokens
			if e.MaxContextTokens > 0 {
				st.window = e.MaxContextTokens
			}
		}
		if e.Model != "" {
			st.modelJSON, _ = json.Marshal(e.Model)
		}
		d.endpoints = append(d.endpoints, st)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.loop()
	}()
	return d
}

// submit hands a miss to the dispatcher, waiting for room until the request's deadline.
func (d *dispatcher) submit(c *call) bool {
	return enqueue(d.in, c, c.waiters[0].Arrived.Add(d.p.cfg.QueueTimeout))
}

// stop ends the dispatcher after every queued and running call has answered, and lets idle call
// goroutines go.
func (d *dispatcher) stop() {
	close(d.in)
	d.wg.Wait()
	close(d.quit)
}

func (d *dispatcher) loop() {
	wake := time.NewTimer(time.Hour)
	wake.Stop()
	in := d.in
	for {
		select {
		case c, ok := <-in:
			if !ok {
				in = nil
				break
			}
			d.admit(c)
		case c := <-d.started:
			d.goLive(c)
		case c := <-d.done:
			d.complete(c)
		case <-wake.C:
		}
		now := time.Now()
		d.expireQueued(now)
		d.pump(now)
		d.queuedGauge.Store(int64(len(d.queue) + len(d.retries)))
		// Only times still ahead: what pump could not start at now waits for a slot, and a call's end
		// (done) runs pump again. Setting the timer for a time already passed would spin the loop.
		if at, ok := d.nextWake(now); ok {
			wake.Reset(at.Sub(now))
		} else {
			wake.Stop()
		}
		if in == nil && len(d.queue) == 0 && len(d.retries) == 0 && d.inFlight == 0 {
			return
		}
	}
}

// nextWake is the first time after now when the loop must look again without a message: the queue head's
// timeout, a retry's pause ending, or, while calls wait, an endpoint's rest or Retry-After ending.
func (d *dispatcher) nextWake(now time.Time) (time.Time, bool) {
	var at time.Time
	earlier := func(t time.Time) {
		if t.After(now) && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if len(d.queue) > 0 {
		earlier(d.queue[0].enqueued.Add(d.p.cfg.QueueTimeout))
	}
	for _, c := range d.retries {
		earlier(c.readyAt)
	}
	if len(d.queue) > 0 || len(d.retries) > 0 {
		for _, e := range d.endpoints {
			if e.health == Ejected {
				earlier(e.ejectedUntil)
			}
			earlier(e.notBefore)
		}
	}
	return at, !at.IsZero()
}

// admit joins c to an identical flight, or queues it as a new one.
func (d *dispatcher) admit(c *call) {
	d.expireRecent(time.Now())
	if c.coalesce {
		f := d.recent[c.key]
		if g := d.flights[c.key]; g != nil && g.isLive && g.live.endedBefore(c.waiters[0].Arrived) && g.stored {
			// Its stream ended before this request arrived and its answer is stored (the call goroutine set
			// stored and resp before ending the stream, and the stream's lock orders that before this read).
			f = g
		}
		if f != nil && f.generation == d.p.generation.Load() && d.usableNow(f.entry, &c.waiters[0].Controls) {
			d.answerRecent(f, c.waiters[0])
			return
		}
		// A streamed flight that ended before this request arrived is over for it (a not-stored answer, or
		// a cut stream, must not reach a later request); its own call replaces it in flights.
		if f := d.flights[c.key]; f != nil && !(f.isLive && f.live.endedBefore(c.waiters[0].Arrived)) {
			r := c.waiters[0]
			r.follower = true
			d.p.stats.count(r.Kind, OutcomeCoalesced)
			if f.isLive && r.Stream {
				d.answerLive(f, r, true)
				return
			}
			f.waiters = append(f.waiters, r)
			return
		}
		d.flights[c.key] = c
	}
	d.queue = append(d.queue, c)
}

// expireQueued answers 503 to calls that waited longer than queue_timeout_seconds for a slot. The queue is
// FIFO with one timeout, so expired calls are always at its head.
func (d *dispatcher) expireQueued(now time.Time) {
	for len(d.queue) > 0 && !now.Before(d.queue[0].enqueued.Add(d.p.cfg.QueueTimeout)) {
		c := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		d.forget(c)
		d.p.stats.count(c.kind, OutcomeError) // once per call: its followers were counted as coalesced
		for _, r := range c.waiters {
			r.fail(errQueueTimeout)
		}
	}
}

// pump starts waiting calls, retries whose pause is over first, while the global limit and some endpoint's
// own limit allow. When every endpoint is ejected and resting, waiting calls are answered at once: waiting
// out the queue timeout would not help.
func (d *dispatcher) pump(now time.Time) {
	for d.inFlight < d.p.cfg.MaxConcurrentRequests {
		c, retry := d.next(now)
		if c == nil {
			return
		}
		ep, probe, why := d.pick(c.avoid, c.minWindow, now)
		if ep == nil && why == saturated {
			return
		}
		if retry {
			d.retries = slices.DeleteFunc(d.retries, func(x *call) bool { return x == c })
		} else {
			d.queue[0] = nil
			d.queue = d.queue[1:]
		}
		if ep == nil {
			d.answerDown(c, now)
			continue
		}
		c.ep, c.probe = ep, probe
		ep.inFlight++
		ep.inFlightG.Store(int64(ep.inFlight))
		d.inFlight++
		d.inFlightGauge.Store(int64(d.inFlight))
		d.wg.Add(1)
		d.startCall(c)
	}
}

// callerIdle is how long a call goroutine waits for the next call before it ends.
const callerIdle = 10 * time.Second

// startCall runs c on a goroutine of its own: an idle one left by an earlier call when there is one (its
// stack has already grown to what fasthttp's client needs: 15-20 µs less per miss at one connection), else
// a new one. Either way a slow upstream holds no worker that other calls need.
func (d *dispatcher) startCall(c *call) {
	select {
	case d.idle <- c:
		return
	default:
	}
	go func() {
		idle := time.NewTimer(callerIdle)
		defer idle.Stop()
		for {
			d.p.run(c)
			d.done <- c
			d.wg.Done()
			idle.Reset(callerIdle)
			select {
			case c = <-d.idle:
			case <-idle.C:
				return
			case <-d.quit:
				return
			}
		}
	}()
}

// next is the call to start next: the retry ready longest, else the queue's head.
func (d *dispatcher) next(now time.Time) (c *call, retry bool) {
	for _, r := range d.retries {
		if !r.readyAt.After(now) && (c == nil || r.readyAt.Before(c.readyAt)) {
			c = r
		}
	}
	if c != nil {
		return c, true
	}
	if len(d.queue) > 0 {
		return d.queue[0], false
	}
	return nil, false
}

// answerDown answers c when no endpoint can take it: with its last attempt's answer when it had one (the
// client sees the upstream's own error), else with a 502 naming the ejected endpoints.
func (d *dispatcher) answerDown(c *call, now time.Time) {
	if c.attempt == 0 {
		var rest time.Duration
		var detail strings.Builder
		for i, e := range d.endpoints {
			if i == 0 || e.ejectedUntil.Sub(now) < rest {
				rest = e.ejectedUntil.Sub(now)
			}
			if i > 0 {
				detail.WriteString("; ")
			}
			detail.WriteString(e.cfg.Name)
			if s := e.lastError.Load(); s != nil {
				detail.WriteString(": " + *s)
			}
		}
		e := &Error{Status: 502, Type: "server_error", Code: "upstream_unavailable",
			Message: "no upstream endpoint can take the request: every endpoint failed repeatedly and is resting (" + detail.String() + ")"}
		c.resp = Response{Status: 502, Err: e, HasKey: true, Cache: "MISS", Source: "upstream", CacheStatus: "llmcache; fwd=miss; detail=upstream-ejected",
			RetryAfter: strconv.Itoa(max(1, int(rest.Round(time.Second)/time.Second)))}
	}
	d.finish(c)
}

// scheduleRetry puts c back to wait for another attempt after an exponential pause with jitter. When no
// other endpoint can take it, the failed endpoint's Retry-After is waited for if it is longer. A pause
// longer than the queue timeout is not waited for: the client gets the last answer now.
func (d *dispatcher) scheduleRetry(c *call, now time.Time) bool {
	base := d.p.cfg.RetryBackoff << min(c.attempt-1, 10)
	pause := base/2 + rand.N(base/2+1)
	if ra, ok := parseRetryAfter(c.retryAfter, now); ok && ra > pause && !d.otherUsable(c.ep, now) {
		pause = ra
	}
	if pause > d.p.cfg.QueueTimeout {
		return false
	}
	c.readyAt, c.avoid = now.Add(pause), c.ep
	d.retries = append(d.retries, c)
	return true
}

// httpDate is the preferred HTTP date layout (RFC 9110), net/http's TimeFormat.
const httpDate = "Mon, 02 Jan 2006 15:04:05 GMT"

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil && n >= 0 {
		return time.Duration(n * float64(time.Second)), true
	}
	if t, err := time.Parse(httpDate, v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// goLive answers every streaming waiter of c with its live stream; the others wait for the whole answer.
func (d *dispatcher) goLive(c *call) {
	if c.isLive {
		return // complete went first (see there)
	}
	c.isLive = true
	kept := c.waiters[:0]
	for _, r := range c.waiters {
		if r.Stream {
			d.answerLive(c, r, r.follower)
		} else {
			kept = append(kept, r)
		}
	}
	clear(c.waiters[len(kept):])
	c.waiters = kept
}

func (d *dispatcher) answerLive(c *call, r *Request, follower bool) {
	cache, status := missHeaders(&c.controls)
	r.Resp = Response{Status: 200, Live: c.live, ContentType: "text/event-stream", HasKey: true, Cache: cache, Source: "upstream", CacheStatus: status,
		Trimmed: c.trimDropped}
	if follower {
		r.Resp.Source = "coalesced"
	}
	r.finish()
}

// complete frees c's slot, applies the attempt's outcome to its endpoint's health, and either schedules a
// retry or answers everyone still waiting on it.
func (d *dispatcher) complete(c *call) {
	// The call goroutine sends on started before done, but the loop's select may take done first: the
	// streaming waiters still get the live stream (with its error event, if it was cut), not c.resp.
	// c.live was set before done was sent.
	if c.live != nil {
		d.goLive(c)
	}
	now := time.Now()
	c.ep.inFlight--
	c.ep.inFlightG.Store(int64(c.ep.inFlight))
	d.inFlight--
	d.inFlightGauge.Store(int64(d.inFlight))
	if ra, ok := parseRetryAfter(c.retryAfter, now); ok && c.result.failure() {
		// The endpoint asked for a pause: no new call goes to it before then (others may take them). At most
		// eject_seconds, as long as a failing endpoint rests: one "Retry-After: 86400" must not take an
		// endpoint out for a day.
		c.ep.notBefore = now.Add(min(ra, d.p.cfg.EjectFor))
	}
	d.settleHealth(c.ep, c.result, c.probe, now)
	if c.result == outcomeNotSent && d.someFits(c.minWindow) {
		// Too long for that endpoint's window, not for another's: go there at once, no attempt spent.
		c.readyAt, c.avoid = now, nil
		d.retries = append(d.retries, c)
		return
	}
	if c.retry {
		c.retry = false
		if d.scheduleRetry(c, now) {
			return // still in flights: identical requests keep joining it
		}
	}
	d.finish(c)
}

// finish answers everyone waiting on c with c.resp. A streaming waiter of an answer that did not go live
// (a non-streamed leader, or an upstream that answered JSON) gets it replayed as SSE.
func (d *dispatcher) finish(c *call) {
	d.forget(c)
	if c.stored && c.coalesce {
		d.remember(c)
	}
	if c.resp.Status != 200 || c.resp.Err != nil {
		d.p.stats.count(c.kind, OutcomeError)
	}
	// waiters[0] is the leader unless the call went live: goLive answered the streaming leader then and
	// left only followers here.
	leader := !c.isLive
	for _, r := range c.waiters {
		r.Resp = c.resp
		if !leader && r.Resp.Source == "upstream" {
			r.Resp.Source = "coalesced"
		}
		leader = false
		if r.Stream && r.Resp.Err == nil && r.Resp.Status == 200 {
			body, err := replay(r, c.resp.Body)
			if err != nil {
				r.Resp = Response{Status: 502, HasKey: true, Err: &Error{Status: 502, Type: "server_error", Code: "upstream_invalid_response",
					Message: "cannot replay the upstream answer as a stream: " + err.Error()}}
			} else {
				r.Resp.Body, r.Resp.ContentType = body, "text/event-stream"
			}
		}
		r.finish()
	}
	c.waiters = nil
}

// usableNow applies to a recent answer the checks a memory hit gets: expiry (ttl), max-age, versions.
func (d *dispatcher) usableNow(e *memEntry, ctl *Controls) bool {
	now := nowMillis()
	if e.expiresAt != 0 && now >= e.expiresAt {
		return false
	}
	return d.p.usable(ctl, e.createdAt, e.version, e.endpoint, now)
}

// answerRecent answers r from f's stored answer, as a memory hit would.
func (d *dispatcher) answerRecent(f *call, r *Request) {
	kind := r.Kind // r belongs to the front end once answered
	if answerHit(r, f.resp.Body, f.resp.ContentType, "memory") {
		d.p.stats.hit(kind, OutcomeMemoryHit, f.entry.tokens)
	} else {
		d.p.stats.count(kind, OutcomeError)
		r.fail(&Error{Status: 502, Type: "server_error", Code: "upstream_invalid_response", Message: "cannot replay the stored answer as a stream"})
	}
}

// maxRecent bounds the recent answers kept by the dispatcher (see dispatcher.recent).
const maxRecent = 8192

func (d *dispatcher) remember(c *call) {
	c.answeredAt = time.Now()
	c.generation = d.p.generation.Load()
	d.recent[c.key] = c
	d.recentQ = append(d.recentQ, c)
	if len(d.recentQ) > maxRecent {
		d.dropRecent()
	}
}

// expireRecent drops the recent answers older than RecentGrace; they are oldest first.
func (d *dispatcher) expireRecent(now time.Time) {
	for len(d.recentQ) > 0 && now.Sub(d.recentQ[0].answeredAt) > d.p.cfg.RecentGrace {
		d.dropRecent()
	}
}

func (d *dispatcher) dropRecent() {
	c := d.recentQ[0]
	d.recentQ[0] = nil
	d.recentQ = d.recentQ[1:]
	if d.recent[c.key] == c {
		delete(d.recent, c.key)
	}
}

func (d *dispatcher) forget(c *call) {
	if d.flights[c.key] == c {
		delete(d.flights, c.key)
	}
}

// run makes one attempt at the upstream call for c and, when the answer is worth keeping, hands it to the
// writer and the memory stage before anyone waiting for the whole answer is told: nothing acknowledged to a
// client is lost. It never touches c.waiters, which the dispatcher goroutine owns.
func (p *Pipeline) run(c *call) {
	ep := c.ep
	body := c.body
	if ep.modelJSON != nil {
		body = withModel(body, c.modelStart, c.modelEnd, ep.modelJSON)
	}
	if p.tokenizer != nil && c.kind == KindChat {
		var e *Error
		if body, e = p.trimFor(c, ep.cfg, body); e != nil {
			// Nothing went upstream: no attempt, no retry, and the endpoint's health is not at stake.
			c.resp = Response{Status: e.Status, Err: e, HasKey: true, Cache: "MISS", Source: "upstream", CacheStatus: "llmcache; fwd=miss; detail=context-too-long"}
			c.result, c.retry = outcomeNotSent, false
			return
		}
	}
	c.attempt++
	ep.calls.Add(1)
	p.stats.upstreamCalls.Add(1)
	if c.attempt > 1 {
		ep.retries.Add(1)
		p.stats.retries.Add(1)
	}
	began := time.Now()
	o := p.attempt(c, body)
	c.resp.Trimmed = c.trimDropped
	detail := ""
	if o != outcomeOK {
		p.stats.upstreamErrors.Add(1)
		detail = "HTTP " + strconv.Itoa(c.resp.Status)
		if c.resp.Err != nil {
			detail = c.resp.Err.Message
		}
	}
	took := time.Since(began)
	ep.recordAttempt(o, took, detail)
	if p.cfg.OnUpstream != nil {
		p.cfg.OnUpstream(ep.cfg.Name, took)
	}
	c.result, c.retryAfter = o, c.resp.RetryAfter
	// A stream that went live reached its clients: another attempt would send them a second answer.
	c.retry = o.retryable() && c.live == nil && c.attempt <= p.cfg.MaxRetries
}

// attempt sends body to c.ep once and settles the answer into c.resp.
func (p *Pipeline) attempt(c *call, body []byte) outcome {
	ep := c.ep
	req := wire.Request{Target: &ep.cfg.Target, Method: "POST", URL: ep.urls[c.kind], Body: body, Header: p.upstreamHeaders(c.header, ep.cfg)}
	if !c.stream {
		var resp wire.Response
		err := p.transport.Do(&req, &resp)
		if c.emb != nil && err == nil && resp.Status == 200 {
			return p.settleEmbedding(c, &resp)
		}
		return p.settle(c, &resp, err)
	}
	rec := &streamRecorder{c: c, started: p.dispatch.started}
	err := p.transport.Stream(&req, rec)
	if c.live == nil {
		// Not an SSE answer (an error status, or an upstream that ignored "stream"): handled whole.
		resp := wire.Response{Status: rec.status, ContentType: rec.contentType, RetryAfter: rec.retryAfter, Body: rec.body}
		if resp.Body == nil {
			resp.Body = []byte{}
		}
		return p.settle(c, &resp, err)
	}
	assembled, ok, reason := rec.asm.Result()
	if err == nil && rec.asmErr != nil {
		err, ok = rec.asmErr, false
	}
	if err == nil && ok && rec.split.Pending() {
		ok, reason = false, "the stream ended inside an event"
	}
	if err != nil || !ok {
		if err != nil {
			reason = err.Error()
		}
		if err == nil && rec.done != nil {
			c.live.end(rec.done) // a whole stream that cannot be stored: its clients still get [DONE]
		} else {
			c.live.end(cutEvent)
		}
		c.resp = Response{Status: 502, HasKey: true, Cache: "MISS", Source: "upstream", CacheStatus: "llmcache; fwd=miss; detail=upstream-stream-cut",
			Err: &Error{Status: 502, Type: "server_error", Code: "upstream_stream_cut", Message: "the upstream stream from " + ep.cfg.Name + " did not finish: " + reason}}
		return outcomeCut
	}
	// Stored before [DONE] reaches the stream's readers (streamRecorder holds it back), so that an identical
	// request sent after [DONE] reached a client finds it.
	o := p.settle(c, &wire.Response{Status: 200, ContentType: "application/json", Body: assembled}, nil)
	c.live.end(rec.done)
	return o
}

// missHeaders gives X-Cache and Cache-Status for an answer fetched upstream under controls ctl.
func missHeaders(ctl *Controls) (cache, status string) {
	switch {
	case ctl.Mode == ModeOff:
		return "BYPASS", "llmcache; fwd=bypass"
	case ctl.NoCache || ctl.Mode == ModeWriteOnly:
		return "REFRESH", "llmcache; fwd=request"
	}
	return "MISS", "llmcache; fwd=miss"
}

// settle turns an upstream answer (or the failure to get one) into c.resp, and stores it when it is worth
// keeping.
func (p *Pipeline) settle(c *call, resp *wire.Response, err error) outcome {
	ep := c.ep
	if err != nil {
		e := &Error{Status: 502, Message: "upstream " + ep.cfg.Name + " unreachable: " + err.Error(), Type: "server_error", Code: "upstream_unreachable"}
		if errors.Is(err, wire.ErrTimeout) {
			e = &Error{Status: 504, Message: "upstream " + ep.cfg.Name + " timed out: " + err.Error(), Type: "server_error", Code: "upstream_timeout"}
		}
		c.resp = Response{Status: e.Status, Err: e, HasKey: true, Cache: "MISS", Source: "upstream", CacheStatus: "llmcache; fwd=miss; detail=upstream-error"}
		if e.Status == 504 {
			return outcomeTimeout
		}
		return outcomeUnreachable
	}
	if resp.Status != 200 {
		c.resp = Response{Status: resp.Status, Body: resp.Body, ContentType: resp.ContentType, RetryAfter: resp.RetryAfter, HasKey: true, Cache: "MISS", Source: "upstream", CacheStatus: "llmcache; fwd=miss; detail=upstream-error"}
		return statusOutcome(resp.Status)
	}
	valid, useful, tokens := checkAnswer(c.kind, resp.Body)
	if !valid {
		e := &Error{Status: 502, Message: "upstream " + ep.cfg.Name + " answered 200 with a body that is not JSON", Type: "server_error", Code: "upstream_invalid_response"}
		c.resp = Response{Status: 502, Err: e, HasKey: true, Cache: "MISS", Source: "upstream", CacheStatus: "llmcache; fwd=miss; detail=upstream-invalid"}
		return outcomeInvalid
	}
	ctl := &c.controls
	store := useful && !ctl.NoStore && ctl.Mode != ModeOff && ctl.Mode != ModeReadOnly
	c.resp = Response{Status: 200, Body: resp.Body, ContentType: resp.ContentType, HasKey: true, Source: "upstream"}
	c.resp.Cache, c.resp.CacheStatus = missHeaders(ctl)
	switch c.resp.Cache {
	case "BYPASS":
		p.stats.count(c.kind, OutcomeBypass)
	case "REFRESH":
		p.stats.count(c.kind, OutcomeRefresh)
	default:
		p.stats.count(c.kind, OutcomeMiss)
	}
	if !store {
		if !useful {
			c.resp.CacheStatus += "; detail=empty"
		}
		return outcomeOK
	}
	c.resp.CacheStatus += "; stored"
	c.stored = true
	now := nowMillis()
	entry := &db.Entry{
		Key:           c.key,
		Body:          resp.Body,
		ContentType:   resp.ContentType,
		Kind:          c.kind.String(),
		Namespace:     ctl.Namespace,
		Model:         c.asked,
		Endpoint:      ep.cfg.Name,
		UpstreamModel: ep.cfg.Model,
		Version:       max(p.cfg.CacheVersion, ep.cfg.Version),
		CreatedAt:     now,
	}
	if entry.UpstreamModel == "" {
		entry.UpstreamModel = entry.Model
	}
	if ctl.TTL > 0 {
		entry.ExpiresAt = now + ctl.TTL*1000
	}
	if p.writer != nil {
		p.writer.Put(entry)
	}
	c.entry = &memEntry{key: c.key, body: resp.Body, contentType: resp.ContentType, endpoint: ep.cfg.Name,
		createdAt: now, expiresAt: entry.ExpiresAt, version: entry.Version, size: int64(len(resp.Body)) + entryOverhead, tokens: tokens}
	p.memInsert(c.entry)
	return outcomeOK
}

func askedModel(r *Request) string {
	if r.modelEnd <= r.modelStart {
		return ""
	}
	s, err := canon.DecodeString(nil, r.Body[r.modelStart:r.modelEnd])
	if err != nil {
		return ""
	}
	return string(s)
}

// clientHeaders copies the headers r forwards upstream.
func clientHeaders(r *Request) [][2]string {
	h := make([][2]string, 0, len(r.header))
	r.visitHeaders(func(name, value []byte) { h = append(h, [2]string{string(name), string(value)}) })
	return h
}

// upstreamHeaders lists what goes upstream: the client's forwarded headers, then api_headers and the
// endpoint's headers (each replacing a client header of the same name), then the endpoint's key, which
// replaces the client's Authorization.
func (p *Pipeline) upstreamHeaders(client [][2]string, ep *Endpoint) [][2]string {
	h := make([][2]string, 0, len(client)+len(p.cfg.Headers)+len(ep.Headers)+1)
	h = append(h, client...)
	set := func(name, value string) {
		for i := range h {
			if equalFold([]byte(h[i][0]), name) {
				h[i][1] = value
				return
			}
		}
		h = append(h, [2]string{name, value})
	}
	for k, v := range p.cfg.Headers {
		set(k, v)
	}
	for k, v := range ep.Headers {
		set(k, v)
	}
	if ep.APIKey != "" {
		set("Authorization", "Bearer "+ep.APIKey)
	}
	return h
}
