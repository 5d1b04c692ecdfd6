package pipeline

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	json "github.com/goccy/go-json"

	"llmcache/pipeline/canon"
	"llmcache/pipeline/sse"
	"llmcache/pipeline/wire"
)

// vectorContentType marks a stored item: little-endian float32s, not JSON.
const vectorContentType = "application/x-llmcache-float32"

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

// serveEmbedding looks each item up in memory, then SQLite; an all-cached request is answered at once, the
// rest becomes one upstream call for the distinct missing items.
func (p *Pipeline) serveEmbedding(r *Request, deadline time.Time) {
	c := &r.Controls
	ec := &embCall{items: slices.Clone(r.items), vectors: make([][]float32, len(r.items)), base64: r.embBase64, model: askedModel(r)}
	w := p.misses.acquire(deadline)
	if w == nil {
		r.fail(errOverloaded)
		return
	}
	fromMemory := 0
	if !c.NoCache && c.Mode != ModeWriteOnly && c.Mode != ModeOff {
		fromMemory = p.lookupItems(w, c, len(ec.items), func(i int) *Key { return &ec.items[i].key }, vectorContentType,
			func(i int, body []byte) bool {
				ec.vectors[i] = decodeVector(body)
				ec.cached++
				return true
			})
	}
	if ec.cached == len(ec.items) {
		p.misses.release(w)
		src, o := p.cfg.storeSource(), OutcomeDBHit
		if fromMemory == len(ec.items) {
			src, o = SourceMemory, OutcomeMemoryHit
		}
		r.Resp = Response{Status: 200, Body: ec.response(ec.model, nil), ContentType: "application/json", Cache: "HIT", Source: src,
			CacheStatus: "llmcache; hit", HasKey: true, Outcome: o, Items: "hits=" + strconv.Itoa(len(ec.items)) + " misses=0"}
		r.finish()
		return
	}
	if c.Mode == ModeReadOnly {
		p.misses.release(w)
		readOnlyMiss(r)
		return
	}
	seen := make(map[Key]bool)
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
	body, ms, me, err := upstreamEmbeddingBody(&w.parser, r, list)
	p.misses.release(w)
	p.dispatch(r, body, ms, me, err, ec, nil)
}

// upstreamEmbeddingBody is the client's body with input replaced by the missing items and the cache object
// removed; every other byte as the client sent it.
func upstreamEmbeddingBody(parser *canon.Parser, r *Request, items []byte) ([]byte, int, int, error) {
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
	return editedBody(parser, r.Body, edits)
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
func (cl *caller) settleEmbedding(c *call, ep *endpointState, res *attemptResult, resp *wire.Response) outcome {
	ec := c.emb
	var a embeddingAnswer
	if err := json.Unmarshal(resp.Body, &a); err != nil || len(a.Data) != len(ec.ask) {
		return invalid(res, fmt.Sprintf("upstream %s answered embeddings that do not match the %d inputs asked for", ep.cfg.Name, len(ec.ask)))
	}
	fetched := make(map[Key][]float32, len(ec.ask))
	for _, d := range a.Data {
		if d.Index < 0 || d.Index >= len(ec.ask) {
			return invalid(res, "upstream embedding index out of range")
		}
		v, err := parseVector(d.Embedding)
		if err != nil {
			return invalid(res, "upstream embedding unreadable: "+err.Error())
		}
		fetched[ec.items[ec.ask[d.Index]].key] = v
	}
	if len(fetched) != len(ec.ask) {
		return invalid(res, "upstream embeddings repeat an index")
	}
	ctl := &c.controls
	store := storable(ctl)
	if store {
		for _, i := range ec.ask {
			k := ec.items[i].key
			e := cl.entry(c, ep, k, encodeVector(fetched[k]), vectorContentType)
			e.UpstreamModel = orAsked(ep.cfg.Model, c.asked)
			cl.storer.store(e, &memEntry{key: k, body: e.Body, contentType: vectorContentType, endpoint: ep.cfg.Name,
				createdAt: e.CreatedAt, expiresAt: e.ExpiresAt, version: e.Version, size: int64(len(e.Body)) + entryOverhead})
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
	res.resp = Response{Status: 200, Body: ec.response(model, a.Usage), ContentType: "application/json", HasKey: true, Source: SourceUpstream,
		Items: "hits=" + strconv.Itoa(ec.cached) + " misses=" + strconv.Itoa(len(ec.items)-ec.cached)}
	res.resp.Cache, res.resp.CacheStatus, res.resp.Outcome = missHeaders(ctl)
	if ec.cached > 0 && res.resp.Cache == "MISS" {
		res.resp.Cache, res.resp.Outcome = "PARTIAL", OutcomePartial
	}
	if store {
		res.resp.CacheStatus += "; stored"
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
	// An upstream may indent its usage; the reassembled answer is one compact body.
	return append(sse.AppendCompact(b, bytes.TrimSpace(usage)), '}')
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

// lookupItems looks the items of a request cached item by item (embeddings, batched completions) up in
// memory, then in SQLite (or the shared store) with w: take is given the body of each usable entry of
// contentType and says whether it used it. It returns how many items memory answered.
func (p *Pipeline) lookupItems(w *missWorker, c *Controls, n int, key func(i int) *Key, contentType string, take func(i int, body []byte) bool) (fromMemory int) {
	epoch := p.storer.current()
	now := nowMillis()
	for i := range n {
		k := key(i)
		if e := p.mem.get(k, now); e != nil && e.contentType == contentType && p.cfg.usable(c, e.createdAt, e.version, e.endpoint, now) && take(i, e.body) {
			fromMemory++
			p.touch.add(k, now)
			continue
		}
		e, found := w.get(k, &p.stats)
		if found && e.ContentType == contentType && (e.ExpiresAt == 0 || now < e.ExpiresAt) && p.cfg.usable(c, e.CreatedAt, e.Version, e.Endpoint, now) {
			m := memEntryOf(*k, e)
			if take(i, m.body) {
				p.touch.add(k, now)
				p.storer.remember(m, epoch)
			}
		}
	}
	return fromMemory
}
