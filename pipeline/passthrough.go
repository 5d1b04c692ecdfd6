package pipeline

import (
	"slices"
	"strings"

	"llmcache/pipeline/wire"
)

// Routes the proxy does not cache (moderations, audio, images, rerank...) are passed through, so that a
// client using one more route keeps working through it: the request goes to an endpoint the scheduler
// chooses, with its limits, health, retries and timeouts and the same header rules, its body unchanged
// whatever its content type; the endpoint's answer comes back as it is (status, Content-Type, Retry-After,
// body), never stored and never shared with another request. Such an answer is read whole before it is
// passed on, a streamed one included, within the transports' ceiling on any answer.

// PassThrough is what the front end tells of a request on a route the proxy passes through.
type PassThrough struct {
	Method string
	// Path is the route after /v1, with the client's query string: "/moderations", "/files?purpose=batch".
	Path string
	// ContentType is the client's Content-Type; "" when it sent none (application/json goes upstream then).
	ContentType string
}

// errPassReadOnly answers a request passed through in read_only mode, which never calls an upstream.
var errPassReadOnly = &Error{Status: 404, Type: "invalid_request_error", Code: "cache_miss",
	Message: "this route is passed through to the upstream, and the cache mode is read_only, which never calls it"}

// passThrough hands r, a request on a route passed through, to the scheduler as a call of its own.
func (p *Pipeline) passThrough(r *Request) {
	if r.Controls.Mode == ModeReadOnly {
		// A strict replay must not pay for anything, on any route.
		r.Resp.Cache = "BYPASS"
		r.fail(errPassReadOnly)
		return
	}
	pt := *r.Pass
	c := &call{
		kind: KindPassThrough, pass: &pt,
		// A call owns its body, as every call does: r's is reused once r is answered.
		body:     slices.Clone(r.Body),
		enqueued: r.Arrived, waiters: []*Request{r}, header: r.forwardHeaders(),
	}
	if !p.sched.run(c) {
		r.fail(errOverloaded)
	}
}

// sendPass sends a call passed through to ep once and relays the answer, whatever its status, as BYPASS.
func (cl *caller) sendPass(c *call, ep *endpointState, res *attemptResult, body []byte) outcome {
	req := wire.Request{Target: &ep.cfg.Target, Method: c.pass.Method, URL: passURL(ep.cfg.URL, c.pass.Path), Body: body,
		ContentType: c.pass.ContentType, Header: cl.cfg.upstreamHeaders(c.header, ep.cfg)}
	var resp wire.Response
	if err := cl.transport.Do(&req, &resp); err != nil {
		o := failed(ep, res, &resp, err)
		res.resp.Cache, res.resp.HasKey, res.resp.CacheStatus = "BYPASS", false, "llmcache; fwd=bypass; detail=upstream-error"
		return o
	}
	res.resp = Response{Status: resp.Status, Body: resp.Body, ContentType: resp.ContentType, RetryAfter: resp.RetryAfter,
		Cache: "BYPASS", Source: SourceUpstream, CacheStatus: "llmcache; fwd=bypass", Outcome: OutcomeBypass}
	if resp.Status < 400 {
		return outcomeOK // 201 Created, 204 No Content...: answers like 200, not refusals
	}
	return statusOutcome(resp.Status)
}

// passURL joins a route passed through (with the client's query string) to an endpoint's base URL, after
// the base's own query string (Azure's api-version) when it has one.
func passURL(base, path string) string {
	path, query, _ := strings.Cut(path, "?")
	u := wire.RouteURL(base, path)
	switch {
	case query == "":
		return u
	case strings.Contains(u, "?"):
		return u + "&" + query
	}
	return u + "?" + query
}
