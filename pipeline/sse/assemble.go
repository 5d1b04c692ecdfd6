package sse

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Assembler accumulates a stream's events into the non-streamed response object. It is not safe for
// concurrent use. It keeps copies of what it needs, so events may be reused by the caller after Event returns.
//
// What it cannot reproduce faithfully makes Result refuse rather than store a lossy answer: a delta field it
// does not know whose value is neither text nor empty (an OpenRouter "reasoning_details" array, "audio"), a chat
// choice carrying "text" or "message", data after [DONE]. Unknown top-level and choice-level fields (vLLM's
// "stop_reason", a provider name) are dropped: they do not change the answer.
type Assembler struct {
	kind Kind
	done bool // [DONE] was seen
	// err is the first error Event returned; it is sticky, so Result refuses and later events are ignored.
	err error
	// problem is the first reason a well-formed stream still cannot be stored.
	problem string
	scratch []byte // joined data of multi-line events

	// Raw JSON values (copies) of the top-level fields, from the first chunk that has them non-null, except
	// usage, which is the last non-null one (vLLM's continuous usage stats send a running total in every chunk).
	id, created, model, fingerprint, tier, usage []byte

	choices []choiceState // in order of first appearance; sorted by index in Result
}

type choiceState struct {
	index   int
	role    []byte // raw JSON string of the first role seen
	content text   // chat
	refusal text   // chat
	text    text   // completion
	// extra collects the string-valued delta fields other than content and refusal (reasoning_content,
	// vLLM's newer "reasoning", ...), concatenated per key, in order of first appearance.
	extra []namedText
	tools []toolState
	fn    *toolState // legacy "function_call"

	lpSeen bool // any chunk of this choice had a non-null logprobs object
	// lp holds the logprobs arrays, by position in logprobKeys[kind].
	lp     [4]rawArray
	finish []byte // raw JSON of the last non-null finish_reason
}

// text is a string built from deltas, kept in escaped form (the bodies of the delta strings, concatenated).
type text struct {
	b    []byte
	seen bool // a string delta was seen, even an empty one: "" and null differ in the answer
}

func (t *text) add(body []byte) { t.b, t.seen = append(t.b, body...), true }

type namedText struct {
	key []byte // raw (escaped) key
	text
}

type toolState struct {
	index         int
	id, typ, name []byte // raw JSON strings, from the first delta that carries them
	arguments     text
}

// rawArray is the concatenation of JSON arrays: the comma-joined bodies of their elements.
type rawArray struct {
	b    []byte
	seen bool // a non-null array was seen
}

func (r *rawArray) add(arr []byte) {
	body := arrayBody(arr)
	if len(body) > 0 {
		if len(r.b) > 0 {
			r.b = append(r.b, ',')
		}
		r.b = AppendCompact(r.b, body)
	}
	r.seen = true
}

// logprobKeys names the arrays of a choice's logprobs object, in output order.
var logprobKeys = [...][]string{
	Chat:       {"content", "refusal"},
	Completion: {"tokens", "token_logprobs", "top_logprobs", "text_offset"},
}

// NewAssembler returns an Assembler for one stream of the given kind.
func NewAssembler(kind Kind) *Assembler { return &Assembler{kind: kind} }

// ErrUpstream is wrapped by the error Event returns for an error the upstream sent inside the stream.
var ErrUpstream = errors.New("upstream sent an error in the stream")

// Event takes one raw event (from Splitter). It returns an error for an error event (`event: error`, or data
// that is a JSON object with a non-null top-level "error"), for data that is not JSON (other than [DONE]), and
// for a chunk whose shape is not a chunk of the Assembler's kind. After an error, every later call returns it.
// Events without data (comments, keep-alives) and named events other than "message" (which OpenAI-compatible
// servers do not send, and which carry no chunk) are ignored.
func (a *Assembler) Event(event []byte) error {
	if a.err != nil {
		return a.err
	}
	if a.kind != Chat && a.kind != Completion {
		return a.fail(fmt.Errorf("cannot assemble a stream of %v", a.kind))
	}
	data, et, scratch, ok := parseEvent(event, a.scratch)
	a.scratch = scratch
	switch string(et) {
	case "", "message":
	case "error":
		return a.fail(fmt.Errorf("%w: event: error: %s", ErrUpstream, clip(data)))
	default:
		return nil
	}
	if !ok {
		return nil
	}
	data = bytes.TrimSpace(data)
	if string(data) == "[DONE]" {
		a.done = true
		return nil
	}
	if err := validate(data); err != nil {
		return a.fail(fmt.Errorf("cannot read stream chunk %q: %w", clip(data), err))
	}
	if !isObject(data) {
		return a.fail(fmt.Errorf("stream chunk is not a JSON object: %q", clip(data)))
	}
	if a.done {
		a.note("data after [DONE]")
		return nil
	}
	return a.chunk(data)
}

func (a *Assembler) fail(err error) error {
	a.err = err
	return err
}

// note records the first reason why the stream cannot be stored.
func (a *Assembler) note(format string, args ...any) {
	if a.problem == "" {
		a.problem = fmt.Sprintf(format, args...)
	}
}

// clip shortens data quoted in an error message.
func clip(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

// firstRaw stores a compacted copy of v in *dst unless *dst is already set or v is null.
func firstRaw(dst *[]byte, v []byte) {
	if *dst == nil && !isNull(v) {
		*dst = AppendCompact(make([]byte, 0, len(v)), v)
	}
}

func (a *Assembler) chunk(data []byte) error {
	var kb [64]byte
	m := objectMembers(data)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		switch string(plainKey(k, &kb)) {
		case "error":
			if !isNull(v) {
				return a.fail(fmt.Errorf("%w: %s", ErrUpstream, clip(v)))
			}
		case "id":
			firstRaw(&a.id, v)
		case "created":
			firstRaw(&a.created, v)
		case "model":
			firstRaw(&a.model, v)
		case "system_fingerprint":
			firstRaw(&a.fingerprint, v)
		case "service_tier":
			firstRaw(&a.tier, v)
		case "usage":
			if !isNull(v) {
				a.usage = AppendCompact(a.usage[:0], v)
			}
		case "choices":
			if isNull(v) {
				continue
			}
			if !isArray(v) {
				return a.fail(fmt.Errorf("stream chunk has choices that are not an array: %q", clip(data)))
			}
			e := arrayElements(v)
			for pos := 0; ; pos++ {
				c, ok := e.next()
				if !ok {
					break
				}
				if err := a.choice(c, pos); err != nil {
					return a.fail(err)
				}
			}
		}
	}
	return nil
}

// state returns the accumulator of the choice with the given index, creating it on first sight.
func (a *Assembler) state(index int) *choiceState {
	for i := range a.choices {
		if a.choices[i].index == index {
			return &a.choices[i]
		}
	}
	a.choices = append(a.choices, choiceState{index: index})
	return &a.choices[len(a.choices)-1]
}

// choice folds one element of a chunk's choices array; pos is its position, the index used when a server
// leaves "index" out.
func (a *Assembler) choice(c []byte, pos int) error {
	if !isObject(c) {
		return fmt.Errorf("stream chunk has a choice that is not an object: %q", clip(c))
	}
	var kb [64]byte
	var delta, logprobs, finish, txt []byte
	index := pos
	m := objectMembers(c)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		// The key is not kept in a variable: one that reached an error message would be allocated for every
		// member of every chunk.
		switch string(plainKey(k, &kb)) {
		case "index":
			n, ok := parseIndex(v)
			if !ok {
				return fmt.Errorf("stream chunk has a choice index that is not a small integer: %q", clip(v))
			}
			index = n
		case "delta":
			if a.kind == Completion && !isNull(v) && !isEmptyContainer(v) {
				a.note(`a text_completion choice carries "delta"`)
			}
			delta = v
		case "text":
			if a.kind == Chat && !isNull(v) {
				a.note(`a chat choice carries "text"`)
			}
			txt = v
		case "message":
			if !isNull(v) {
				a.note(`a stream choice carries "message"`)
			}
		case "logprobs":
			logprobs = v
		case "finish_reason":
			finish = v
		}
	}
	st := a.state(index)
	if a.kind == Chat && !isNull(delta) {
		if !isObject(delta) {
			return fmt.Errorf("choice %d has a delta that is not an object: %q", index, clip(delta))
		}
		if err := a.delta(st, delta); err != nil {
			return err
		}
	}
	if a.kind == Completion && !isNull(txt) {
		if !isString(txt) {
			return fmt.Errorf("choice %d has text that is not a string: %q", index, clip(txt))
		}
		st.text.add(strBody(txt))
	}
	if !isNull(logprobs) {
		if !isObject(logprobs) {
			return fmt.Errorf("choice %d has logprobs that are not an object: %q", index, clip(logprobs))
		}
		st.lpSeen = true
		names := logprobKeys[a.kind]
		lm := objectMembers(logprobs)
		for k, v, ok := lm.next(); ok; k, v, ok = lm.next() {
			pk := plainKey(k, &kb)
			for i, name := range names {
				if string(pk) != name || isNull(v) {
					continue
				}
				if !isArray(v) {
					return fmt.Errorf("choice %d has logprobs.%s that is not an array", index, name)
				}
				st.lp[i].add(v)
			}
		}
	}
	if !isNull(finish) {
		st.finish = AppendCompact(st.finish[:0], finish)
	}
	return nil
}

func (a *Assembler) delta(st *choiceState, delta []byte) error {
	var kb [64]byte
	m := objectMembers(delta)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		if isNull(v) {
			continue
		}
		switch string(plainKey(k, &kb)) {
		case "role":
			if !isString(v) {
				return fmt.Errorf("choice %d has a role that is not a string: %q", st.index, clip(v))
			}
			firstRaw(&st.role, v)
		case "content":
			if !isString(v) {
				// Content given as an array of parts has no streaming form the SDKs accumulate.
				a.note("choice %d has content that is not a string", st.index)
				continue
			}
			st.content.add(strBody(v))
		case "refusal":
			if !isString(v) {
				a.note("choice %d has refusal that is not a string", st.index)
				continue
			}
			st.refusal.add(strBody(v))
		case "tool_calls":
			if !isArray(v) {
				return fmt.Errorf("choice %d has tool_calls that are not an array: %q", st.index, clip(v))
			}
			e := arrayElements(v)
			for tc, ok := e.next(); ok; tc, ok = e.next() {
				if err := a.toolDelta(st, tc); err != nil {
					return err
				}
			}
		case "function_call":
			if !isObject(v) {
				return fmt.Errorf("choice %d has a function_call that is not an object: %q", st.index, clip(v))
			}
			if st.fn == nil {
				st.fn = new(toolState)
			}
			if err := a.function(st, st.fn, v); err != nil {
				return err
			}
		default:
			switch {
			case isString(v) && bytes.IndexByte(k, '\\') < 0:
				// Kept under its raw key. A key spelled with escapes could name the same field as another
				// spelling and end up twice in the answer; no server writes one, so it is refused below.
				st.extraText(k).add(strBody(v))
			case isEmptyContainer(v):
				// "annotations": [] and the like carry nothing.
			default:
				a.note("choice %d has a delta field %q that cannot be assembled", st.index, k)
			}
		}
	}
	return nil
}

func (st *choiceState) extraText(key []byte) *text {
	for i := range st.extra {
		if bytes.Equal(st.extra[i].key, key) {
			return &st.extra[i].text
		}
	}
	st.extra = append(st.extra, namedText{key: append([]byte(nil), key...)})
	return &st.extra[len(st.extra)-1].text
}

// toolDelta folds one element of a delta's tool_calls.
func (a *Assembler) toolDelta(st *choiceState, tc []byte) error {
	if !isObject(tc) {
		return fmt.Errorf("choice %d has a tool call that is not an object: %q", st.index, clip(tc))
	}
	var kb [64]byte
	var id, typ, fn []byte
	index := -1
	m := objectMembers(tc)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		switch string(plainKey(k, &kb)) {
		case "index":
			n, ok := parseIndex(v)
			if !ok {
				return fmt.Errorf("choice %d has a tool call index that is not a small integer: %q", st.index, clip(v))
			}
			index = n
		case "id":
			id = v
		case "type":
			typ = v
		case "function":
			fn = v
		default:
			if !isNull(v) && !isEmptyContainer(v) {
				a.note("choice %d has a tool call field %q that cannot be assembled", st.index, k)
			}
		}
	}
	if index < 0 {
		// Some servers leave the index out and send each call whole: a new id starts a new call, anything
		// else continues the last one.
		index = 0
		if n := len(st.tools); n > 0 {
			last := &st.tools[n-1]
			index = last.index
			if isString(id) && last.id != nil && !bytes.Equal(id, last.id) {
				index = slices.MaxFunc(st.tools, func(x, y toolState) int { return x.index - y.index }).index + 1
			}
		}
	}
	t := st.tool(index)
	for _, v := range [...][]byte{id, typ} {
		if !isNull(v) && !isString(v) {
			return fmt.Errorf("choice %d tool call %d has an id or type that is not a string", st.index, index)
		}
	}
	firstRaw(&t.id, id)
	firstRaw(&t.typ, typ)
	if !isNull(fn) {
		if !isObject(fn) {
			return fmt.Errorf("choice %d tool call %d has a function that is not an object", st.index, index)
		}
		return a.function(st, t, fn)
	}
	return nil
}

func (st *choiceState) tool(index int) *toolState {
	for i := range st.tools {
		if st.tools[i].index == index {
			return &st.tools[i]
		}
	}
	st.tools = append(st.tools, toolState{index: index})
	return &st.tools[len(st.tools)-1]
}

// function folds a {"name":..,"arguments":..} delta into t.
func (a *Assembler) function(st *choiceState, t *toolState, fn []byte) error {
	var kb [64]byte
	m := objectMembers(fn)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		if isNull(v) {
			continue
		}
		switch string(plainKey(k, &kb)) {
		case "name":
			if !isString(v) {
				return fmt.Errorf("choice %d has a function name that is not a string", st.index)
			}
			firstRaw(&t.name, v)
		case "arguments":
			if !isString(v) {
				return fmt.Errorf("choice %d has function arguments that are not a string", st.index)
			}
			t.arguments.add(strBody(v))
		default:
			if !isEmptyContainer(v) {
				a.note("choice %d has a function field %q that cannot be assembled", st.index, k)
			}
		}
	}
	return nil
}

// Result returns the assembled JSON body when the stream is complete: [DONE] was seen, at least one choice,
// every choice has a non-null finish_reason, no error. Otherwise ok is false and reason says why. The body is
// newly allocated on each call.
func (a *Assembler) Result() (body []byte, ok bool, reason string) {
	switch {
	case a.err != nil:
		return nil, false, a.err.Error()
	case a.problem != "":
		return nil, false, a.problem
	case !a.done:
		return nil, false, "stream ended without [DONE]"
	case len(a.choices) == 0:
		return nil, false, "stream had no choices"
	}
	slices.SortFunc(a.choices, func(x, y choiceState) int { return x.index - y.index })
	size := 256 + len(a.id) + len(a.model) + len(a.usage) + len(a.fingerprint) + len(a.tier)
	for i := range a.choices {
		c := &a.choices[i]
		if c.finish == nil {
			return nil, false, fmt.Sprintf("choice %d has no finish_reason", c.index)
		}
		size += c.size()
	}
	b := make([]byte, 0, size)
	b = append(b, `{"id":`...)
	b = appendRawOrNull(b, a.id)
	if a.kind == Chat {
		b = append(b, `,"object":"chat.completion","created":`...)
	} else {
		b = append(b, `,"object":"text_completion","created":`...)
	}
	b = appendRawOrNull(b, a.created)
	b = append(b, `,"model":`...)
	b = appendRawOrNull(b, a.model)
	b = append(b, `,"choices":[`...)
	for i := range a.choices {
		if i > 0 {
			b = append(b, ',')
		}
		b = a.appendChoice(b, &a.choices[i])
	}
	b = append(b, ']')
	if a.usage != nil {
		b = append(append(b, `,"usage":`...), a.usage...)
	}
	if a.fingerprint != nil {
		b = append(append(b, `,"system_fingerprint":`...), a.fingerprint...)
	}
	if a.tier != nil && a.kind == Chat {
		b = append(append(b, `,"service_tier":`...), a.tier...)
	}
	b = append(b, '}')
	return b, true, ""
}

// size estimates the bytes a choice takes in the answer, so that Result allocates once.
func (c *choiceState) size() int {
	n := 160 + len(c.role) + len(c.content.b) + len(c.refusal.b) + len(c.text.b) + len(c.finish)
	for _, x := range c.extra {
		n += 8 + len(x.key) + len(x.b)
	}
	for _, t := range c.tools {
		n += 64 + len(t.id) + len(t.typ) + len(t.name) + len(t.arguments.b)
	}
	if c.fn != nil {
		n += 48 + len(c.fn.name) + len(c.fn.arguments.b)
	}
	for _, l := range c.lp {
		n += 24 + len(l.b)
	}
	return n
}

func (a *Assembler) appendChoice(b []byte, c *choiceState) []byte {
	if a.kind == Completion {
		b = append(b, `{"text":`...)
		b = appendText(b, c.text, `""`)
		b = append(b, `,"index":`...)
		b = strconv.AppendInt(b, int64(c.index), 10)
	} else {
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(c.index), 10)
		b = append(b, `,"message":{"role":`...)
		if c.role != nil {
			b = append(b, c.role...)
		} else {
			b = append(b, `"assistant"`...)
		}
		b = append(b, `,"content":`...)
		b = appendText(b, c.content, "null")
		b = append(b, `,"refusal":`...)
		b = appendText(b, c.refusal, "null")
		for _, x := range c.extra {
			b = append(append(append(b, `,"`...), x.key...), `":`...)
			b = appendText(b, x.text, "null")
		}
		if len(c.tools) > 0 {
			slices.SortFunc(c.tools, func(x, y toolState) int { return x.index - y.index })
			b = append(b, `,"tool_calls":[`...)
			for i := range c.tools {
				t := &c.tools[i]
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"id":`...)
				b = appendRawOrNull(b, t.id)
				b = append(b, `,"type":`...)
				if t.typ != nil {
					b = append(b, t.typ...)
				} else {
					b = append(b, `"function"`...)
				}
				b = append(b, `,"function":`...)
				b = appendFunction(b, t)
				b = append(b, '}')
			}
			b = append(b, ']')
		}
		if c.fn != nil {
			b = append(b, `,"function_call":`...)
			b = appendFunction(b, c.fn)
		}
		b = append(b, '}')
	}
	b = append(b, `,"logprobs":`...)
	if c.lpSeen {
		for i, name := range logprobKeys[a.kind] {
			if i == 0 {
				b = append(b, '{')
			} else {
				b = append(b, ',')
			}
			b = append(append(append(b, '"'), name...), `":`...)
			if l := c.lp[i]; l.seen {
				b = append(append(append(b, '['), l.b...), ']')
			} else {
				b = append(b, "null"...)
			}
		}
		b = append(b, '}')
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"finish_reason":`...)
	b = append(b, c.finish...)
	return append(b, '}')
}

func appendFunction(b []byte, t *toolState) []byte {
	b = append(b, `{"name":`...)
	b = appendRawOrNull(b, t.name)
	b = append(b, `,"arguments":`...)
	b = appendText(b, t.arguments, `""`)
	return append(b, '}')
}

// appendText writes t as a JSON string, or unseen when no delta carried it.
func appendText(b []byte, t text, unseen string) []byte {
	if !t.seen {
		return append(b, unseen...)
	}
	return append(append(append(b, '"'), t.b...), '"')
}
