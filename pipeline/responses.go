package pipeline

import (
	"bytes"
	"net/url"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"

	"llmcache/pipeline/sse"
	"llmcache/pipeline/wire"
)

// The Responses API (POST /v1/responses) is cached like chat: one entry for streamed and non-streamed
// requests, keyed over the body without store and metadata (neither changes the answer). A streamed miss
// passes the upstream's typed events through and stores the response of its response.completed (or
// response.incomplete) event; a streamed hit replays the stored response as typed events. Hits return the
// stored response with its id, so a conversation chained by previous_response_id keys every turn the same
// way and replays from the cache. GET /v1/responses/{id} answers a stored response by its id (the
// response_ids index of the store), else asks the upstream; DELETE /v1/responses/{id} asks the upstream and
// deletes the stored entry.

// responsesKeyFields are the fields left out of a Responses request's key: the usual ones, store and
// metadata, and cache.ignore_fields.
func responsesKeyFields(extra []string) keyFields {
	return newKeyFields(append([]string{"store", "metadata"}, extra...))
}

// responseShape is the part of a response object that decides whether it is worth storing.
type responseShape struct {
	Status *string         `json:"status"`
	Output json.RawMessage `json:"output"`
	Usage  *answerUsage    `json:"usage"`
}

// checkResponse is checkAnswer for the Responses API. A response is worth storing when it is final
// (status "completed", or "incomplete": cut short by max_output_tokens or a content filter, as chat's
// finish_reason "length" is kept) and has output items. A failed, cancelled, queued or in-progress response
// (a background request answers "queued" at once) is passed on and not stored.
func checkResponse(body []byte) (valid, useful bool, tokens int64) {
	var r responseShape
	if err := json.Unmarshal(body, &r); err != nil || !bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{")) {
		return false, false, 0
	}
	if r.Usage != nil {
		tokens = r.Usage.TotalTokens
	}
	final := r.Status == nil || *r.Status == "completed" || *r.Status == "incomplete"
	return true, final && nonEmptyArray(r.Output), tokens
}

// responseID is the "id" of a stored response body; "" when it has none.
func responseID(body []byte) string {
	var r struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(body, &r) != nil {
		return ""
	}
	return r.ID
}

// streamAssembler folds a streamed answer's events into the answer to store.
type streamAssembler interface {
	Event(event []byte) error
	Result() (body []byte, ok bool, reason string)
}

func newStreamAssembler(k Kind) streamAssembler {
	if k == KindResponses {
		return sse.NewResponseAssembler()
	}
	return sse.NewAssembler(sseKind(k))
}

// isStreamEnd reports whether ev is the event that ends a stream of kind k, which the recorder holds back
// until the answer is stored: data: [DONE] for chat and completions, response.completed (or .incomplete,
// or .failed) for the Responses API, whose streams have no [DONE].
func isStreamEnd(k Kind, ev []byte) bool {
	if k == KindResponses {
		return sse.IsResponseEnd(ev)
	}
	data, _, ok := sse.Data(ev)
	return ok && string(bytes.TrimSpace(data)) == "[DONE]"
}

// cutResponseEvent is cutEvent for a Responses stream: an error event typed as the API types its own, with
// the "error" object as well, which is what makes openai-go's stream report it.
var cutResponseEvent = []byte("event: error\ndata: {\"type\":\"error\",\"code\":\"upstream_stream_cut\",\"message\":\"the upstream stream broke off before it finished\",\"param\":null," +
	"\"error\":{\"message\":\"the upstream stream broke off before it finished\",\"type\":\"server_error\",\"param\":null,\"code\":\"upstream_stream_cut\"}}\n\n")

func cutEventFor(k Kind) []byte {
	if k == KindResponses {
		return cutResponseEvent
	}
	return cutEvent
}

// maxResponseIDBytes bounds the id of GET and DELETE /v1/responses/{id}; OpenAI's are about 55 bytes.
const maxResponseIDBytes = 256

// serveResponseByID answers GET and DELETE /v1/responses/{id}.
func (p *Pipeline) serveResponseByID(r *Request) {
	if r.ResponseID == "" || len(r.ResponseID) > maxResponseIDBytes {
		r.fail(invalidRequest("response_id", "the response id must be 1 to "+strconv.Itoa(maxResponseIDBytes)+" bytes"))
		return
	}
	if r.Tenant != nil {
		ns, e := r.Tenant.namespace(r.Controls.Namespace)
		if e != nil {
			r.fail(e)
			return
		}
		r.Controls.Namespace = ns
	}
	stream := r.Stream
	r.Stream = false // a replay is only for an answer from the cache; the upstream's goes as it comes
	if r.Method == "DELETE" {
		p.deleteResponse(r)
		return
	}
	c := &r.Controls
	var pin *endpointState
	if !c.NoCache && c.Mode != ModeWriteOnly && c.Mode != ModeOff {
		m, endpoint, ok := p.lookupResponse(r)
		if !ok {
			return // answered (overloaded)
		}
		if m != nil && p.cfg.usable(c, m.createdAt, m.version, m.endpoint, nowMillis()) && !m.expired(nowMillis()) {
			r.Key, r.Stream = m.key, stream
			// No tokens saved: the upstream would have answered this GET without generating anything.
			if answerStored(r, m.body, m.contentType, SourceDB, 0) {
				p.touch.add(&m.key, nowMillis())
				return
			}
			r.Key, r.Stream = Key{}, false
		}
		pin = p.endpointNamed(endpoint)
	}
	if c.Mode == ModeReadOnly {
		r.Resp.Cache, r.Resp.CacheStatus = "MISS", "llmcache; fwd=miss; detail=read-only"
		r.fail(errNoStoredResponse)
		return
	}
	p.passResponseByID(r, r, pin)
}

var errNoStoredResponse = &Error{Status: 404, Message: "no cached response with this id in this namespace and the cache mode is read_only",
	Type: "invalid_request_error", Param: "response_id", Code: "cache_miss"}

// lookupResponse reads the entry of r's namespace that holds the response r names, through a miss-pool
// worker. An entry not found is looked for once more after the writer has written what waits: a response
// stored a moment ago may not be on disk yet. It returns the entry (nil when there is none) and the
// endpoint that answered it; ok is false when r was answered because the pool stayed full.
func (p *Pipeline) lookupResponse(r *Request) (m *memEntry, endpoint string, ok bool) {
	deadline := r.Arrived.Add(p.cfg.QueueTimeout)
	for attempt := 0; ; attempt++ {
		w := p.misses.acquire(deadline)
		if w == nil {
			r.fail(errOverloaded)
			return nil, "", false
		}
		found, err := w.rd.GetResponse(r.ResponseID, r.Controls.Namespace, &w.entry)
		if err != nil {
			p.stats.dbReadErrors.Add(1)
		}
		if found && err == nil {
			m, endpoint = memEntryOf(w.entry.Key, &w.entry), w.entry.Endpoint
		}
		p.misses.release(w)
		if m != nil || attempt > 0 || p.storer.writer == nil {
			return m, endpoint, true
		}
		p.storer.writer.Do(nil) // a barrier: everything handed to the writer before is on disk after it
	}
}

// endpointNamed is the endpoint of that name, nil when none (or "").
func (p *Pipeline) endpointNamed(name string) *endpointState {
	for _, e := range p.sched.endpoints {
		if name != "" && e.cfg.Name == name {
			return e
		}
	}
	return nil
}

// passResponseByID sends r (GET or DELETE of a response) upstream, to pin when set: the endpoint that
// answered the stored entry holds the response. Another id goes where the scheduler sends any call. The
// answer goes to waiter: r itself, or a request of the pipeline's own that r waits for.
func (p *Pipeline) passResponseByID(r, waiter *Request, pin *endpointState) {
	cl := &call{
		kind: KindResponseByID, method: r.Method, route: "/responses/" + url.PathEscape(r.ResponseID), query: r.Query,
		pin: pin, controls: r.Controls, header: r.forwardHeaders(), enqueued: r.Arrived, waiters: []*Request{waiter},
	}
	if !p.sched.submit(cl) {
		waiter.fail(errOverloaded)
	}
}

// deleteResponse answers DELETE /v1/responses/{id}: the upstream is asked to delete it, then the stored
// entry of r's namespace that holds it is deleted (memory, recent answers and disk, as an admin delete does)
// when the upstream answered 2xx, or 404 (it no longer holds the response: stored with store false, or past
// its retention). Any other answer (401, 5xx, unreachable) leaves the entry. In read_only mode the upstream
// is never asked: the entry is deleted and the answer is OpenAI's deletion object.
func (p *Pipeline) deleteResponse(r *Request) {
	m, endpoint, ok := p.lookupResponse(r)
	if !ok {
		return
	}
	if r.Controls.Mode == ModeReadOnly {
		if m == nil {
			r.Resp.Cache, r.Resp.CacheStatus = "MISS", "llmcache; fwd=miss; detail=read-only"
			r.fail(errNoStoredResponse)
			return
		}
		id, _ := json.Marshal(r.ResponseID)
		r.Resp = Response{Status: 200, Body: []byte(`{"id":` + string(id) + `,"object":"response","deleted":true}`), ContentType: "application/json",
			Cache: "HIT", Source: SourceDB, CacheStatus: "llmcache; hit", Outcome: OutcomeBypass}
		p.deleteEntry(r, m)
		r.finish()
		return
	}
	q := Acquire() // the upstream's answer comes here: r is answered only after the entry is deleted
	q.Kind = KindResponseByID
	p.passResponseByID(r, q, p.endpointNamed(endpoint))
	<-q.Done()
	r.Resp = q.Resp
	Release(q)
	if s := r.Resp.Status; m != nil && r.Resp.Err == nil && (s/100 == 2 || s == 404) {
		p.deleteEntry(r, m)
	}
	r.finish()
}

// deleteEntry deletes m, the entry that holds r's response, and says so in r's answer.
func (p *Pipeline) deleteEntry(r *Request, m *memEntry) {
	r.Key, r.Resp.HasKey = m.key, true
	if n, err := p.Delete(Selection{Keys: []Key{m.key}}); err == nil && n > 0 {
		r.Resp.CacheStatus += "; detail=entry-deleted"
	}
}

// responseByIDURL is the upstream URL of c on ep: the endpoint's base URL with the route joined before its
// own query (Azure's api-version), then the client's query.
func responseByIDURL(ep *endpointState, c *call) string {
	u := wire.RouteURL(ep.cfg.URL, c.route)
	if c.query == "" {
		return u
	}
	if strings.IndexByte(u, '?') >= 0 {
		return u + "&" + c.query
	}
	return u + "?" + c.query
}

// settleByID passes the upstream's answer to a GET or DELETE of a response on as it came, whatever its
// status; nothing is stored.
func settleByID(c *call, ep *endpointState, res *attemptResult, resp *wire.Response, err error) outcome {
	var o outcome
	if err != nil {
		o = failed(ep, res, resp, err)
	} else {
		o = statusOutcome(resp.Status)
		res.resp = Response{Status: resp.Status, Body: resp.Body, ContentType: resp.ContentType, RetryAfter: resp.RetryAfter,
			Source: SourceUpstream, Outcome: OutcomeMiss}
	}
	res.resp.HasKey = false
	if c.method == "DELETE" {
		res.resp.Cache, res.resp.CacheStatus, res.resp.Outcome = "", "llmcache; fwd=request", OutcomeBypass
	} else {
		res.resp.Cache, res.resp.CacheStatus = "MISS", "llmcache; fwd=miss"
	}
	if res.resp.Err != nil || res.resp.Status >= 400 {
		res.resp.Outcome = OutcomeError
	}
	return o
}
