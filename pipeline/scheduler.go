package pipeline

import (
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// scheduler is the stage between the miss path and the upstreams: it owns the flights (identical misses
// share one call), the FIFO queue of calls waiting for a slot under max_concurrent_requests and each
// endpoint's own limit, the retries, the endpoints' health and the choice of endpoint.
//
// Its state is guarded by one mutex, held for microseconds by whichever goroutine has something to tell it:
// a request submitting a miss, a caller reporting an attempt's result or a stream going live, and the
// scheduler's clock, which wakes for queue timeouts, retry pauses and endpoints' rests. It was an actor (one
// goroutine, messages in and out); a miss then crossed four goroutine hand-offs before its answer reached
// the client, which cost more at one connection than everything else the proxy does for a miss
// (bench/README.md). Now a non-streamed miss that finds a free slot makes its upstream call in its own
// goroutine (run), and answers itself.
type scheduler struct {
	cfg    *Config
	log    *slog.Logger
	caller *caller
	storer *storer

	mu        sync.Mutex // guards everything below it
	endpoints []*endpointState
	flights   map[Key]*call
	queue     []*call // new calls waiting for a slot, FIFO
	retries   []*call // calls waiting to retry: they go before new ones once their pause is over
	inFlight  int
	recent    recentAnswers
	waiting   int       // requests waiting for a call's answer, leaders and followers
	wakeAt    time.Time // when the clock is set to wake; zero when it is not
	stopping  bool      // stop was called: new calls are refused, drained is closed once none is left
	drained   chan struct{}

	clock         *time.Timer   // fires at wakeAt; its goroutine then settles
	quit          chan struct{} // ends the clock's goroutine
	clockDone     chan struct{}
	inFlightGauge atomic.Int64 // inFlight, readable without the mutex
	queuedGauge   atomic.Int64 // len(queue) + len(retries), likewise
	waitingGauge  atomic.Int64 // waiting, likewise
}

func newScheduler(cfg *Config, c *caller, st *storer) *scheduler {
	s := &scheduler{
		cfg: cfg, log: cfg.Log, caller: c, storer: st,
		flights: make(map[Key]*call),
		recent:  recentAnswers{byKey: make(map[Key]*recentAnswer), grace: cfg.RecentGrace},
		drained: make(chan struct{}), quit: make(chan struct{}), clockDone: make(chan struct{}),
	}
	for i := range cfg.Endpoints {
		s.endpoints = append(s.endpoints, newEndpointState(cfg, i))
	}
	c.report = s
	s.clock = time.NewTimer(time.Hour)
	s.clock.Stop()
	go func() {
		defer close(s.clockDone)
		for {
			select {
			case <-s.clock.C:
				s.mu.Lock()
				s.wakeAt = time.Time{}
				s.settle(time.Now())
				s.mu.Unlock()
			case <-s.quit:
				return
			}
		}
	}()
	return s
}

// submit hands a miss to the scheduler; its waiters are answered from other goroutines. False once the
// scheduler is stopping.
func (s *scheduler) submit(c *call) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.admit(c)
	s.settle(time.Now())
	return true
}

// run is submit for a caller that waits for c's answer anyway (a request's own goroutine): when c is new,
// not streamed, and a slot is free now, its first attempt runs here rather than on a caller goroutine, and
// run returns once it is over (answered, or waiting for a retry). A streamed call never runs here: its
// leader must go back to write the stream while the attempt is still reading it.
func (s *scheduler) run(c *call) bool {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return false
	}
	s.admit(c)
	var mine *attempt
	if !c.stream {
		mine = s.pumpFor(c, time.Now())
	}
	s.settle(time.Now())
	s.mu.Unlock()
	if mine != nil {
		s.completed(s.caller.run(mine))
	}
	return true
}

// completed is a caller telling the scheduler that an attempt is over.
func (s *scheduler) completed(res *attemptResult) {
	s.mu.Lock()
	s.complete(res)
	s.settle(time.Now())
	s.mu.Unlock()
}

// wentLive is a caller telling the scheduler that an attempt's stream reached its first event: streaming
// waiters are answered with it now. It comes before that attempt's completed.
func (s *scheduler) wentLive(ev liveEvent) {
	s.mu.Lock()
	ev.c.trim = ev.trim
	s.goLive(ev.c, ev.live)
	s.settle(time.Now())
	s.mu.Unlock()
}

// storedLive is a caller telling the scheduler that a live stream's answer is stored, before the stream's
// end is released to its clients: from now on an identical request is answered from the recent answers.
func (s *scheduler) storedLive(res *attemptResult) {
	s.mu.Lock()
	now := time.Now()
	s.recent.remember(res.c.key, res, now)
	res.remembered = true
	s.settle(now)
	s.mu.Unlock()
}

// stop waits until every queued and running call has answered its waiters, then ends the clock. Calls
// submitted from then on are refused.
func (s *scheduler) stop() {
	s.mu.Lock()
	s.stopping = true
	s.settle(time.Now())
	s.mu.Unlock()
	<-s.drained
	close(s.quit)
	<-s.clockDone
	s.clock.Stop()
}

// settle is what follows every change: answers past their grace let go, queued calls past their timeout
// answered, waiting calls started while slots allow, the gauges updated and the clock set for the next
// time something must happen with nobody calling in. s.mu must be held.
func (s *scheduler) settle(now time.Time) {
	s.recent.expire(now)
	s.expireQueued(now)
	s.pump(now)
	s.queuedGauge.Store(int64(len(s.queue) + len(s.retries)))
	s.waitingGauge.Store(int64(s.waiting))
	// Only times still ahead: what pump could not start now waits for a slot, and a call's end runs pump
	// again. A clock set for a time already passed would spin.
	at, ok := s.nextWake(now)
	switch {
	case !ok && !s.wakeAt.IsZero():
		s.clock.Stop()
		s.wakeAt = time.Time{}
	case ok && !at.Equal(s.wakeAt):
		s.clock.Reset(at.Sub(now))
		s.wakeAt = at
	}
	if s.stopping && len(s.queue) == 0 && len(s.retries) == 0 && s.inFlight == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
}

// nextWake is the first time after now when the clock must wake the scheduler: the queue head's
// timeout, a retry's pause ending, or, while calls wait, an endpoint's rest or Retry-After ending.
func (s *scheduler) nextWake(now time.Time) (time.Time, bool) {
	var at time.Time
	earlier := func(t time.Time) {
		if t.After(now) && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if len(s.queue) > 0 {
		earlier(s.queue[0].enqueued.Add(s.cfg.QueueTimeout))
	}
	if at, ok := s.recent.nextExpiry(); ok {
		earlier(at) // let go of answers once nobody can use them
	}
	for _, c := range s.retries {
		earlier(c.readyAt)
		earlier(c.readyAt.Add(s.cfg.QueueTimeout))
	}
	if len(s.queue) > 0 || len(s.retries) > 0 {
		for _, e := range s.endpoints {
			if e.health == Ejected {
				earlier(e.ejectedUntil)
			}
			earlier(e.notBefore)
		}
	}
	return at, !at.IsZero()
}

// admit answers c's leader from an answer stored a moment ago, joins it to an identical flight, or queues it.
func (s *scheduler) admit(c *call) {
	r := c.waiters[0]
	if c.coalesce {
		if a := s.recent.get(c.key, time.Now()); a != nil && a.epoch == s.storer.current() && usableNow(s.cfg, a.entry, &r.Controls) {
			if answerStored(r, a.resp.Body, a.resp.ContentType, SourceMemory, a.entry.tokens) {
				return
			}
			// Not replayable as this stream: the request goes upstream like a miss.
		}
		// A streamed flight that ended before this request arrived is over for it: had its answer been
		// stored, the request would have found it. One that stopped recording (too large) takes no one new.
		if f := s.flights[c.key]; f != nil && !(f.live != nil && (f.live.endedBefore(r.Arrived) || !f.live.joinable())) {
			if f.live != nil && r.Stream {
				answerLive(f, r, SourceCoalesced)
				return
			}
			f.waiters = append(f.waiters, r)
			s.waiting++
			return
		}
		s.flights[c.key] = c
	}
	s.queue = append(s.queue, c)
	s.waiting++
}

// expireQueued answers 503 to calls that waited longer than queue_timeout_seconds for a slot. The queue is
// FIFO with one timeout, so expired calls are always at its head. A retry whose pause is over waits for a
// slot as long, then its clients get the last attempt's answer (as when its pause alone would be longer):
// behind calls that hang, it waited without limit.
func (s *scheduler) expireQueued(now time.Time) {
	for len(s.queue) > 0 && !now.Before(s.queue[0].enqueued.Add(s.cfg.QueueTimeout)) {
		c := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.forget(c)
		s.waiting -= len(c.waiters)
		for _, r := range c.waiters {
			r.fail(errQueueTimeout)
		}
	}
	for i := 0; i < len(s.retries); {
		c := s.retries[i]
		if now.Before(c.readyAt.Add(s.cfg.QueueTimeout)) {
			i++
			continue
		}
		s.retries = slices.Delete(s.retries, i, i+1)
		s.finish(c)
	}
}

// pump starts waiting calls, retries whose pause is over first, while the global limit and some endpoint's
// own limit allow, each on a caller goroutine.
func (s *scheduler) pump(now time.Time) { s.pumpFor(nil, now) }

// pumpFor is pump, except that mine's attempt, when it starts, is returned for the caller of pumpFor to run
// instead of going to a caller goroutine.
func (s *scheduler) pumpFor(mine *call, now time.Time) *attempt {
	var own *attempt
	for s.inFlight < s.cfg.MaxConcurrentRequests {
		c, retry := s.next(now)
		if c == nil {
			break
		}
		ep, probe, why := s.pick(c, now)
		if ep == nil && why == saturated {
			break
		}
		if retry {
			s.retries = slices.DeleteFunc(s.retries, func(x *call) bool { return x == c })
		} else {
			s.queue[0] = nil
			s.queue = s.queue[1:]
		}
		if ep == nil {
			s.answerDown(c, now)
			continue
		}
		ep.inFlight++
		ep.inFlightG.Store(int64(ep.inFlight))
		s.inFlight++
		s.inFlightGauge.Store(int64(s.inFlight))
		c.attempts++
		a := &attempt{c: c, ep: ep, probe: probe, n: c.attempts, trim: c.trim, led: c.led, lease: c.lease}
		if c == mine {
			own = a
			continue
		}
		s.caller.start(a)
	}
	return own
}

// next is the call to start next: the retry ready longest, else the queue's head.
func (s *scheduler) next(now time.Time) (c *call, retry bool) {
	for _, r := range s.retries {
		if !r.readyAt.After(now) && (c == nil || r.readyAt.Before(c.readyAt)) {
			c = r
		}
	}
	if c != nil {
		return c, true
	}
	if len(s.queue) > 0 {
		return s.queue[0], false
	}
	return nil, false
}

// answerDown answers c when its pinned endpoint is resting (the models listing asks each endpoint): with
// the last attempt's answer when there was one, else a 502 naming the endpoint.
func (s *scheduler) answerDown(c *call, now time.Time) {
	if c.last == nil {
		e := c.pin
		msg := "endpoint " + e.cfg.Name + " is resting after repeated failures"
		if last := e.lastError.Load(); last != nil {
			msg += " (" + *last + ")"
		}
		c.last = &attemptResult{resp: Response{Status: 502, Err: upstreamError(502, "upstream_unavailable", msg), Outcome: OutcomeError,
			RetryAfter: strconv.Itoa(max(1, int(e.ejectedUntil.Sub(now).Round(time.Second)/time.Second)))}}
	}
	s.finish(c)
}

// goLive answers every streaming waiter of c with its live stream; the others wait for the whole answer.
func (s *scheduler) goLive(c *call, l *LiveStream) {
	c.live = l
	kept := c.waiters[:0]
	for i, r := range c.waiters {
		if r.Stream {
			src := SourceCoalesced
			if i == 0 {
				src = SourceUpstream
			}
			answerLive(c, r, src)
		} else {
			kept = append(kept, r)
		}
	}
	clear(c.waiters[len(kept):])
	s.waiting -= len(c.waiters) - len(kept)
	c.waiters = kept
	l.open()
}

// answerLive answers r with c's live stream.
func answerLive(c *call, r *Request, src Source) {
	cache, status, outcome := missHeaders(&c.controls)
	if src == SourceCoalesced {
		outcome = OutcomeCoalesced
	}
	r.Resp = Response{Status: 200, Live: c.live.join(), ContentType: "text/event-stream", HasKey: true, Cache: cache, Source: src,
		CacheStatus: status, Outcome: outcome, Trimmed: c.trim.dropped, DropUsage: !r.includeUsage && r.Kind != KindResponses}
	r.finish()
}

// complete frees the attempt's slot, settles the endpoint's health, and either schedules a retry or answers
// everyone still waiting.
func (s *scheduler) complete(res *attemptResult) {
	c, ep := res.c, res.ep
	now := time.Now()
	ep.inFlight--
	ep.inFlightG.Store(int64(ep.inFlight))
	s.inFlight--
	s.inFlightGauge.Store(int64(s.inFlight))
	c.last, c.trim = res, res.trim
	c.led, c.lease = res.led, res.lease
	if ra, ok := parseRetryAfter(res.retryAfter, now); ok && res.outcome.failure() {
		// The endpoint asked for a pause: no new call goes to it before then (others may take them). At most
		// eject_seconds, as long as a failing endpoint rests: one "Retry-After: 86400" must not take an
		// endpoint out for a day.
		ep.notBefore = now.Add(min(ra, s.cfg.EjectFor))
	}
	s.settleHealth(c, ep, res.outcome, res.probe, now)
	if res.outcome == outcomeNotSent {
		c.attempts-- // nothing went upstream
		c.minWindow = res.minWindow
		if s.someFits(c.minWindow) {
			// Too long for that endpoint's window, not for another's: go there at once.
			c.readyAt, c.avoid = now, nil
			s.retries = append(s.retries, c)
			return
		}
	}
	if res.outcome.retryable() && !res.cut && c.attempts <= s.cfg.MaxRetries && s.scheduleRetry(c, ep, res.retryAfter, now) {
		return // still in flights: identical requests keep joining it
	}
	if res.stored && c.coalesce && !res.remembered {
		s.recent.remember(c.key, res, now)
	}
	s.finish(c)
}

// scheduleRetry puts c back to wait for another attempt after an exponential pause with jitter. When no
// other endpoint can take it, the failed endpoint's Retry-After is waited for if it is longer. A pause
// longer than the queue timeout is not waited for: the client gets the last answer now.
func (s *scheduler) scheduleRetry(c *call, failed *endpointState, retryAfter string, now time.Time) bool {
	base := s.cfg.RetryBackoff << min(c.attempts-1, 10)
	pause := base/2 + rand.N(base/2+1)
	if ra, ok := parseRetryAfter(retryAfter, now); ok && ra > pause && !s.otherUsable(c, failed, now) {
		pause = ra
	}
	if pause > s.cfg.QueueTimeout {
		return false
	}
	c.readyAt, c.avoid = now.Add(pause), failed
	s.retries = append(s.retries, c)
	return true
}

// finish answers everyone still waiting on c with its last attempt's answer. A streaming waiter of an
// answer that did not go live (a non-streamed leader, or an upstream that answered JSON) gets it replayed
// as SSE; streaming waiters of a live call were answered when it went live.
func (s *scheduler) finish(c *call) {
	s.forget(c)
	if c.lease != nil {
		c.lease.End() // never blocks; a stored answer's lock goes once the writer has written it
	}
	s.waiting -= len(c.waiters)
	res := c.last
	for i, r := range c.waiters {
		r.Resp = res.resp
		// waiters[0] is the leader unless the call went live: streaming waiters were answered then.
		if i > 0 || c.live != nil {
			if r.Resp.Source == SourceUpstream {
				r.Resp.Source = SourceCoalesced
			}
			r.Resp.Outcome = OutcomeCoalesced
		}
		if r.Resp.Err == nil && r.Resp.Status == 200 {
			switch {
			case res.unshared:
				r.Resp = Response{Status: 502, HasKey: true, Err: errTooLargeToShare}
			case r.Stream:
				if body, err := replay(r, res.resp.Body); err != nil {
					r.Resp = Response{Status: 502, HasKey: true, Err: upstreamError(502, "upstream_invalid_response",
						"cannot replay the upstream answer as a stream: "+err.Error())}
				} else {
					r.Resp.Body, r.Resp.ContentType = body, "text/event-stream"
				}
			}
		}
		r.finish()
	}
	c.waiters = nil
}

// errTooLargeToShare answers the waiters of a streamed flight that grew past max_answer_bytes: it was passed
// to its streaming clients without being kept, so there is no whole answer for the others.
var errTooLargeToShare = upstreamError(502, "answer_too_large",
	"the answer is larger than max_answer_bytes: it was streamed to the request that asked first and not kept; retry the request")

// usableNow applies to a recent answer the checks a memory hit gets: expiry (ttl), max-age, versions.
func usableNow(cfg *Config, e *memEntry, ctl *Controls) bool {
	now := nowMillis()
	return !e.expired(now) && cfg.usable(ctl, e.createdAt, e.version, e.endpoint, now)
}

func (s *scheduler) forget(c *call) {
	if s.flights[c.key] == c {
		delete(s.flights, c.key)
	}
}

// httpDate is the preferred HTTP date layout (RFC 9110), net/http's TimeFormat.
const httpDate = "Mon, 02 Jan 2006 15:04:05 GMT"

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil && n >= 0 && n < 1e9 {
		return time.Duration(n * float64(time.Second)), true
	}
	if t, err := time.Parse(httpDate, v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// enqueue sends v on ch, waiting until deadline when ch is full. The timer is made only on that slow path.
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
