package sse

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// pieceBytes is the target size of one replayed text delta, counted in the escaped JSON form. Real upstreams
// send a token (~4 bytes) per chunk; a replay has no reason to be that chatty, but clients that render
// progressively (and tests that count deltas) still see a stream rather than one blob. Each chunk repeats an
// envelope of ~150 bytes (id, model, created...): with 48-byte pieces a 1.3 KB answer replayed as 6.6 KB and
// streamed hits ran at ~0.6x plain ones; with 192, 2.8 KB (bench/README.md).
const pieceBytes = 192

var (
	keyContent = []byte("content")
	keyRefusal = []byte("refusal")
	done       = []byte("data: [DONE]\n\n")
)

// choiceRef is a stored choice and the index it is replayed under.
type choiceRef struct {
	index int
	raw   []byte
}

// Synthesize appends to dst the SSE replay of a stored non-streamed answer body of the given kind, ending with
// "data: [DONE]". includeUsage mirrors the request's stream_options.include_usage: every chunk then carries
// "usage":null, and a last chunk with no choices carries the stored usage (when the answer has one).
//
// The body's layout does not matter: every value copied from it is compacted, so each event is one data line
// and an indented answer replays exactly like its compact form.
//
// Choices are replayed one after the other in index order (the SDKs accumulate by index, so they need not
// interleave). A chat choice gives a role chunk, then its other text fields (reasoning_content...), content,
// refusal, tool calls (a header delta with id, type and name, then argument pieces), legacy function_call, and
// a closing chunk with an empty delta and the finish_reason. The stored logprobs object rides whole on the
// first content chunk (or the first refusal chunk, or the closing chunk when there is no text).
//
// It allocates nothing when dst has room (and the answer has at most 8 choices). On error, dst is returned
// unchanged: the answer cannot be replayed as a stream (it is not a JSON answer of this kind, or its content
// is not text), and the caller should treat it as a miss.
func Synthesize(dst []byte, kind Kind, body []byte, includeUsage bool) ([]byte, error) {
	if kind != Chat && kind != Completion {
		return dst, fmt.Errorf("cannot replay a stored answer of %v", kind)
	}
	if err := validate(body); err != nil {
		return dst, fmt.Errorf("cannot replay stored answer: %w", err)
	}
	body = bytes.TrimSpace(body)
	if !isObject(body) {
		return dst, fmt.Errorf("cannot replay stored answer: not a JSON object")
	}
	w := writer{b: dst, kind: kind, includeUsage: includeUsage}
	var choices, usage []byte
	var kb [64]byte
	m := objectMembers(body)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		if isNull(v) {
			continue
		}
		switch string(plainKey(k, &kb)) {
		case "id":
			w.id = v
		case "created":
			w.created = v
		case "model":
			w.model = v
		case "system_fingerprint":
			w.fingerprint = v
		case "service_tier":
			if kind == Chat {
				w.tier = v
			}
		case "choices":
			choices = v
		case "usage":
			usage = v
		}
	}
	if !isArray(choices) {
		return dst, fmt.Errorf("cannot replay stored answer: it has no choices array")
	}

	// Collect the choices to replay them in index order. Stored answers are almost always in order already;
	// the array on the stack keeps the common n <= 8 free of allocations.
	var refsBuf [8]choiceRef
	refs := refsBuf[:0]
	e := arrayElements(choices)
	for c, ok := e.next(); ok; c, ok = e.next() {
		if !isObject(c) {
			return dst, fmt.Errorf("cannot replay stored answer: choice %d is not an object", len(refs))
		}
		ref := choiceRef{index: len(refs), raw: c}
		cm := objectMembers(c)
		for k, v, ok := cm.next(); ok; k, v, ok = cm.next() {
			if string(plainKey(k, &kb)) == "index" {
				n, ok := parseIndex(v)
				if !ok {
					return dst, fmt.Errorf("cannot replay stored answer: choice index %q is not a small integer", v)
				}
				ref.index = n
			}
		}
		refs = append(refs, ref)
	}
	if len(refs) == 0 {
		return dst, fmt.Errorf("cannot replay stored answer: it has no choices")
	}
	slices.SortStableFunc(refs, func(x, y choiceRef) int { return x.index - y.index })

	for _, r := range refs {
		w.index = r.index
		var err error
		if kind == Chat {
			err = w.chatChoice(r.raw)
		} else {
			err = w.completionChoice(r.raw)
		}
		if err != nil {
			return dst, fmt.Errorf("cannot replay stored answer: choice %d: %w", r.index, err)
		}
	}
	if includeUsage && usage != nil {
		w.usageChunk(usage)
	}
	return append(w.b, done...), nil
}

// writer appends chunks. The raw values point into the stored body.
type writer struct {
	b                                     []byte
	kind                                  Kind
	includeUsage                          bool
	id, created, model, fingerprint, tier []byte
	index                                 int    // of the choice being replayed
	lp                                    []byte // logprobs not yet attached to a chunk of this choice
	toolID, toolType                      []byte // of the tool call being replayed (nil: absent)
}

// open appends the start of a chunk, up to the value of "delta" (chat) or "text" (completion).
func (w *writer) open() {
	b := append(w.b, `data: {"id":`...)
	b = appendRawOrNull(b, w.id)
	if w.kind == Chat {
		b = append(b, `,"object":"chat.completion.chunk","created":`...)
		b = appendRawOrNull(b, w.created)
		b = w.appendModel(b)
		b = append(b, `,"choices":[{"index":`...)
		b = strconv.AppendInt(b, int64(w.index), 10)
		b = append(b, `,"delta":`...)
	} else {
		b = append(b, `,"object":"text_completion","created":`...)
		b = appendRawOrNull(b, w.created)
		b = append(b, `,"choices":[{"text":`...)
	}
	w.b = b
}

// close appends the rest of a chunk after the delta or text.
func (w *writer) close(logprobs, finish []byte) {
	b := w.b
	if w.kind == Completion {
		b = append(b, `,"index":`...)
		b = strconv.AppendInt(b, int64(w.index), 10)
	}
	b = append(b, `,"logprobs":`...)
	b = appendRawOrNull(b, logprobs)
	b = append(b, `,"finish_reason":`...)
	b = appendRawOrNull(b, finish)
	b = append(b, "}]"...)
	if w.kind == Completion {
		b = w.appendModel(b)
	}
	if w.includeUsage {
		b = append(b, `,"usage":null`...)
	}
	w.b = append(b, "}\n\n"...)
}

// appendModel appends the model and, when stored, service tier and system fingerprint: after "created" in a
// chat chunk, after "choices" in a completion chunk, as OpenAI orders them.
func (w *writer) appendModel(b []byte) []byte {
	b = append(b, `,"model":`...)
	b = appendRawOrNull(b, w.model)
	if w.tier != nil {
		b = AppendCompact(append(b, `,"service_tier":`...), w.tier)
	}
	if w.fingerprint != nil {
		b = AppendCompact(append(b, `,"system_fingerprint":`...), w.fingerprint)
	}
	return b
}

func (w *writer) usageChunk(usage []byte) {
	b := append(w.b, `data: {"id":`...)
	b = appendRawOrNull(b, w.id)
	if w.kind == Chat {
		b = append(b, `,"object":"chat.completion.chunk","created":`...)
		b = appendRawOrNull(b, w.created)
		b = w.appendModel(b)
		b = append(b, `,"choices":[]`...)
	} else {
		b = append(b, `,"object":"text_completion","created":`...)
		b = appendRawOrNull(b, w.created)
		b = append(b, `,"choices":[]`...)
		b = w.appendModel(b)
	}
	b = AppendCompact(append(b, `,"usage":`...), usage)
	w.b = append(b, "}\n\n"...)
}

// takeLP returns the choice's logprobs the first time it is called for the choice, then nil.
func (w *writer) takeLP() []byte {
	lp := w.lp
	w.lp = nil
	return lp
}

// textDeltas appends one chat chunk per piece of the escaped string body s, as {"key":"piece"}. An empty s
// gives one chunk with "" when emitEmpty (so that the assembled field is "" and not null). withLP attaches the
// pending logprobs to the first chunk.
func (w *writer) textDeltas(key, s []byte, emitEmpty, withLP bool) {
	if len(s) == 0 && !emitEmpty {
		return
	}
	for i := 0; i < len(s) || i == 0; {
		end := nextPiece(s, i)
		w.open()
		w.b = append(append(append(w.b, `{"`...), key...), `":"`...)
		w.b = append(append(w.b, s[i:end]...), `"}`...)
		var lp []byte
		if withLP {
			lp = w.takeLP()
		}
		w.close(lp, nil)
		if end == len(s) {
			break
		}
		i = end
	}
}

func (w *writer) chatChoice(c []byte) error {
	var kb [64]byte
	var msg, finish []byte
	m := objectMembers(c)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		switch string(plainKey(k, &kb)) {
		case "message":
			msg = v
		case "logprobs":
			if !isNull(v) {
				w.lp = v
			}
		case "finish_reason":
			finish = v
		}
	}
	if err := w.checkLogprobs(); err != nil {
		return err
	}
	if !isObject(msg) {
		return fmt.Errorf("no message object")
	}
	var role, content, refusal, toolCalls, fnCall []byte
	m = objectMembers(msg)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		switch string(plainKey(k, &kb)) {
		case "role":
			role = v
		case "content":
			content = v
		case "refusal":
			refusal = v
		case "tool_calls":
			toolCalls = v
		case "function_call":
			fnCall = v
		}
	}
	switch {
	case !isNull(role) && !isString(role):
		return fmt.Errorf("role is not a string")
	case !isNull(content) && !isString(content):
		// Content as an array of parts has no delta form that the SDKs accumulate.
		return fmt.Errorf("content is not a string")
	case !isNull(refusal) && !isString(refusal):
		return fmt.Errorf("refusal is not a string")
	case !isNull(toolCalls) && !isArray(toolCalls):
		return fmt.Errorf("tool_calls is not an array")
	case !isNull(fnCall) && !isObject(fnCall):
		return fmt.Errorf("function_call is not an object")
	}

	// The role chunk. Its content is "" as OpenAI sends it, except for a stored null content (a tool-call
	// answer), which must stay null when the SDK accumulates the replay.
	w.open()
	w.b = append(w.b, `{"role":`...)
	if isString(role) {
		w.b = AppendCompact(w.b, role)
	} else {
		w.b = append(w.b, `"assistant"`...)
	}
	if isString(content) {
		w.b = append(w.b, `,"content":""}`...)
	} else {
		w.b = append(w.b, `,"content":null}`...)
	}
	w.close(nil, nil)

	// Other text fields (reasoning_content, reasoning) stream before the content, as reasoning models do.
	m = objectMembers(msg)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		if isString(v) && !knownMessageKey(k) {
			w.textDeltas(k, strBody(v), true, false)
		}
	}
	if isString(content) {
		w.textDeltas(keyContent, strBody(content), false, true)
	}
	if isString(refusal) {
		w.textDeltas(keyRefusal, strBody(refusal), true, true)
	}
	if isArray(toolCalls) {
		e := arrayElements(toolCalls)
		for j := 0; ; j++ {
			tc, ok := e.next()
			if !ok {
				break
			}
			if err := w.toolCall(j, tc); err != nil {
				return err
			}
		}
	}
	if isObject(fnCall) {
		if err := w.function(-1, fnCall); err != nil {
			return err
		}
	}
	// Fields without a streaming form of their own ("annotations", "audio") go whole in one delta each, which
	// the SDKs' accumulators take as they are.
	m = objectMembers(msg)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		if !isNull(v) && !isString(v) && !knownMessageKey(k) {
			w.open()
			w.b = append(append(append(w.b, `{"`...), k...), `":`...)
			w.b = append(AppendCompact(w.b, v), '}')
			w.close(nil, nil)
		}
	}
	w.open()
	w.b = append(w.b, "{}"...)
	w.close(w.takeLP(), finish)
	return nil
}

func knownMessageKey(k []byte) bool {
	var kb [64]byte
	switch string(plainKey(k, &kb)) {
	case "role", "content", "refusal", "tool_calls", "function_call":
		return true
	}
	return false
}

// toolCall replays tool call j: a header delta with its id, type and name and empty arguments, then the
// arguments in pieces.
func (w *writer) toolCall(j int, tc []byte) error {
	if !isObject(tc) {
		return fmt.Errorf("tool call %d is not an object", j)
	}
	var kb [64]byte
	var id, typ, fn []byte
	m := objectMembers(tc)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		switch string(plainKey(k, &kb)) {
		case "id":
			id = v
		case "type":
			typ = v
		case "function":
			fn = v
		}
	}
	if !isObject(fn) {
		return fmt.Errorf("tool call %d has no function object", j)
	}
	if !isNull(id) && !isString(id) || !isNull(typ) && !isString(typ) {
		return fmt.Errorf("tool call %d has an id or type that is not a string", j)
	}
	if isNull(typ) {
		typ = nil
	}
	w.toolID, w.toolType = id, typ
	return w.function(j, fn)
}

// function replays a function (name, then arguments in pieces) as tool call j, or as the legacy function_call
// when j < 0.
func (w *writer) function(j int, fn []byte) error {
	var kb [64]byte
	var name, args []byte
	m := objectMembers(fn)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		switch string(plainKey(k, &kb)) {
		case "name":
			name = v
		case "arguments":
			args = v
		}
	}
	if !isNull(name) && !isString(name) || !isNull(args) && !isString(args) {
		return fmt.Errorf("function name or arguments is not a string")
	}
	w.open()
	w.openFunction(j, true)
	w.b = append(w.b, `{"name":`...)
	w.b = appendRawOrNull(w.b, name)
	w.b = append(w.b, `,"arguments":""}`...)
	w.closeFunction(j)
	w.close(nil, nil)
	if !isString(args) {
		return nil
	}
	s := strBody(args)
	for i := 0; i < len(s); {
		end := nextPiece(s, i)
		w.open()
		w.openFunction(j, false)
		w.b = append(append(append(w.b, `{"arguments":"`...), s[i:end]...), `"}`...)
		w.closeFunction(j)
		w.close(nil, nil)
		i = end
	}
	return nil
}

// openFunction appends the delta up to the function object: {"tool_calls":[{"index":j,["id":..,"type":..,]"function":
// for a tool call, {"function_call": for the legacy form.
func (w *writer) openFunction(j int, header bool) {
	if j < 0 {
		w.b = append(w.b, `{"function_call":`...)
		return
	}
	w.b = append(w.b, `{"tool_calls":[{"index":`...)
	w.b = strconv.AppendInt(w.b, int64(j), 10)
	if header {
		w.b = append(w.b, `,"id":`...)
		w.b = appendRawOrNull(w.b, w.toolID)
		w.b = append(w.b, `,"type":`...)
		if w.toolType != nil {
			w.b = AppendCompact(w.b, w.toolType)
		} else {
			w.b = append(w.b, `"function"`...)
		}
	}
	w.b = append(w.b, `,"function":`...)
}

func (w *writer) closeFunction(j int) {
	if j < 0 {
		w.b = append(w.b, '}')
	} else {
		w.b = append(w.b, "}]}"...)
	}
}

func (w *writer) completionChoice(c []byte) error {
	var kb [64]byte
	var txt, finish []byte
	m := objectMembers(c)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		switch string(plainKey(k, &kb)) {
		case "text":
			txt = v
		case "logprobs":
			if !isNull(v) {
				w.lp = v
			}
		case "finish_reason":
			finish = v
		}
	}
	if err := w.checkLogprobs(); err != nil {
		return err
	}
	if !isString(txt) {
		return fmt.Errorf("no text string")
	}
	s := strBody(txt)
	for i := 0; i < len(s); {
		end := nextPiece(s, i)
		w.open()
		w.b = append(append(append(w.b, '"'), s[i:end]...), '"')
		w.close(w.takeLP(), nil)
		i = end
	}
	w.open()
	w.b = append(w.b, `""`...)
	w.close(w.takeLP(), finish)
	return nil
}

// checkLogprobs refuses a logprobs value that the SDKs (and the Assembler) could not read: it must be an
// object whose arrays (content and refusal, or the four of a completion) are arrays or null.
func (w *writer) checkLogprobs() error {
	if w.lp == nil {
		return nil
	}
	if !isObject(w.lp) {
		return fmt.Errorf("logprobs is not an object")
	}
	var kb [64]byte
	m := objectMembers(w.lp)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		if isNull(v) || isArray(v) {
			continue
		}
		pk := plainKey(k, &kb)
		for _, name := range logprobKeys[w.kind] {
			if string(pk) == name {
				return fmt.Errorf("logprobs.%s is not an array", name)
			}
		}
	}
	return nil
}

// nextPiece returns where the piece of the escaped string body s that starts at i ends: about pieceBytes
// later, never inside a UTF-8 sequence, an escape or a surrogate pair written as two escapes, and preferably
// just after a space or an escaped newline, so that words arrive whole.
func nextPiece(s []byte, i int) int {
	if len(s)-i <= pieceBytes {
		return len(s)
	}
	limit := i + pieceBytes
	if asciiNoEscape(s[i:limit]) {
		// The common case (English text): every byte is a boundary, so only the last space matters.
		lo := i + pieceBytes/2
		if k := bytes.LastIndexByte(s[lo:limit], ' '); k >= 0 {
			return lo + k + 1
		}
		return limit
	}
	return nextPieceTokens(s, i)
}

// nextPieceTokens is nextPiece for text with escapes or non-ASCII characters: it walks the units a piece must
// not split.
func nextPieceTokens(s []byte, i int) int {
	if len(s)-i <= pieceBytes {
		return len(s)
	}
	limit := i + pieceBytes
	brk := -1 // the last word boundary seen
	j := i
	for j < len(s) {
		n := tokenLen(s, j)
		if j+n > limit && j > i {
			break
		}
		if s[j] == ' ' || s[j] == '\\' && n == 2 && s[j+1] == 'n' {
			brk = j + n
		}
		j += n
	}
	if brk > i+pieceBytes/2 {
		return brk
	}
	return j
}

// asciiNoEscape reports whether b is plain ASCII without escapes.
func asciiNoEscape(b []byte) bool {
	for _, c := range b {
		if c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// tokenLen returns the length of the smallest unit at s[j] that a piece must not split.
func tokenLen(s []byte, j int) int {
	c := s[j]
	switch {
	case c == '\\':
		if len(s)-j >= 6 && s[j+1] == 'u' {
			if len(s)-j >= 12 && isSurrogate(s[j+2:j+6], false) && s[j+6] == '\\' && s[j+7] == 'u' && isSurrogate(s[j+8:j+12], true) {
				return 12
			}
			return 6
		}
		return min(2, len(s)-j)
	case c < utf8.RuneSelf:
		return 1
	default:
		_, n := utf8.DecodeRune(s[j:])
		return n
	}
}

// isSurrogate reports whether the four hex digits h are a high (D800-DBFF) or low (DC00-DFFF) surrogate.
func isSurrogate(h []byte, low bool) bool {
	if h[0] != 'd' && h[0] != 'D' {
		return false
	}
	switch h[1] {
	case '8', '9', 'a', 'b', 'A', 'B':
		return !low
	case 'c', 'd', 'e', 'f', 'C', 'D', 'E', 'F':
		return low
	}
	return false
}
