package pipeline

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	json "github.com/goccy/go-json"

	"llmcache/pipeline/sse"
	"llmcache/pipeline/wire"
)

// choicesContentType marks a prompt's entry: the answer to that prompt alone, compact, without usage (its
// n choices, numbered from 0, and the answer's other top-level fields: id, object, created, model...).
const choicesContentType = "application/x-llmcache-prompt+json"

// zeroUsage is the usage of an answer every prompt of which came from the cache: the upstream counted
// nothing for it.
var zeroUsage = []byte(`{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}`)

// promptCall is what a batched completions call carries besides the usual: each prompt's choices found in
// the cache, and which prompts the upstream is asked for (each distinct missing prompt once).
type promptCall struct {
	items   []embItem
	n       int        // choices per prompt
	choices [][][]byte // per prompt, its n choices (compact objects); nil where missing
	top     []byte     // the first cached prompt's entry: an all-cached answer takes its id, model, created...
	ask     []int      // indexes into items of the distinct missing prompts, in the upstream's order
	cached  int        // prompts answered from the cache
}

// servePrompts looks each prompt up in memory, then SQLite; a request whose prompts are all cached is
// answered at once, the rest becomes one upstream call for the distinct missing prompts.
func (p *Pipeline) servePrompts(r *Request, deadline time.Time) {
	c := &r.Controls
	pc := &promptCall{items: slices.Clone(r.items), n: r.promptN, choices: make([][][]byte, len(r.items))}
	w := p.misses.acquire(deadline)
	if w == nil {
		r.fail(errOverloaded)
		return
	}
	fromMemory := 0
	if !c.NoCache && c.Mode != ModeWriteOnly && c.Mode != ModeOff {
		fromMemory = p.lookupItems(w, c, len(pc.items), func(i int) *Key { return &pc.items[i].key }, choicesContentType, pc.take)
	}
	if pc.cached == len(pc.items) {
		p.misses.release(w)
		src, o := p.cfg.storeSource(), OutcomeDBHit
		if fromMemory == len(pc.items) {
			src, o = SourceMemory, OutcomeMemoryHit
		}
		r.Resp = Response{Status: 200, Body: pc.response(pc.top, zeroUsage), ContentType: "application/json", Cache: "HIT", Source: src,
			CacheStatus: "llmcache; hit", HasKey: true, Outcome: o, Items: "hits=" + strconv.Itoa(len(pc.items)) + " misses=0"}
		r.finish()
		return
	}
	if c.Mode == ModeReadOnly {
		p.misses.release(w)
		readOnlyMiss(r)
		return
	}
	seen := make(map[Key]bool)
	list := []byte{'['}
	for i, it := range pc.items {
		if pc.choices[i] != nil || seen[it.key] {
			continue
		}
		seen[it.key] = true
		pc.ask = append(pc.ask, i)
		if len(list) > 1 {
			list = append(list, ',')
		}
		list = append(list, r.Body[it.start:it.end]...)
	}
	list = append(list, ']')
	body, ms, me, err := p.cfg.upstreamBodyWith(&w.parser, &w.sub, r, list)
	p.misses.release(w)
	p.dispatch(r, body, ms, me, err, nil, pc)
}

// take reads prompt i's entry from body; false (a miss) when it does not hold the n choices asked for.
func (pc *promptCall) take(i int, body []byte) bool {
	ms, ok := rawObjectMembers(body, 0)
	if !ok {
		return false
	}
	for _, m := range ms {
		if !m.is(body, "choices") {
			continue
		}
		spans := rawArrayElems(body, m.valueStart)
		if len(spans) != pc.n {
			return false
		}
		chs := make([][]byte, len(spans))
		for j, sp := range spans {
			chs[j] = body[sp[0]:sp[1]]
		}
		pc.choices[i] = chs
		pc.cached++
		if pc.top == nil {
			pc.top = body
		}
		return true
	}
	return false
}

// settlePrompts takes the upstream's choices for the missing prompts, stores each prompt's as an entry of
// its own, and answers with every prompt's choices in the client's order.
func (cl *caller) settlePrompts(c *call, ep *endpointState, res *attemptResult, resp *wire.Response) outcome {
	pc := c.prompts
	body := resp.Body
	mismatch := func(why string) outcome {
		return invalid(res, fmt.Sprintf("upstream %s answered completions that do not match the %d prompts asked for with n = %d: %s",
			ep.cfg.Name, len(pc.ask), pc.n, why))
	}
	if !json.Valid(body) {
		return invalid(res, "upstream "+ep.cfg.Name+" answered 200 with a body that is not JSON")
	}
	top, ok := rawObjectMembers(body, rawSkipWS(body, 0))
	if !ok {
		return mismatch("the answer is not an object")
	}
	var spans [][2]int
	var usage []byte
	for _, m := range top {
		switch {
		case m.is(body, "choices"):
			spans = rawArrayElems(body, m.valueStart)
		case m.is(body, "usage"):
			usage = body[m.valueStart:m.valueEnd]
		}
	}
	if len(spans) != len(pc.ask)*pc.n {
		return mismatch(strconv.Itoa(len(spans)) + " choices")
	}
	// The upstream numbers choices prompt-major: prompt a's choice j has index a*n + j.
	byIndex := make([][]byte, len(spans))
	for _, sp := range spans {
		ch := sse.AppendCompact(nil, body[sp[0]:sp[1]])
		i, ok := choiceIndex(ch)
		if !ok || i < 0 || i >= len(byIndex) || byIndex[i] != nil {
			return mismatch("a choice's index is missing, repeated or out of range")
		}
		byIndex[i] = ch
	}
	ctl := &c.controls
	store := storable(ctl)
	fetched := make(map[Key][][]byte, len(pc.ask))
	stored, empty, large := 0, 0, 0
	for a, i := range pc.ask {
		chs := make([][]byte, pc.n)
		for j := range chs {
			chs[j] = appendWithIndex(nil, byIndex[a*pc.n+j], j)
		}
		k := pc.items[i].key
		fetched[k] = chs
		if !store {
			continue
		}
		entry := entryBody(body, top, chs)
		_, useful, _ := checkAnswer(KindCompletion, entry)
		switch {
		case !useful:
			empty++
		case cl.tooLarge(ep, len(entry)):
			large++
		default:
			e := cl.entry(c, ep, k, entry, choicesContentType)
			e.Kind = PromptEntryKind
			cl.storer.store(e, &memEntry{key: k, body: entry, contentType: choicesContentType, endpoint: ep.cfg.Name,
				createdAt: e.CreatedAt, expiresAt: e.ExpiresAt, version: e.Version, size: int64(len(entry)) + entryOverhead})
			stored++
		}
	}
	for i, it := range pc.items {
		if pc.choices[i] == nil {
			pc.choices[i] = fetched[it.key]
		}
	}
	res.resp = Response{Status: 200, Body: pc.response(body, usage), ContentType: "application/json", HasKey: true, Source: SourceUpstream,
		Items: "hits=" + strconv.Itoa(pc.cached) + " misses=" + strconv.Itoa(len(pc.items)-pc.cached)}
	res.resp.Cache, res.resp.CacheStatus, res.resp.Outcome = missHeaders(ctl)
	if pc.cached > 0 && res.resp.Cache == "MISS" {
		res.resp.Cache, res.resp.Outcome = "PARTIAL", OutcomePartial
	}
	switch {
	case stored > 0:
		res.resp.CacheStatus += "; stored"
	case empty > 0:
		res.resp.CacheStatus += "; detail=empty"
	case large > 0:
		res.resp.CacheStatus += "; detail=too-large"
	}
	return outcomeOK
}

// choiceIndex reads a choice's index.
func choiceIndex(choice []byte) (int, bool) {
	ms, _ := rawObjectMembers(choice, 0)
	for _, m := range ms {
		if m.is(choice, "index") {
			i, err := strconv.Atoi(string(choice[m.valueStart:m.valueEnd]))
			return i, err == nil
		}
	}
	return 0, false
}

// appendWithIndex appends choice, a compact object, with its index set to index.
func appendWithIndex(b, choice []byte, index int) []byte {
	ms, _ := rawObjectMembers(choice, 0)
	for _, m := range ms {
		if m.is(choice, "index") {
			b = append(b, choice[:m.valueStart]...)
			b = strconv.AppendInt(b, int64(index), 10)
			return append(b, choice[m.valueEnd:]...)
		}
	}
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, int64(index), 10)
	if len(ms) > 0 {
		b = append(b, ',')
	}
	return append(b, choice[1:]...)
}

// entryBody is one prompt's entry: the upstream answer's top-level members in their order, compact, with
// choices holding that prompt's alone and no usage (the upstream counted the whole call, not the prompt).
func entryBody(body []byte, top []rawMember, choices [][]byte) []byte {
	b := []byte{'{'}
	for _, m := range top {
		if m.is(body, "usage") {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(append(b, body[m.keyStart:m.keyEnd]...), ':')
		if m.is(body, "choices") {
			b = append(b, '[')
			for j, ch := range choices {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, ch...)
			}
			b = append(b, ']')
			continue
		}
		b = sse.AppendCompact(b, body[m.valueStart:m.valueEnd])
	}
	return append(b, '}')
}

// response writes the answer to the whole request: top's members (an upstream answer's, or a cached
// entry's) in their order and compacted, with choices holding every prompt's in the client's order (index =
// prompt position x n + choice) and usage replaced by usage (nil: left out).
func (pc *promptCall) response(top, usage []byte) []byte {
	ms, _ := rawObjectMembers(top, rawSkipWS(top, 0))
	size := len(top) + len(usage) + 16
	for _, chs := range pc.choices {
		for _, ch := range chs {
			size += len(ch) + 8
		}
	}
	b := make([]byte, 1, size)
	b[0] = '{'
	key := func(k []byte) {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(append(b, k...), ':')
	}
	wroteChoices, wroteUsage := false, usage == nil
	for _, m := range ms {
		switch {
		case m.is(top, "choices"):
			key(top[m.keyStart:m.keyEnd])
			b = pc.appendChoices(b)
			wroteChoices = true
		case m.is(top, "usage"):
			if usage != nil {
				key(top[m.keyStart:m.keyEnd])
				b = sse.AppendCompact(b, usage)
				wroteUsage = true
			}
		default:
			key(top[m.keyStart:m.keyEnd])
			b = sse.AppendCompact(b, top[m.valueStart:m.valueEnd])
		}
	}
	if !wroteChoices {
		key([]byte(`"choices"`))
		b = pc.appendChoices(b)
	}
	if !wroteUsage {
		key([]byte(`"usage"`))
		b = sse.AppendCompact(b, usage)
	}
	return append(b, '}')
}

// appendChoices appends every prompt's choices as one array, numbered prompt-major.
func (pc *promptCall) appendChoices(b []byte) []byte {
	b = append(b, '[')
	for i, chs := range pc.choices {
		for j, ch := range chs {
			if i > 0 || j > 0 {
				b = append(b, ',')
			}
			b = appendWithIndex(b, ch, i*pc.n+j)
		}
	}
	return append(b, ']')
}
