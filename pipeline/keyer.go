package pipeline

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"

	"llmcache/db"
	"llmcache/pipeline/canon"
)

// KeyScheme is written first into every key record, so that a later change of scheme is detectable.
const KeyScheme = "k1"

// keyFields tells which top-level fields are left out of the key: stream, stream_options, user and cache
// always, plus cache.ignore_fields.
type keyFields struct{ ignore map[string]struct{} }

func newKeyFields(extra []string) keyFields {
	f := keyFields{ignore: map[string]struct{}{"stream": {}, "stream_options": {}, "user": {}, "cache": {}}}
	for _, k := range extra {
		f.ignore[k] = struct{}{}
	}
	return f
}

// skip reports whether key is left out; the map lookup with a []byte conversion does not allocate.
func (f keyFields) skip(key []byte) bool { _, ok := f.ignore[string(key)]; return ok }

// keyer computes cache keys. It owns scratch buffers and is not safe for concurrent use: the keying stage
// runs inline in each request's goroutine (a hand-off to keying workers cost a goroutine wake-up per
// request, more than keying a 500 B body takes) with a keyer from a pool.
type keyer struct {
	parser    canon.Parser // holds the top-level members of the request being keyed
	sub       canon.Parser // for nested objects (the "cache" controls)
	record    []byte
	skip      func([]byte) bool
	thinking  Thinking // enable_thinking from config; ThinkingAbsent = the client's value counts
	maxInputs int      // max_embedding_inputs

	skipResp func([]byte) bool // skip for the Responses API: store and metadata are left out too
}

func newKeyer(cfg *Config) *keyer {
	fields := newKeyFields(cfg.IgnoreFields)
	return &keyer{record: make([]byte, 0, 4096), skip: fields.skip, skipResp: responsesKeyFields(cfg.IgnoreFields).skip,
		thinking: cfg.EnableThinking, maxInputs: cfg.MaxEmbeddingInputs}
}

// keyers is the keying stage: pooled keyers for the request goroutines, and the memo of requests keyed
// before.
type keyers struct {
	pool sync.Pool
	memo *keyMemo
}

func newKeyers(cfg *Config) *keyers {
	k := &keyers{memo: newKeyMemo()}
	k.pool.New = func() any { return newKeyer(cfg) }
	return k
}

// key keys r: from the memo when exactly this request was keyed before, else with a pooled keyer.
func (ks *keyers) key(r *Request) *Error {
	if !memoable(r.Kind) {
		return ks.parse(r)
	}
	sum := ks.memo.sum(r)
	if ks.memo.lookup(r, sum) {
		return nil
	}
	headers := r.Controls
	e := ks.parse(r)
	if e == nil && len(r.items) == 0 {
		// A request keyed item by item (a batched completions prompt array) carries a list the memo does
		// not keep: it is keyed afresh each time.
		ks.memo.remember(r, sum, headers)
	}
	return e
}

// parse keys r with a pooled keyer.
func (ks *keyers) parse(r *Request) *Error {
	k := ks.pool.Get().(*keyer)
	e := k.key(r)
	ks.pool.Put(k)
	return e
}

// Keyer computes cache keys the way the keying stage does, outside a running pipeline (benchmarks, tools).
// It is not safe for concurrent use.
type Keyer struct{ k *keyer }

// NewKeyer returns a Keyer for cfg's key settings (ignore_fields, enable_thinking).
func NewKeyer(cfg Config) *Keyer { return &Keyer{k: newKeyer(&cfg)} }

// Key validates r's body and sets r.Key (and the body's cache controls) as the keying stage would.
func (k *Keyer) Key(r *Request) error {
	if e := k.k.key(r); e != nil {
		return e
	}
	return nil
}

// sum frames the key record: scheme, kind (the route's, or promptKeyKind for a batched completions
// request), namespace, sample index, effective enable_thinking and the canonical body without the excluded
// fields. Lengths are framed so no two records can run together.
func (k *keyer) sum(kind byte, c *Controls, thinking Thinking, body []byte, members []canon.Member) db.Key {
	rec := append(k.record[:0], KeyScheme...)
	rec = append(rec, 0, kind)
	rec = binary.AppendUvarint(rec, uint64(len(c.Namespace)))
	rec = append(rec, c.Namespace...)
	rec = binary.AppendUvarint(rec, uint64(c.Sample))
	rec = append(rec, byte(thinking))
	skip := k.skip
	if kind == byte(KindResponses) {
		skip = k.skipResp
	}
	rec = k.parser.AppendCanonicalObject(rec, body, members, skip)
	k.record = rec
	return sha256.Sum256(rec)
}

// key validates r's body as far as the proxy needs, reads its body controls and sets r.Key. It returns an
// error for a 400 when the request cannot be served.
func (k *keyer) key(r *Request) *Error {
	members, err := k.parser.ParseObject(r.Body)
	if err != nil {
		if se, ok := err.(*canon.SyntaxError); ok {
			return invalidRequest("", se.Msg)
		}
		return invalidRequest("", "invalid JSON body: "+err.Error())
	}
	var haveModel, haveInput bool
	var input *canon.Member
	thinking := ThinkingAbsent
	for i := range members {
		m := &members[i]
		switch string(m.Key) {
		case "model":
			if m.Type != canon.String || m.ValueEnd-m.ValueStart <= 2 {
				return invalidRequest("model", "model must be a non-empty string")
			}
			haveModel = true
			r.modelStart, r.modelEnd = m.ValueStart, m.ValueEnd
		case "messages":
			if r.Kind == KindChat {
				if m.Type != canon.Array || isEmptyArray(r.Body[m.ValueStart:m.ValueEnd]) {
					return invalidRequest("messages", "messages must be a non-empty array")
				}
				haveInput = true
			}
		case "prompt":
			if r.Kind == KindCompletion {
				if m.Type != canon.String && m.Type != canon.Array {
					return invalidRequest("prompt", "prompt must be a string or an array")
				}
				haveInput = true
			}
		case "input":
			switch r.Kind {
			case KindEmbedding:
				haveInput = true
				input = m
			case KindResponses:
				if m.Type != canon.String && m.Type != canon.Array {
					return invalidRequest("input", "input must be a string or an array of input items")
				}
				haveInput = true
			}
		case "encoding_format":
			if r.Kind == KindEmbedding {
				f, err := canon.DecodeString(nil, r.Body[m.ValueStart:m.ValueEnd])
				if m.Type != canon.String || err != nil || (string(f) != "float" && string(f) != "base64") {
					return invalidRequest("encoding_format", `encoding_format must be "float" or "base64"`)
				}
				r.embBase64 = string(f) == "base64"
			}
		case "stream":
			if m.Type != canon.True && m.Type != canon.False {
				return invalidRequest("stream", "stream must be a boolean")
			}
			r.Stream = m.Type == canon.True
		case "stream_options":
			if m.Type != canon.Object && m.Type != canon.Null {
				return invalidRequest("stream_options", "stream_options must be an object")
			}
			if m.Type == canon.Object {
				r.includeUsage = includeUsage(&k.sub, r.Body[m.ValueStart:m.ValueEnd])
			}
		case "cache":
			if m.Type != canon.Object {
				return invalidRequest("cache", "cache must be a JSON object")
			}
			if e := r.Controls.applyBody(&k.sub, r.Body[m.ValueStart:m.ValueEnd]); e != nil {
				return e
			}
		case "enable_thinking":
			switch m.Type {
			case canon.True:
				thinking = ThinkingTrue
			case canon.False:
				thinking = ThinkingFalse
			}
		}
	}
	if !haveModel {
		return invalidRequest("model", "you must provide a model parameter")
	}
	if !haveInput {
		switch r.Kind {
		case KindChat:
			return invalidRequest("messages", "missing required parameter: messages")
		case KindCompletion:
			return invalidRequest("prompt", "missing required parameter: prompt")
		default:
			return invalidRequest("input", "missing required parameter: input")
		}
	}
	if k.thinking != ThinkingAbsent {
		thinking = k.thinking
	}
	r.Thinking = thinking
	if r.Tenant != nil {
		// Every key, memo and stored record from here on uses the effective namespace: the header's and the
		// body's cache controls have both been read.
		ns, e := r.Tenant.namespace(r.Controls.Namespace)
		if e != nil {
			return e
		}
		r.Controls.Namespace = ns
	}
	if r.Kind == KindEmbedding {
		if r.Stream {
			return invalidRequest("stream", "embeddings cannot be streamed")
		}
		if e := k.keyItems(r, members, input, thinking); e != nil {
			return e
		}
	}
	kind := byte(r.Kind)
	if r.Kind == KindCompletion && k.batchPrompts(r, members, thinking) {
		kind = promptKeyKind
	}
	r.Key = k.sum(kind, &r.Controls, thinking, r.Body, members)
	return nil
}

// isEmptyArray reports whether raw, a validated JSON array, has no elements.
func isEmptyArray(raw []byte) bool {
	for _, c := range raw[1:] {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case ']':
			return true
		}
		return false
	}
	return false
}

// includeUsage reads stream_options.include_usage from its (validated) object.
func includeUsage(sub *canon.Parser, raw []byte) bool {
	members, err := sub.ParseObject(raw)
	if err != nil {
		return false
	}
	for _, m := range members {
		if string(m.Key) == "include_usage" {
			return m.Type == canon.True
		}
	}
	return false
}

// askedModel is the model r asks for, decoded.
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
