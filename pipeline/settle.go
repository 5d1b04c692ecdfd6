package pipeline

import (
	"errors"
	"strconv"

	"llmcache/db"
	"llmcache/pipeline/wire"
)

// missHeaders gives X-Cache, Cache-Status and the outcome for an answer fetched upstream under controls ctl.
func missHeaders(ctl *Controls) (cache, status string, o Outcome) {
	switch {
	case ctl.Mode == ModeOff:
		return "BYPASS", "llmcache; fwd=bypass", OutcomeBypass
	case ctl.NoCache || ctl.Mode == ModeWriteOnly:
		return "REFRESH", "llmcache; fwd=request", OutcomeRefresh
	}
	return "MISS", "llmcache; fwd=miss", OutcomeMiss
}

// storable reports whether controls ctl let an answer be stored.
func storable(ctl *Controls) bool {
	return !ctl.NoStore && ctl.Mode != ModeOff && ctl.Mode != ModeReadOnly
}

// failed is the answer to an attempt that got no answer (err) or a failing status.
func failed(ep *endpointState, res *attemptResult, resp *wire.Response, err error) outcome {
	if err != nil {
		e := upstreamError(502, "upstream_unreachable", "upstream "+ep.cfg.Name+" unreachable: "+err.Error())
		o := outcomeUnreachable
		if errors.Is(err, wire.ErrTimeout) {
			e, o = upstreamError(504, "upstream_timeout", "upstream "+ep.cfg.Name+" timed out: "+err.Error()), outcomeTimeout
		}
		res.resp = Response{Status: e.Status, Err: e, HasKey: true, Cache: "MISS", Source: SourceUpstream,
			CacheStatus: "llmcache; fwd=miss; detail=upstream-error", Outcome: OutcomeError}
		return o
	}
	res.resp = Response{Status: resp.Status, Body: resp.Body, ContentType: resp.ContentType, RetryAfter: resp.RetryAfter, HasKey: true,
		Cache: "MISS", Source: SourceUpstream, CacheStatus: "llmcache; fwd=miss; detail=upstream-error", Outcome: OutcomeError}
	return statusOutcome(resp.Status)
}

// invalid is the answer to a 200 whose body is not what the route promises.
func invalid(res *attemptResult, msg string) outcome {
	res.resp = Response{Status: 502, Err: upstreamError(502, "upstream_invalid_response", msg), HasKey: true, Cache: "MISS",
		Source: SourceUpstream, CacheStatus: "llmcache; fwd=miss; detail=upstream-invalid", Outcome: OutcomeError}
	return outcomeInvalid
}

// settle turns a whole upstream answer (or the failure to get one) into res.resp, and stores it when it is
// worth keeping: a valid, non-empty answer within max_answer_bytes that the controls let be stored.
func (cl *caller) settle(c *call, ep *endpointState, res *attemptResult, resp *wire.Response, err error) outcome {
	if err != nil || resp.Status != 200 {
		return failed(ep, res, resp, err)
	}
	valid, useful, tokens := checkAnswer(c.kind, resp.Body)
	if !valid {
		return invalid(res, "upstream "+ep.cfg.Name+" answered 200 with a body that is not JSON")
	}
	ctl := &c.controls
	res.resp = Response{Status: 200, Body: resp.Body, ContentType: resp.ContentType, HasKey: true, Source: SourceUpstream}
	res.resp.Cache, res.resp.CacheStatus, res.resp.Outcome = missHeaders(ctl)
	switch {
	case !storable(ctl):
	case !useful:
		res.resp.CacheStatus += "; detail=empty"
	case cl.tooLarge(ep, len(resp.Body)):
		res.resp.CacheStatus += "; detail=too-large"
	default:
		cl.store(c, ep, res, resp.Body, resp.ContentType, tokens)
		res.resp.CacheStatus += "; stored"
	}
	return outcomeOK
}

// tooLarge reports, logs and counts an answer over max_answer_bytes: it is passed on, never stored.
func (cl *caller) tooLarge(ep *endpointState, n int) bool {
	if int64(n) <= cl.cfg.MaxAnswerBytes {
		return false
	}
	cl.stats.tooLarge.Add(1)
	cl.cfg.Log.Warn("answer larger than max_answer_bytes: passed to the client, not stored", "endpoint", ep.cfg.Name,
		"bytes", n, "max_answer_bytes", cl.cfg.MaxAnswerBytes)
	return true
}

// store hands one answer to the storer and records what was stored on res.
func (cl *caller) store(c *call, ep *endpointState, res *attemptResult, body []byte, contentType string, tokens int64) {
	e := cl.entry(c, ep, c.key, body, contentType)
	if res.lease != nil {
		res.lease.Storing() // before the writer has it: its write lets the other instances' followers go
	}
	m := &memEntry{key: c.key, body: body, contentType: contentType, endpoint: ep.cfg.Name, createdAt: e.CreatedAt,
		expiresAt: e.ExpiresAt, version: e.Version, size: int64(len(body)) + entryOverhead, tokens: tokens}
	res.epoch = cl.storer.store(e, m)
	res.stored, res.entry = true, m
}

// entry is the record of an answer of c's that ep gave.
func (cl *caller) entry(c *call, ep *endpointState, key Key, body []byte, contentType string) *db.Entry {
	now := nowMillis()
	ctl := &c.controls
	e := &db.Entry{
		Key: key, Body: body, ContentType: contentType, Kind: c.kind.String(), Namespace: ctl.Namespace,
		Model: c.asked, Endpoint: ep.cfg.Name, UpstreamModel: ep.cfg.Model, CreatedAt: now,
		Version: max(cl.cfg.CacheVersion, ep.cfg.Version), ExpiresAt: expiresAt(now, ctl.TTL),
		Refresh: ctl.NoCache || ctl.Mode == ModeWriteOnly,
	}
	if e.UpstreamModel == "" {
		e.UpstreamModel = e.Model
	}
	if c.kind == KindResponses {
		e.ResponseID = responseID(body)
	}
	return e
}

// settleStream settles a streamed call: an answer that did not go live (an error status, or an upstream that
// ignored "stream") like a whole one; a live one by its assembled answer, stored before [DONE] (a Responses
// stream's response.completed) is released to its readers, so that an identical request sent after [DONE]
// reached a client finds it.
func (cl *caller) settleStream(c *call, ep *endpointState, res *attemptResult, rec *streamRecorder, err error) outcome {
	if rec.live == nil {
		resp := wire.Response{Status: rec.status, ContentType: rec.contentType, RetryAfter: rec.retryAfter, Body: rec.body}
		if resp.Body == nil {
			resp.Body = []byte{}
		}
		return cl.settle(c, ep, res, &resp, err)
	}
	res.cut = true // it reached its clients: another attempt would send them a second answer
	assembled, ok, reason := rec.result()
	if err != nil {
		ok, reason = false, err.Error()
	}
	if !ok {
		if err == nil && rec.done != nil {
			rec.live.end(rec.done) // a whole stream that cannot be assembled: its clients still get [DONE]
		} else {
			rec.live.end(cutEventFor(c.kind))
		}
		res.resp = Response{Status: 502, HasKey: true, Cache: "MISS", Source: SourceUpstream, CacheStatus: "llmcache; fwd=miss; detail=upstream-stream-cut",
			Outcome: OutcomeError, Err: upstreamError(502, "upstream_stream_cut", "the upstream stream from "+ep.cfg.Name+" did not finish: "+reason)}
		return outcomeCut
	}
	if rec.overflowed {
		cl.tooLarge(ep, int(rec.bytes))
		res.unshared = true
		res.resp = Response{Status: 200, HasKey: true, Source: SourceUpstream}
		res.resp.Cache, res.resp.CacheStatus, res.resp.Outcome = missHeaders(&c.controls)
		res.resp.CacheStatus += "; detail=too-large"
		rec.live.end(rec.done)
		return outcomeOK
	}
	o := cl.settle(c, ep, res, &wire.Response{Status: 200, ContentType: "application/json", Body: assembled}, nil)
	if res.stored && c.coalesce {
		// Before [DONE] reaches a client: an identical request it sends at once may find neither memory (off,
		// or evicted) nor SQLite (the writer holds the answer) and must not wait for this attempt's end to be
		// answered from the recent answers.
		cl.report.storedLive(res)
	}
	rec.live.end(rec.done)
	return o
}

// settleListing takes one endpoint's models listing; the models stage merges them.
func (cl *caller) settleListing(c *call, ep *endpointState, res *attemptResult, resp *wire.Response, err error) outcome {
	if err != nil || resp.Status != 200 {
		return failed(ep, res, resp, err)
	}
	if !isModelList(resp.Body) {
		return invalid(res, "endpoint "+ep.cfg.Name+" answered status "+strconv.Itoa(resp.Status)+" without a models list")
	}
	res.resp = Response{Status: 200, Body: resp.Body, ContentType: resp.ContentType, Outcome: OutcomeMiss}
	return outcomeOK
}
