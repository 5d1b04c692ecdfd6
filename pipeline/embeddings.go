package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"

	json "github.com/goccy/go-json"

	"llmcache/db"
	"llmcache/pipeline/canon"
	"llmcache/pipeline/wire"
)

// Embeddings are cached per input item (DESIGN section 4): a request for 100 inputs of which 97 are cached
// sends one upstream request for the other 3 and answers all 100 in their order.

// MaxEmbeddingInputs is the default bound on inputs in one embeddings request.
const MaxEmbeddingInputs = 2048

// vectorContentType marks a stored item: little-endian float32s, not JSON.
const vectorContentType = "application/x-llmcache-float32"

// embItem is one input of an embeddings request.
type embItem struct {
	key        db.Key
	start, end int // the item's raw JSON in the request body
}

// embeddingFields are left out of an item's key besides the usual ones: the input itself (keyed item by
// item) and encoding_format (vectors are stored as float32 and converted on the way out).
func (k *keyer) skipEmbedding(key []byte) bool {
	switch string(key) {
	case "input", "encoding_format":
		return true
	}
	return k.skip(key)
}

// keyItems validates the input of an embeddings request and keys each item: the framed record of the
// request without input and encoding_format, then the item's canonical form.
func (k *keyer) keyItems(r *Request, members []canon.Member, input *canon.Member, thinking Thinking) *Error {
	raw := r.Body[input.ValueStart:input.ValueEnd]
	var spans [][2]int
	switch input.Type {
	case canon.String:
		spans = append(spans, [2]int{input.ValueStart, input.ValueEnd})
	case canon.Array:
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return invalidRequest("input", "input must be a string, an array of strings, an array of token ids or an array of token-id arrays")
		}
		if len(elems) == 0 {
			return invalidRequest("input", "input must not be empty")
		}
		if len(elems) > k.maxInputs {
			return invalidRequest("input", fmt.Sprintf("input has %d items; at most %d are allowed (max_embedding_inputs)", len(elems), k.maxInputs))
		}
		first := firstByte(elems[0])
		if first == '-' || (first >= '0' && first <= '9') {
			// One list of token ids is one input.
			for _, e := range elems {
				if !isInteger(e) {
					return invalidRequest("input", "input token ids must be integers")
				}
			}
			spans = append(spans, [2]int{input.ValueStart, input.ValueEnd})
			break
		}
		at := input.ValueStart + 1
		for _, e := range elems {
			// Unmarshal keeps each element's bytes; find them in the body to key them canonically.
			off := bytes.Index(r.Body[at:input.ValueEnd], e)
			if off < 0 {
				return invalidRequest("input", "input could not be read")
			}
			start := at + off
			switch firstByte(e) {
			case '"':
			case '[':
				var ids []json.RawMessage
				if json.Unmarshal(e, &ids) != nil || len(ids) == 0 {
					return invalidRequest("input", "each token-id list in input must be a non-empty array of integers")
				}
				for _, id := range ids {
					if !isInteger(id) {
						return invalidRequest("input", "input token ids must be integers")
					}
				}
			default:
				return invalidRequest("input", "input items must all be strings or all be token-id arrays")
			}
			if firstByte(e) != first {
				return invalidRequest("input", "input items must all be strings or all be token-id arrays")
			}
			spans = append(spans, [2]int{start, start + len(e)})
			at = start + len(e)
		}
	default:
		return invalidRequest("input", "input must be a string, an array of strings, an array of token ids or an array of token-id arrays")
	}
	base := append(k.record[:0], KeyScheme...)
	base = append(base, 0, byte(r.Kind))
	base = binary.AppendUvarint(base, uint64(len(r.Controls.Namespace)))
	base = append(base, r.Controls.Namespace...)
	base = binary.AppendUvarint(base, uint64(r.Controls.Sample))
	base = append(base, byte(thinking))
	base = k.parser.AppendCanonicalObject(base, r.Body, members, k.skipEmbedding)
	base = append(base, 0)
	n := len(base)
	r.items = r.items[:0]
	for _, sp := range spans {
		rec := k.parser.AppendCanonical(base[:n], r.Body[sp[0]:sp[1]])
		r.items = append(r.items, embItem{key: sha256.Sum256(rec), start: sp[0], end: sp[1]})
		base = rec
	}
	k.record = base
	return nil
}

func firstByte(b []byte) byte {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

func isInteger(b []byte) bool {
	_, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	return err == nil
}

// embCall is what an embeddings call carries besides the usual: the vectors found in the cache, and which
// items the upstream is asked for (each distinct missing item once).
type embCall struct {
	items   []embItem
	vectors [][]float32 // per item; nil where missing
	ask     []int       // indexes into items of the distinct missing items, in the upstream's order
	cached  int         // items answered from the cache
	base64  bool        // the client asked for encoding_format "base64"
	model   string      // the model asked, for an all-cached answer
}

// serveEmbedding looks each item up in SQLite; an all-cached request is answered at once, the rest becomes
// one upstream call for the distinct missing items.
func (p *Pipeline) serveEmbedding(rd db.Reader, e *db.Entry, touches *touchBatcher, r *Request) {
	c := &r.Controls
	ec := &embCall{items: slices.Clone(r.items), vectors: make([][]float32, len(r.items)), base64: r.embBase64, model: askedModel(r)}
	fromMemory := 0
	if !c.NoCache && c.Mode != ModeWriteOnly && c.Mode != ModeOff {
		now := nowMillis()
		if p.cfg.MemoryEnabled {
			fromMemory = p.memItems(ec, c, touches, now)
		}
		for i := range ec.items {
			if ec.vectors[i] != nil {
				continue
			}
			found, err := rd.Get(&ec.items[i].key, e)
			if err != nil {
				p.stats.dbReadErrors.Add(1)
				continue
			}
			if found && e.ContentType == vectorContentType && (e.ExpiresAt == 0 || now < e.ExpiresAt) && p.usable(c, e.CreatedAt, e.Version, e.Endpoint, now) {
				ec.vectors[i] = decodeVector(e.Body)
				ec.cached++
				touches.add(ec.items[i].key, now)
				p.memInsert(&memEntry{key: ec.items[i].key, body: bytes.Clone(e.Body), contentType: vectorContentType, endpoint: e.Endpoint,
					createdAt: e.CreatedAt, expiresAt: e.ExpiresAt, version: e.Version, size: int64(len(e.Body)) + entryOverhead})
			}
		}
	}
	if ec.cached == len(ec.items) {
		source := "db"
		if fromMemory == len(ec.items) {
			source = "memory"
			p.stats.count(KindEmbedding, OutcomeMemoryHit)
		} else {
			p.stats.count(KindEmbedding, OutcomeDBHit)
		}
		r.Resp = Response{Status: 200, Body: ec.response(ec.model, nil), ContentType: "application/json", Cache: "HIT", Source: source,
			CacheStatus: "llmcache; hit", HasKey: true, Items: "hits=" + strconv.Itoa(len(ec.items)) + " misses=0"}
		r.finish()
		return
	}
	if c.Mode == ModeReadOnly {
		p.readOnlyMiss(r)
		return
	}
	seen := make(map[db.Key]bool)
	var list []byte
	for i, it := range ec.items {
		if ec.vectors[i] != nil || seen[it.key] {
			continue
		}
		seen[it.key] = true
		ec.ask = append(ec.ask, i)
		if len(list) > 0 {
			list = append(list, ',')
		}
		list = append(list, r.Body[it.start:it.end]...)
	}
	body, ms, me, err := p.upstreamEmbeddingBody(r, list)
	p.dispatchMiss(r, body, ms, me, err, ec.model, ec)
}

// memItems looks the items up in the memory stage, one query per shard involved, all at once, and fills
// the vectors found. It returns how many items it found.
func (p *Pipeline) memItems(ec *embCall, c *Controls, touches *touchBatcher, now int64) int {
	queries := make(map[*memShard]*itemQuery)
	index := make(map[*memShard][]int)
	for i := range ec.items {
		s := p.shardFor(&ec.items[i].key)
		q := queries[s]
		if q == nil {
			q = &itemQuery{}
			queries[s] = q
		}
		q.keys = append(q.keys, ec.items[i].key)
		index[s] = append(index[s], i)
	}
	var wg sync.WaitGroup
	for s, q := range queries {
		wg.Add(1)
		q.done = wg.Done
		s.items <- q
	}
	wg.Wait()
	found := 0
	for s, q := range queries {
		for j, e := range q.found {
			if e == nil || !p.usable(c, e.createdAt, e.version, e.endpoint, now) {
				continue
			}
			i := index[s][j]
			ec.vectors[i] = decodeVector(e.body)
			ec.cached++
			found++
			touches.add(ec.items[i].key, now)
		}
	}
	return found
}

// upstreamEmbeddingBody is the client's body with input replaced by the missing items and the cache object
// removed; every other byte as the client sent it.
func (p *Pipeline) upstreamEmbeddingBody(r *Request, items []byte) ([]byte, int, int, error) {
	var parser canon.Parser
	members, err := parser.ParseObject(r.Body)
	if err != nil {
		return nil, 0, 0, err
	}
	var edits []edit
	for i := range members {
		switch string(members[i].Key) {
		case "input":
			edits = append(edits, edit{start: members[i].ValueStart, end: members[i].ValueEnd, text: append(append([]byte{'['}, items...), ']')})
		case "cache":
			edits = append(edits, removeMember(members, i))
		}
	}
	return editedBody(&parser, r.Body, edits)
}

// embeddingAnswer is the part of an upstream embeddings answer the proxy reads.
type embeddingAnswer struct {
	Data []struct {
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Model string          `json:"model"`
	Usage json.RawMessage `json:"usage"`
}

// settleEmbedding takes the upstream's vectors for the missing items, stores each as its own entry, and
// answers with every item in the client's order and encoding.
func (p *Pipeline) settleEmbedding(c *call, resp *wire.Response) outcome {
	ec, ep := c.emb, c.ep
	var a embeddingAnswer
	if err := json.Unmarshal(resp.Body, &a); err != nil || len(a.Data) != len(ec.ask) {
		e := &Error{Status: 502, Type: "server_error", Code: "upstream_invalid_response",
			Message: fmt.Sprintf("upstream %s answered embeddings that do not match the %d inputs asked for", ep.cfg.Name, len(ec.ask))}
		c.resp = Response{Status: 502, Err: e, HasKey: true, Cache: "MISS", Source: "upstream", CacheStatus: "llmcache; fwd=miss; detail=upstream-invalid"}
		return outcomeInvalid
	}
	fetched := make(map[db.Key][]float32, len(ec.ask))
	for _, d := range a.Data {
		if d.Index < 0 || d.Index >= len(ec.ask) {
			c.resp = Response{Status: 502, HasKey: true, Err: &Error{Status: 502, Type: "server_error", Code: "upstream_invalid_response", Message: "upstream embedding index out of range"}}
			return outcomeInvalid
		}
		v, err := parseVector(d.Embedding)
		if err != nil {
			c.resp = Response{Status: 502, HasKey: true, Err: &Error{Status: 502, Type: "server_error", Code: "upstream_invalid_response", Message: "upstream embedding unreadable: " + err.Error()}}
			return outcomeInvalid
		}
		fetched[ec.items[ec.ask[d.Index]].key] = v
	}
	if len(fetched) != len(ec.ask) {
		c.resp = Response{Status: 502, HasKey: true, Err: &Error{Status: 502, Type: "server_error", Code: "upstream_invalid_response", Message: "upstream embeddings repeat an index"}}
		return outcomeInvalid
	}
	ctl := &c.controls
	store := !ctl.NoStore && ctl.Mode != ModeOff && ctl.Mode != ModeReadOnly
	now := nowMillis()
	if store && p.writer != nil {
		for _, i := range ec.ask {
			k := ec.items[i].key
			entry := &db.Entry{Key: k, Body: encodeVector(fetched[k]), ContentType: vectorContentType, Kind: c.kind.String(),
				Namespace: ctl.Namespace, Model: c.asked, Endpoint: ep.cfg.Name, UpstreamModel: orAsked(ep.cfg.Model, c.asked),
				Version: max(p.cfg.CacheVersion, ep.cfg.Version), CreatedAt: now}
			if ctl.TTL > 0 {
				entry.ExpiresAt = now + ctl.TTL*1000
			}
			p.writer.Put(entry)
			p.memInsert(&memEntry{key: k, body: entry.Body, contentType: vectorContentType, endpoint: ep.cfg.Name,
				createdAt: now, expiresAt: entry.ExpiresAt, version: entry.Version, size: int64(len(entry.Body)) + entryOverhead})
		}
	}
	for i, it := range ec.items {
		if ec.vectors[i] == nil {
			ec.vectors[i] = fetched[it.key]
		}
	}
	model := a.Model
	if model == "" {
		model = c.asked
	}
	c.resp = Response{Status: 200, Body: ec.response(model, a.Usage), ContentType: "application/json", HasKey: true, Source: "upstream",
		Items: "hits=" + strconv.Itoa(ec.cached) + " misses=" + strconv.Itoa(len(ec.items)-ec.cached)}
	c.resp.Cache, c.resp.CacheStatus = missHeaders(ctl)
	if ec.cached > 0 && c.resp.Cache == "MISS" {
		c.resp.Cache = "PARTIAL"
	}
	if store {
		c.resp.CacheStatus += "; stored"
	}
	switch c.resp.Cache {
	case "PARTIAL":
		p.stats.count(KindEmbedding, OutcomePartial)
	case "BYPASS":
		p.stats.count(KindEmbedding, OutcomeBypass)
	case "REFRESH":
		p.stats.count(KindEmbedding, OutcomeRefresh)
	default:
		p.stats.count(KindEmbedding, OutcomeMiss)
	}
	return outcomeOK
}

// orAsked is the model sent upstream: the endpoint's override, else the one asked for.
func orAsked(override, asked string) string {
	if override != "" {
		return override
	}
	return asked
}

// response writes the OpenAI embeddings answer; usage is the upstream's (only what it counted), or zero.
func (ec *embCall) response(model string, usage json.RawMessage) []byte {
	b := []byte(`{"object":"list","data":[`)
	for i, v := range ec.vectors {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"embedding":`...)
		if ec.base64 {
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, encodeVector(v))
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for j, f := range v {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	mj, _ := json.Marshal(model)
	b = append(b, mj...)
	b = append(b, `,"usage":`...)
	if len(bytes.TrimSpace(usage)) == 0 || string(bytes.TrimSpace(usage)) == "null" {
		usage = json.RawMessage(`{"prompt_tokens":0,"total_tokens":0}`)
	}
	b = append(b, usage...)
	return append(b, '}')
}

// parseVector reads an embedding as JSON numbers or as base64 of little-endian float32s.
func parseVector(raw json.RawMessage) ([]float32, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b)%4 != 0 {
			return nil, fmt.Errorf("bad base64 vector")
		}
		return decodeVector(b), nil
	}
	var v []float32
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return v, nil
}

func encodeVector(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

func decodeVector(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}
