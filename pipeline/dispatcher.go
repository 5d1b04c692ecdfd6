package pipeline

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"

	"llmcache/db"
	"llmcache/pipeline/canon"
)

// call is one upstream call and everyone waiting for it: a flight. waiters[0] is the leader, whose body and
// headers are sent; the others joined while it was queued or in flight.
type call struct {
	key                  db.Key
	kind                 Kind
	body                 []byte // the upstream body before the endpoint's model override
	modelStart, modelEnd int    // the model value in body
	coalesce             bool   // identical requests may join it
	enqueued             time.Time
	waiters              []*Request
	ep                   *endpointState

	resp Response // the leader's answer, set by the call goroutine
}

// endpointState is the dispatcher's view of one endpoint; only the dispatcher goroutine touches the
// counters, call goroutines read the immutable fields.
type endpointState struct {
	cfg       *Endpoint
	base      string // URL ending in /v1
	modelJSON []byte // cfg.Model as a JSON string, nil when there is no override
	current   int    // smooth weighted round robin state
	inFlight  int
}

// dispatcher owns the flights, the FIFO queue of calls waiting for a slot, the endpoints' load and the
// choice of endpoint. Calls run in goroutines of their own so that a 30-second upstream wait holds no worker.
type dispatcher struct {
	p         *Pipeline
	in        chan *call
	done      chan *call
	endpoints []*endpointState
	flights   map[db.Key]*call
	queue     []*call
	inFlight  int
	wg        sync.WaitGroup // the loop and every call goroutine

	inFlightGauge atomic.Int64 // inFlight, readable from other goroutines
}

func newDispatcher(p *Pipeline) *dispatcher {
	d := &dispatcher{
		p:       p,
		in:      make(chan *call, p.cfg.StageQueueSize),
		done:    make(chan *call, p.cfg.MaxConcurrentRequests),
		flights: make(map[db.Key]*call),
	}
	for i := range p.cfg.Endpoints {
		e := &p.cfg.Endpoints[i]
		st := &endpointState{cfg: e, base: endpointBase(e.URL)}
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

// stop ends the dispatcher after every queued and running call has answered.
func (d *dispatcher) stop() {
	close(d.in)
	d.wg.Wait()
}

func (d *dispatcher) loop() {
	expiry := time.NewTimer(time.Hour)
	expiry.Stop()
	in := d.in
	for {
		select {
		case c, ok := <-in:
			if !ok {
				in = nil
				break
			}
			d.admit(c)
		case c := <-d.done:
			d.complete(c)
		case <-expiry.C:
			d.expireQueued(time.Now())
		}
		d.pump()
		if len(d.queue) > 0 {
			expiry.Reset(time.Until(d.queue[0].enqueued.Add(d.p.cfg.QueueTimeout)))
		} else {
			expiry.Stop()
		}
		if in == nil && len(d.queue) == 0 && d.inFlight == 0 {
			return
		}
	}
}

// admit joins c to an identical flight, or queues it as a new one.
func (d *dispatcher) admit(c *call) {
	if c.coalesce {
		if f := d.flights[c.key]; f != nil {
			f.waiters = append(f.waiters, c.waiters[0])
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
		for _, r := range c.waiters {
			d.p.stats.errors.Add(1)
			r.fail(errQueueTimeout)
		}
	}
}

// pump starts queued calls while the global limit and some endpoint's own limit allow.
func (d *dispatcher) pump() {
	for len(d.queue) > 0 && d.inFlight < d.p.cfg.MaxConcurrentRequests {
		ep := d.pick()
		if ep == nil {
			return
		}
		c := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		c.ep = ep
		ep.inFlight++
		d.inFlight++
		d.inFlightGauge.Store(int64(d.inFlight))
		// The leader is read here, on the dispatcher goroutine: admit may append followers to c.waiters
		// while the call runs, so the call goroutine must not read that slice.
		leader := c.waiters[0]
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.p.run(c, leader)
			d.done <- c
		}()
	}
}

// pick chooses an endpoint by smooth weighted round robin among those under their own limit. Standby
// endpoints (weight 0) are used only when no endpoint has a weight.
func (d *dispatcher) pick() *endpointState {
	total := 0
	var best *endpointState
	weighted := false
	for _, e := range d.endpoints {
		if e.cfg.Weight > 0 {
			weighted = true
		}
	}
	for _, e := range d.endpoints {
		w := e.cfg.Weight
		if weighted && w == 0 {
			continue
		}
		if !weighted {
			w = 1
		}
		if e.cfg.MaxConcurrent > 0 && e.inFlight >= e.cfg.MaxConcurrent {
			continue
		}
		e.current += w
		total += w
		if best == nil || e.current > best.current {
			best = e
		}
	}
	if best != nil {
		best.current -= total
	}
	return best
}

// complete frees c's slot and answers everyone waiting on it.
func (d *dispatcher) complete(c *call) {
	c.ep.inFlight--
	d.inFlight--
	d.inFlightGauge.Store(int64(d.inFlight))
	d.forget(c)
	for i, r := range c.waiters {
		r.Resp = c.resp
		if i > 0 {
			d.p.stats.coalesced.Add(1)
			if r.Resp.Source == "upstream" {
				r.Resp.Source = "coalesced"
			}
		}
		r.finish()
	}
}

func (d *dispatcher) forget(c *call) {
	if d.flights[c.key] == c {
		delete(d.flights, c.key)
	}
}

// run makes the upstream call for c and, when the answer is worth keeping, hands it to the writer and the
// memory stage before anyone is answered: nothing acknowledged to a client is lost.
//
// leader is c.waiters[0]; run never touches c.waiters, which the dispatcher goroutine appends to meanwhile.
func (p *Pipeline) run(c *call, leader *Request) {
	ep := c.ep
	body := c.body
	if ep.modelJSON != nil {
		body = withModel(body, c.modelStart, c.modelEnd, ep.modelJSON)
	}
	req := UpstreamRequest{Endpoint: ep.cfg, Method: "POST", URL: ep.base + c.kind.path(), Body: body, Header: p.upstreamHeaders(leader, ep.cfg)}
	var resp UpstreamResponse
	p.stats.upstreamCalls.Add(1)
	err := p.transport.Do(&req, &resp)
	if err != nil {
		p.stats.upstreamErrors.Add(1)
		p.stats.errors.Add(1)
		e := &Error{Status: 502, Message: "upstream " + ep.cfg.Name + " unreachable: " + err.Error(), Type: "server_error", Code: "upstream_unreachable"}
		if errors.Is(err, ErrUpstreamTimeout) {
			e = &Error{Status: 504, Message: "upstream " + ep.cfg.Name + " timed out: " + err.Error(), Type: "server_error", Code: "upstream_timeout"}
		}
		c.resp = Response{Status: e.Status, Err: e, HasKey: true, Cache: "MISS", Source: "upstream", CacheStatus: "llmcache; fwd=miss; detail=upstream-error"}
		return
	}
	if resp.Status != 200 {
		p.stats.upstreamErrors.Add(1)
		p.stats.errors.Add(1)
		c.resp = Response{Status: resp.Status, Body: resp.Body, ContentType: resp.ContentType, RetryAfter: resp.RetryAfter, HasKey: true, Cache: "MISS", Source: "upstream", CacheStatus: "llmcache; fwd=miss; detail=upstream-error"}
		return
	}
	valid, useful := checkAnswer(c.kind, resp.Body)
	if !valid {
		p.stats.upstreamErrors.Add(1)
		p.stats.errors.Add(1)
		e := &Error{Status: 502, Message: "upstream " + ep.cfg.Name + " answered 200 with a body that is not JSON", Type: "server_error", Code: "upstream_invalid_response"}
		c.resp = Response{Status: 502, Err: e, HasKey: true, Cache: "MISS", Source: "upstream", CacheStatus: "llmcache; fwd=miss; detail=upstream-invalid"}
		return
	}
	ctl := &leader.Controls
	store := useful && !ctl.NoStore && ctl.Mode != ModeOff && ctl.Mode != ModeReadOnly
	c.resp = Response{Status: 200, Body: resp.Body, ContentType: resp.ContentType, HasKey: true, Source: "upstream"}
	switch {
	case ctl.Mode == ModeOff:
		p.stats.bypasses.Add(1)
		c.resp.Cache, c.resp.CacheStatus = "BYPASS", "llmcache; fwd=bypass"
	case ctl.NoCache || ctl.Mode == ModeWriteOnly:
		p.stats.refreshes.Add(1)
		c.resp.Cache, c.resp.CacheStatus = "REFRESH", "llmcache; fwd=request"
	default:
		p.stats.misses.Add(1)
		c.resp.Cache, c.resp.CacheStatus = "MISS", "llmcache; fwd=miss"
	}
	if !store {
		if !useful {
			c.resp.CacheStatus += "; detail=empty"
		}
		return
	}
	c.resp.CacheStatus += "; stored"
	now := nowMillis()
	entry := &db.Entry{
		Key:           c.key,
		Body:          resp.Body,
		ContentType:   resp.ContentType,
		Kind:          c.kind.String(),
		Namespace:     ctl.Namespace,
		Model:         askedModel(leader),
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
	p.memInsert(&memEntry{key: c.key, body: resp.Body, contentType: resp.ContentType, endpoint: ep.cfg.Name,
		createdAt: now, expiresAt: entry.ExpiresAt, version: entry.Version, size: int64(len(resp.Body)) + entryOverhead})
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

// upstreamHeaders lists what goes upstream: the client's forwarded headers, then api_headers and the
// endpoint's headers (each replacing a client header of the same name), then the endpoint's key, which
// replaces the client's Authorization.
func (p *Pipeline) upstreamHeaders(r *Request, ep *Endpoint) [][2]string {
	h := make([][2]string, 0, len(r.header)+len(p.cfg.Headers)+len(ep.Headers)+1)
	r.visitHeaders(func(name, value []byte) { h = append(h, [2]string{string(name), string(value)}) })
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
