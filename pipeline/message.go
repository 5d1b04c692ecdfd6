package pipeline

import (
	"strconv"
	"sync"
	"time"

	"llmcache/db"
)

// Kind is the route a request came in on; it is part of the cache key.
type Kind uint8

const (
	KindChat Kind = iota + 1
	KindCompletion
	KindEmbedding
	KindModels // GET /v1/models: answered by the models actor, not keyed
)

// String is the name recorded with entries ("chat", "completion", "embedding").
func (k Kind) String() string {
	switch k {
	case KindChat:
		return "chat"
	case KindCompletion:
		return "completion"
	case KindEmbedding:
		return "embedding"
	}
	return "unknown"
}

// path is what is appended to an endpoint's /v1 base URL.
func (k Kind) path() string {
	switch k {
	case KindCompletion:
		return "/completions"
	case KindEmbedding:
		return "/embeddings"
	}
	return "/chat/completions"
}

type headerSpan struct{ nameEnd, valueEnd int }

// Controls are the per-request cache controls (DESIGN section 3), from headers and the body's "cache" object.
type Controls struct {
	Mode      Mode
	NoCache   bool  // skip the lookup, fetch fresh, store (REFRESH)
	NoStore   bool  // do not store this answer
	MaxAge    int64 // seconds; accept only entries younger than this; <0 = no limit
	TTL       int64 // seconds; 0 = never expires
	Namespace string
	Sample    int64
}

// Request is the message that carries one client request through the stages.
//
// The front end takes it with Acquire, fills Kind, Body, Controls and the headers to forward (AddHeader) (copies: fasthttp's buffers are
// valid only until its handler returns), hands it to Pipeline.Submit and waits on Done. The stage that
// answers fills Resp and sends the request on Done; after that no stage touches it, and the front end
// gives it back with Release once the response is written.
type Request struct {
	Kind     Kind
	Body     []byte // the client's body, owned by the request (reused across requests)
	Controls Controls
	Stream   bool      // the client asked for "stream": true
	Arrived  time.Time // when the front end received it; stage and upstream queue waits are bounded from here

	// Tenant, set by the front end when client keys are configured, is what the request's key decides
	// about namespaces; nil = no client keys.
	Tenant *Tenant

	Resp Response

	// Set by the keying stage.
	Key      db.Key
	Thinking Thinking

	modelStart, modelEnd int       // the raw "model" value in Body
	hasCacheObject       bool      // the body has a "cache" object, removed before forwarding
	includeUsage         bool      // stream_options.include_usage: a replayed stream ends with a usage chunk
	follower             bool      // joined another request's flight (X-Cache-Source: coalesced)
	refetch              bool      // its stored answer could not be replayed: skip the lookup, fetch afresh
	items                []embItem // embeddings: each input item and its key
	embBase64            bool      // embeddings: encoding_format "base64"

	done   chan *Request
	hdrBuf []byte       // names and values of the headers to forward, back to back
	header []headerSpan // where each header ends in hdrBuf
	entry  *memEntry    // the entry found by the memory stage, for the hit pool
}

// Response is what the front end writes back. Body is never modified after it is set (it may be a cached
// entry shared by many requests), so the front end may send it without copying.
type Response struct {
	Status      int
	Body        []byte
	ContentType string
	Cache       string // X-Cache: HIT, MISS, REFRESH, BYPASS; empty when the answer is not cacheable
	Source      string // X-Cache-Source: memory, db, upstream, coalesced
	CacheStatus string // Cache-Status (RFC 9211)
	HasKey      bool   // write X-Cache-Key
	RetryAfter  string
	Items       string      // X-Cache-Items for embeddings: "hits=N misses=M"
	Trimmed     int         // X-Context-Trimmed: messages context trimming dropped from what went upstream
	Err         *Error      // when set, the front end renders it instead of Body
	Live        *LiveStream // when set, the front end streams it instead of Body
}

var requestPool = sync.Pool{New: func() any { return &Request{done: make(chan *Request, 1)} }}

// Acquire returns an empty Request from a pool; give it back with Release.
func Acquire() *Request { return requestPool.Get().(*Request) }

// Release resets r and returns it to the pool. r must not be used afterwards.
func Release(r *Request) {
	body, hdr, hbuf, done := r.Body[:0], r.header[:0], r.hdrBuf[:0], r.done
	*r = Request{Body: body, header: hdr, hdrBuf: hbuf, done: done}
	requestPool.Put(r)
}

// AddHeader copies one header to forward upstream into the request's own buffer.
func (r *Request) AddHeader(name, value []byte) {
	r.hdrBuf = append(r.hdrBuf, name...)
	nameEnd := len(r.hdrBuf)
	r.hdrBuf = append(r.hdrBuf, value...)
	r.header = append(r.header, headerSpan{nameEnd: nameEnd, valueEnd: len(r.hdrBuf)})
}

// visitHeaders calls f for each header added with AddHeader, in order.
func (r *Request) visitHeaders(f func(name, value []byte)) {
	start := 0
	for _, h := range r.header {
		f(r.hdrBuf[start:h.nameEnd], r.hdrBuf[h.nameEnd:h.valueEnd])
		start = h.valueEnd
	}
}

// Done is where the answered request arrives.
func (r *Request) Done() <-chan *Request { return r.done }

// finish hands the request back to the front end. Nothing may touch r after it.
func (r *Request) finish() { r.done <- r }

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
