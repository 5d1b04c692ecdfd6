package pipeline

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"llmcache/pipeline/trim"
	"llmcache/pipeline/wire"
)

// caller runs attempts: it splices the endpoint's model override into the body, trims a chat to the
// endpoint's window, sends it through the transport, settles the answer (storing it when it is worth
// keeping, before anyone is told) and reports an attemptResult to the scheduler.
//
// The first attempt of a non-streamed miss that finds a free slot runs in the request's own goroutine, which
// waits for the answer anyway (scheduler.run). Every other attempt (streams, retries, calls that waited in
// the queue) runs on a goroutine of the caller's, so that a 30-second upstream wait holds no worker. A
// goroutine that finished an attempt waits callerIdle for the next one before it ends: its stack has already
// grown to what fasthttp's client needs, which made misses at one connection ~10% faster than a new
// goroutine per attempt (bench/README.md).
type caller struct {
	cfg       *Config
	transport Transport
	storer    *storer
	touch     *touchLog
	stats     *counters
	ctx       context.Context // ends when the pipeline stops: a wait for another instance's flight gives up
	tokenizer *trim.Tokenizer // nil when context trimming is off
	report    reporter        // the scheduler; set by newScheduler
	idle      chan *attempt   // goroutines waiting for their next attempt receive here
	quit      chan struct{}   // closed by stop: idle goroutines end
	wg        sync.WaitGroup  // every goroutine, busy or idle
	// onUpstream, when set, is told of every attempt (from the caller's goroutine); it must not block.
	onUpstream func(endpoint string, took time.Duration)
}

// reporter is what a caller tells about its attempts: a stream going live, its answer stored (before its
// clients read its end), then the attempt's end.
type reporter interface {
	wentLive(liveEvent)
	storedLive(*attemptResult)
	completed(*attemptResult)
}

// callerIdle is how long a caller goroutine waits for the next attempt before it ends.
const callerIdle = 10 * time.Second

func newCaller(ctx context.Context, cfg *Config, t Transport, st *storer, touch *touchLog, stats *counters, tok *trim.Tokenizer) *caller {
	return &caller{ctx: ctx, cfg: cfg, transport: t, storer: st, touch: touch, stats: stats, tokenizer: tok, idle: make(chan *attempt),
		quit: make(chan struct{}), onUpstream: cfg.OnUpstream}
}

// start runs a on an idle goroutine when there is one, else on a new one.
func (cl *caller) start(a *attempt) {
	select {
	case cl.idle <- a:
		return
	default:
	}
	cl.wg.Add(1)
	go func() {
		defer cl.wg.Done()
		idle := time.NewTimer(callerIdle)
		defer idle.Stop()
		for {
			cl.report.completed(cl.run(a))
			idle.Reset(callerIdle)
			select {
			case a = <-cl.idle:
			case <-idle.C:
				return
			case <-cl.quit:
				return
			}
		}
	}()
}

// stop lets idle goroutines go; the scheduler has seen every attempt end before it is called.
func (cl *caller) stop() {
	close(cl.quit)
	cl.wg.Wait()
}

// idleCloser is what a transport offers when it can drop an endpoint's idle connections.
type idleCloser interface{ CloseIdle(t *wire.Target) }

func (cl *caller) closeIdle(t *wire.Target) {
	if ic, ok := cl.transport.(idleCloser); ok {
		ic.CloseIdle(t)
	}
}

// run makes attempt a and returns what it learned.
func (cl *caller) run(a *attempt) *attemptResult {
	c, ep := a.c, a.ep
	res := &attemptResult{c: c, ep: ep, probe: a.probe, trim: a.trim, led: a.led, lease: a.lease}
	if cl.cfg.Flights != nil && !a.led && c.coalesce && c.emb == nil && c.kind != KindModels {
		// The local leader of a flight, before its first call: another instance may have the answer, or be
		// fetching it.
		res.led = true
		if cl.fromStore(a, res) {
			return res
		}
	}
	body := c.body
	if ep.modelJSON != nil {
		body = withModel(body, c.modelStart, c.modelEnd, ep.modelJSON)
	}
	if cl.tokenizer != nil && c.kind == KindChat {
		var e *Error
		if body, e = cl.trimFor(res, ep, body); e != nil {
			res.resp = Response{Status: e.Status, Err: e, HasKey: true, Cache: "MISS", Source: SourceUpstream,
				CacheStatus: "llmcache; fwd=miss; detail=context-too-long", Outcome: OutcomeError}
			res.outcome = outcomeNotSent
			return res
		}
	}
	ep.calls.Add(1)
	cl.stats.upstreamCalls.Add(1)
	if a.n > 1 {
		ep.retries.Add(1)
		cl.stats.retries.Add(1)
	}
	began := time.Now()
	res.outcome = cl.send(a, res, body)
	res.resp.Trimmed = res.trim.dropped
	res.retryAfter = res.resp.RetryAfter
	took := time.Since(began)
	detail := ""
	if res.outcome != outcomeOK {
		cl.stats.upstreamErrors.Add(1)
		detail = "HTTP " + strconv.Itoa(res.resp.Status)
		if res.resp.Err != nil {
			detail = res.resp.Err.Message
		}
	}
	ep.recordAttempt(res.outcome, took, detail)
	if cl.onUpstream != nil {
		cl.onUpstream(ep.cfg.Name, took)
	}
	return res
}

// send sends body to a.ep once and settles the answer into res.
func (cl *caller) send(a *attempt, res *attemptResult, body []byte) outcome {
	c, ep := a.c, a.ep
	if c.pass != nil {
		return cl.sendPass(c, ep, res, body)
	}
	req := wire.Request{Target: &ep.cfg.Target, Method: "POST", URL: ep.urls[c.kind], Body: body, Header: cl.cfg.upstreamHeaders(c.header, ep.cfg)}
	switch c.kind {
	case KindModels:
		req.Method, req.Target, req.Body = "GET", &ep.models, nil
	case KindResponseByID:
		req.Method, req.URL, req.Body = c.method, responseByIDURL(ep, c), nil
	}
	if !c.stream {
		var resp wire.Response
		err := cl.transport.Do(&req, &resp)
		switch {
		case c.kind == KindModels:
			return cl.settleListing(c, ep, res, &resp, err)
		case c.kind == KindResponseByID:
			return settleByID(c, ep, res, &resp, err)
		case c.emb != nil && err == nil && resp.Status == 200:
			return cl.settleEmbedding(c, ep, res, &resp)
		case c.prompts != nil && err == nil && resp.Status == 200:
			return cl.settlePrompts(c, ep, res, &resp)
		}
		return cl.settle(c, ep, res, &resp, err)
	}
	rec := newStreamRecorder(c, cl.report, cl.cfg.MaxAnswerBytes, res.trim)
	err := cl.transport.Stream(&req, rec)
	return cl.settleStream(c, ep, res, rec, err)
}

// trimFor returns body (already carrying ep's model override) cut to fit ep's context window, remembering
// the result so that a retry on an endpoint with the same window does not count again. It runs on the miss
// path only, on the copy that goes upstream: the key was computed from the client's request, so hits never
// tokenize. A request whose kept part alone is too long gets a 400 context_length_exceeded, or goes untrimmed
// with on_overflow = "pass"; before the 400 the scheduler tries the endpoints with larger windows, if any.
func (cl *caller) trimFor(res *attemptResult, ep *endpointState, body []byte) ([]byte, *Error) {
	window := ep.window
	if t := res.trim; t.body != nil && t.window == window && t.model == ep.cfg.Model {
		return t.body, nil // a retry: same window, same model override, same body
	}
	cl.stats.trimRuns.Add(1)
	out, err := trim.Trim(body, trim.Options{MaxContextTokens: window, ReserveOutputTokens: cl.cfg.Trim.ReserveOutputTokens, Tokenizer: cl.tokenizer})
	switch {
	case errors.Is(err, trim.ErrOverflow):
		cl.stats.trimOverflows.Add(1)
		if cl.cfg.Trim.Pass {
			return body, nil
		}
		res.minWindow = window + 1 // the scheduler may find an endpoint with a larger window
		return nil, &Error{Status: 400, Type: "invalid_request_error", Code: "context_length_exceeded", Param: "messages",
			Message: "the messages that must be kept (system and developer messages and the last turn) do not fit the model's context window: " + err.Error()}
	case err != nil:
		// The keyer validated the request; a body trim cannot read goes as it is.
		return body, nil
	}
	if out.Dropped > 0 {
		cl.stats.trimmed.Add(1)
		cl.stats.trimDropped.Add(int64(out.Dropped))
	}
	res.trim = trimmed{window: window, model: ep.cfg.Model, body: out.Body, dropped: out.Dropped}
	return out.Body, nil
}
