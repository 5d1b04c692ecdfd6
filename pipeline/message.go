package pipeline

import (
	"strconv"
	"sync"
	"time"

	"llmcache/db"
)

// Kind is the route a request came in on; it is part of the cache key. Its values are written into every
// key record, so they are persisted: append new kinds, never reorder or renumber them.
type Kind uint8

const (
	KindChat Kind = iota + 1
	KindCompletion
	KindEmbedding
	KindModels       // GET /v1/models: answered by the models stage, not keyed
	KindResponses    // POST /v1/responses
	KindResponseByID // GET and DELETE /v1/responses/{id}: a stored response found by its id, else the upstream's
	KindPassThrough  // any other route under /v1/: passed through to an endpoint, never cached
	numKinds
)

// NumKinds bounds Kind values, for arrays indexed by route.
const NumKinds = int(numKinds)

// String is the name recorded with entries ("chat", "completion", "embedding", "responses").
func (k Kind) String() string {
	switch k {
	case KindChat:
		return "chat"
	case KindCompletion:
		return "completion"
	case KindEmbedding:
		return "embedding"
	case KindModels:
		return "models"
	case KindResponses:
		return "responses"
	case KindResponseByID:
		return "response_by_id"
	case KindPassThrough:
		return "passthrough"
	}
	return "unknown"
}

// Route names a route in /stats and /metrics labels.
func (k Kind) Route() string {
	switch k {
	case KindChat:
		return "chat"
	case KindCompletion:
		return "completions"
	case KindEmbedding:
		return "embeddings"
	case KindModels:
		return "models"
	case KindResponses:
		return "responses"
	case KindResponseByID:
		return "responses_by_id"
	case KindPassThrough:
		return "passthrough"
	}
	return "other"
}

// path is what is appended to an endpoint's /v1 base URL.
func (k Kind) path() string {
	switch k {
	case KindCompletion:
		return "/completions"
	case KindEmbedding:
		return "/embeddings"
	case KindModels:
		return "/models"
	case KindResponses, KindResponseByID:
		return "/responses"
	}
	return "/chat/completions"
}

// Key is a cache key: the SHA-256 of a request's framed canonical record (see keyer.go).
type Key = db.Key

type headerSpan struct{ nameEnd, valueEnd int }

// Request is the message that carries one client request through the stages.
//
// The front end takes it with Acquire, fills Kind, Body, Controls, Tenant, Pass and the headers to forward
// (AddHeader) — copies: fasthttp's buffers are valid only until its handler returns — hands it to
// Pipeline.Submit and waits on Done. The stage that answers fills Resp and calls finish, after which no
// stage touches it; the front end gives it back with Release once the response is written.
type Request struct {
	Kind     Kind
	Body     []byte // the client's body, owned by the request (reused across requests)
	Controls Controls
	Arrived  time.Time // when the front end received it; stage and upstream queue waits are bounded from here

	// Tenant, set by the front end when client keys are configured, is what the request's key decides
	// about namespaces; nil = no client keys.
	Tenant *Tenant

	// For KindResponseByID, set by the front end: "GET" or "DELETE", the id from the path, and the URL's raw
	// query, passed upstream as it came. Stream is set for a GET with stream=true.
	Method, ResponseID, Query string
	// Pass, for KindPassThrough, is the route and content type the request goes upstream with.
	Pass *PassThrough

	Resp Response

	// Set by the keyer.
	Key      Key
	Thinking Thinking
	Stream   bool // the client asked for "stream": true

	modelStart, modelEnd int       // the raw "model" value in Body
	includeUsage         bool      // stream_options.include_usage: a stream ends with a usage chunk
	items                []embItem // embeddings: each input item and its key; batched completions: each prompt
	embBase64            bool      // embeddings: encoding_format "base64"
	promptN              int       // batched completions: choices per prompt (n)

	stats  *counters // where finish counts the outcome; nil for the pipeline's own requests
	done   chan *Request
	hdrBuf []byte       // names and values of the headers to forward, back to back
	header []headerSpan // where each header ends in hdrBuf
}

// Response is what the front end writes back. Body is never modified after it is set (it may be a cached
// entry shared by many requests), so the front end may send it without copying.
type Response struct {
	Status      int
	Body        []byte
	ContentType string
	Outcome     Outcome // how the request was answered: set once, by the stage that answers
	Cache       string  // X-Cache: HIT, MISS, REFRESH, BYPASS, PARTIAL, STALE; empty when not cacheable
	Source      Source  // X-Cache-Source
	CacheStatus string  // Cache-Status (RFC 9211)
	HasKey      bool    // write X-Cache-Key
	RetryAfter  string
	Items       string      // X-Cache-Items for embeddings: "hits=N misses=M"
	Trimmed     int         // X-Context-Trimmed: messages context trimming dropped from what went upstream
	Err         *Error      // when set, the front end renders it instead of Body
	Live        *LiveReader // when set, the front end streams it (LiveReader.CopyTo) instead of Body
	// DropUsage tells the front end to leave out the usage chunk of a live stream: this client did not ask
	// for usage, but the upstream was asked (so that the stored answer has it), or another client asked.
	DropUsage bool

	tokens int64 // for a hit: the upstream's usage.total_tokens of the stored answer, counted as saved
}

// Source is where an answer came from (X-Cache-Source).
type Source uint8

const (
	SourceNone Source = iota
	SourceMemory
	SourceDB
	SourceUpstream
	SourceCoalesced
	SourceStore // the shared store (backend = "redis"): another instance's answer, or this one's from before
)

func (s Source) String() string {
	switch s {
	case SourceMemory:
		return "memory"
	case SourceDB:
		return "db"
	case SourceUpstream:
		return "upstream"
	case SourceCoalesced:
		return "coalesced"
	case SourceStore:
		return "store"
	}
	return ""
}

var requestPool = sync.Pool{New: func() any { return &Request{done: make(chan *Request, 1)} }}

// Acquire returns an empty Request from a pool; give it back with Release.
func Acquire() *Request { return requestPool.Get().(*Request) }

// Release resets r and returns it to the pool. r must not be used afterwards.
func Release(r *Request) {
	body, hdr, hbuf, items, done := r.Body[:0], r.header[:0], r.hdrBuf[:0], r.items[:0], r.done
	*r = Request{Body: body, header: hdr, hdrBuf: hbuf, items: items, done: done}
	requestPool.Put(r)
}

// AddHeader copies one header to forward upstream into the request's own buffer.
func (r *Request) AddHeader(name, value []byte) {
	r.hdrBuf = append(r.hdrBuf, name...)
	nameEnd := len(r.hdrBuf)
	r.hdrBuf = append(r.hdrBuf, value...)
	r.header = append(r.header, headerSpan{nameEnd: nameEnd, valueEnd: len(r.hdrBuf)})
}

// forwardHeaders copies the headers r forwards upstream: a call outlives a streaming leader's Request.
func (r *Request) forwardHeaders() [][2]string {
	h := make([][2]string, 0, len(r.header))
	start := 0
	for _, s := range r.header {
		h = append(h, [2]string{string(r.hdrBuf[start:s.nameEnd]), string(r.hdrBuf[s.nameEnd:s.valueEnd])})
		start = s.valueEnd
	}
	return h
}

// Done is where the answered request arrives.
func (r *Request) Done() <-chan *Request { return r.done }

// finish counts r's outcome and hands it back to the front end. Nothing may touch r after it.
func (r *Request) finish() {
	if r.stats != nil {
		r.stats.answered(r.Kind, &r.Resp)
	}
	r.done <- r
}

// fail answers r with e.
func (r *Request) fail(e *Error) {
	r.Resp.Status, r.Resp.Err, r.Resp.Outcome = e.Status, e, OutcomeError
	if e.Status == 503 {
		r.Resp.RetryAfter = "1"
	}
	r.finish()
}

// Error is an answer in OpenAI's error shape; the front end renders it as
// {"error":{"message":..,"type":..,"param":..,"code":..}}.
type Error struct {
	Status  int
	Message string
	Type    string
	Param   string // empty renders as null
	Code    string // empty renders as null
}

func (e *Error) Error() string { return strconv.Itoa(e.Status) + " " + e.Message }

func invalidRequest(param, msg string) *Error {
	return &Error{Status: 400, Message: msg, Type: "invalid_request_error", Param: param}
}

func upstreamError(status int, code, msg string) *Error {
	return &Error{Status: status, Type: "server_error", Code: code, Message: msg}
}

// errOverloaded is the answer when a stage stays full past the request's deadline.
var errOverloaded = &Error{Status: 503, Message: "llmcache is overloaded; retry later", Type: "server_error", Code: "overloaded"}

var errQueueTimeout = &Error{Status: 503, Message: "timed out waiting for a free upstream slot (queue_timeout_seconds); retry later", Type: "server_error", Code: "overloaded"}

var errCacheMiss = &Error{Status: 404, Message: "no cached answer for this request and the cache mode is read_only", Type: "invalid_request_error", Code: "cache_miss"}

// Tenant is a client key's say over the namespaces of its requests. The front end makes one per key at
// start and shares it between that key's requests: it is never changed.
type Tenant struct {
	// Namespace is the key's own: every namespace its requests name nests inside it ("team-a/x"), and a
	// request that names none lives in it. "" = the key has none.
	Namespace string
	// Reserved, for a key without a namespace, are the namespaces other keys own: its requests may name
	// neither them nor one nested inside them, which would read those keys' entries.
	Reserved []string
}

// namespace returns the namespace a request of t lives in when it names ns (its X-Cache-Namespace or
// cache.namespace), or a 403 when ns belongs to another key.
func (t *Tenant) namespace(ns string) (string, *Error) {
	switch {
	case t.Namespace != "" && ns == "":
		return t.Namespace, nil
	case t.Namespace != "":
		return t.Namespace + "/" + ns, nil
	}
	for _, r := range t.Reserved {
		if ns == r || (len(ns) > len(r) && ns[len(r)] == '/' && ns[:len(r)] == r) {
			return "", &Error{Status: 403, Type: "invalid_request_error", Param: "namespace", Code: "namespace_forbidden",
				Message: "namespace " + strconv.Quote(ns) + " belongs to another client key"}
		}
	}
	return ns, nil
}
