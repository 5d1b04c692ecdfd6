package sse

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// The Responses API (/v1/responses) streams typed events: every event's data is a JSON object whose "type"
// names it ("response.created", "response.output_text.delta", ..., "response.completed"), and OpenAI also
// writes that name in the event's "event:" field. The stream carries no [DONE]: it ends with
// response.completed (or response.incomplete, or response.failed), whose "response" is the whole response
// object, the same the request without "stream" would have returned.

// Names of the events that end a Responses stream.
const (
	ResponseCompleted  = "response.completed"
	ResponseIncomplete = "response.incomplete"
	ResponseFailed     = "response.failed"
)

// ResponseEventType returns the type of one raw Responses event: the "type" member of its data, or, for data
// without one, its "event:" field. It returns "" for events without data (comments, keep-alives) and for
// data that is not a JSON object. It reads the data's members only up to "type", which OpenAI writes first.
func ResponseEventType(event []byte) string {
	var buf [2048]byte
	data, et, _, ok := parseEvent(event, buf[:0])
	if !ok {
		return ""
	}
	data = bytes.TrimSpace(data)
	if isObject(data) {
		if t := memberString(data, "type"); t != "" {
			return t
		}
	}
	return string(et)
}

// IsResponseEnd reports whether a raw Responses event is the one that ends its stream: response.completed,
// response.incomplete or response.failed.
func IsResponseEnd(event []byte) bool {
	switch ResponseEventType(event) {
	case ResponseCompleted, ResponseIncomplete, ResponseFailed:
		return true
	}
	return false
}

// memberString returns the decoded value of obj's member key when it is a string, else "". obj must be a
// JSON object; it need not be validated (the iterators never read out of range).
func memberString(obj []byte, key string) string {
	var kb, vb [64]byte
	m := objectMembers(obj)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		if string(plainKey(k, &kb)) != key {
			continue
		}
		if !isString(v) {
			return ""
		}
		s := strBody(v)
		if bytes.IndexByte(s, '\\') < 0 {
			return string(s)
		}
		dec, ok := unescape(vb[:0], s)
		if !ok {
			return ""
		}
		return string(dec)
	}
	return ""
}

// member returns the raw value of obj's member key (the last one, when it appears twice), or nil.
func member(obj []byte, key string) []byte {
	var kb [64]byte
	var out []byte
	m := objectMembers(obj)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		if string(plainKey(k, &kb)) == key {
			out = v
		}
	}
	return out
}

// ResponseAssembler keeps what a Responses stream's events say about the response: the response object of
// its response.completed (or response.incomplete) event, compacted. It is not safe for concurrent use, and
// keeps copies of what it needs, so events may be reused by the caller after Event returns.
//
// A stream that ends in response.failed or an error event, or ends without a final event, has no result.
// When the final event's response leaves "output" out (or null), the output is rebuilt from the items of
// the response.output_item.done events, in output_index order.
type ResponseAssembler struct {
	err     error  // sticky: the first error Event returned
	problem string // the first reason a well-formed stream still cannot be stored
	scratch []byte

	final     []byte // compacted response object of the final event
	finalType string
	items     []doneItem // from response.output_item.done, in arrival order
}

type doneItem struct {
	index int
	raw   []byte // compacted
}

// NewResponseAssembler returns an assembler for one Responses stream.
func NewResponseAssembler() *ResponseAssembler { return &ResponseAssembler{} }

// Event takes one raw event (from a Splitter). It returns an error (and every later call returns it) for an
// error event (`event: error` or a "type" of "error"), a response.failed event, data that is not a JSON
// object, and a final event whose "response" is not an object. Events without data, "data: [DONE]" (which
// some compatible servers add) and event types it does not need are ignored.
func (a *ResponseAssembler) Event(event []byte) error {
	if a.err != nil {
		return a.err
	}
	data, et, scratch, ok := parseEvent(event, a.scratch)
	a.scratch = scratch
	if string(et) == "error" {
		return a.fail(fmt.Errorf("%w: event: error: %s", ErrUpstream, clip(data)))
	}
	if !ok {
		return nil
	}
	data = bytes.TrimSpace(data)
	if string(data) == "[DONE]" {
		return nil
	}
	if err := validate(data); err != nil {
		return a.fail(fmt.Errorf("cannot read stream event %q: %w", clip(data), err))
	}
	if !isObject(data) {
		return a.fail(fmt.Errorf("stream event is not a JSON object: %q", clip(data)))
	}
	typ := memberString(data, "type")
	if typ == "" {
		typ = string(et)
	}
	if a.final != nil {
		a.note("an event after %s", a.finalType)
		return nil
	}
	switch typ {
	case "error":
		return a.fail(fmt.Errorf("%w: %s", ErrUpstream, clip(data)))
	case ResponseFailed:
		return a.fail(fmt.Errorf("%w: the response failed: %s", ErrUpstream, clip(member(member(data, "response"), "error"))))
	case ResponseCompleted, ResponseIncomplete:
		r := member(data, "response")
		if !isObject(r) {
			return a.fail(fmt.Errorf("%s has no response object", typ))
		}
		a.final, a.finalType = AppendCompact(make([]byte, 0, len(r)), r), typ
	case "response.output_item.done":
		item := member(data, "item")
		n, ok := parseIndex(member(data, "output_index"))
		if !ok || !isObject(item) {
			a.note("a response.output_item.done event without an output_index and an item")
			return nil
		}
		a.items = append(a.items, doneItem{index: n, raw: AppendCompact(nil, item)})
	}
	return nil
}

func (a *ResponseAssembler) fail(err error) error {
	a.err = err
	return err
}

func (a *ResponseAssembler) note(format string, args ...any) {
	if a.problem == "" {
		a.problem = fmt.Sprintf(format, args...)
	}
}

// Result returns the response to store when the stream ended with response.completed or
// response.incomplete and nothing went wrong; otherwise ok is false and reason says why. A final response
// whose status is neither "completed" nor "incomplete" (nor absent) is refused. The body is newly allocated.
func (a *ResponseAssembler) Result() (body []byte, ok bool, reason string) {
	switch {
	case a.err != nil:
		return nil, false, a.err.Error()
	case a.problem != "":
		return nil, false, a.problem
	case a.final == nil:
		return nil, false, "the stream ended without response.completed"
	}
	if st := memberString(a.final, "status"); st != "" && st != "completed" && st != "incomplete" {
		return nil, false, fmt.Sprintf("%s carries a response whose status is %q", a.finalType, st)
	}
	out := member(a.final, "output")
	switch {
	case isArray(out):
		return slices.Clone(a.final), true, ""
	case !isNull(out):
		return nil, false, "the final response's output is not an array"
	}
	return a.withItems(), true, ""
}

// withItems is the final response with its output made of the response.output_item.done items (the last
// one of each output_index), replacing a null output or added at the end.
func (a *ResponseAssembler) withItems() []byte {
	items := slices.Clone(a.items)
	slices.SortStableFunc(items, func(x, y doneItem) int { return x.index - y.index })
	arr := []byte{'['}
	for i, it := range items {
		if i+1 < len(items) && items[i+1].index == it.index {
			continue // a later item of the same index replaces it
		}
		if len(arr) > 1 {
			arr = append(arr, ',')
		}
		arr = append(arr, it.raw...)
	}
	arr = append(arr, ']')
	if member(a.final, "output") != nil {
		return appendObjectWith(nil, a.final, override{"output", arr})
	}
	b := append([]byte(nil), a.final[:len(a.final)-1]...)
	if !isEmptyContainer(a.final) {
		b = append(b, ',')
	}
	b = append(b, `"output":`...)
	b = append(b, arr...)
	return append(b, '}')
}

// override replaces the value of one member when an object is copied.
type override struct {
	key string
	val []byte
}

// appendObjectWith appends obj (a valid JSON object) compacted, with the value of each member named in over
// replaced; members not in obj are not added. Keys are copied as written.
func appendObjectWith(b, obj []byte, over ...override) []byte {
	var kb [64]byte
	b = append(b, '{')
	first := true
	m := objectMembers(obj)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(append(append(b, '"'), k...), `":`...)
		pk := plainKey(k, &kb)
		replaced := false
		for _, o := range over {
			if string(pk) == o.key {
				b = append(b, o.val...)
				replaced = true
				break
			}
		}
		if !replaced {
			b = AppendCompact(b, v)
		}
	}
	return append(b, '}')
}

// errNotResponse is returned by SynthesizeResponse for a body that is not a response it can replay.
var errNotResponse = errors.New("cannot replay stored response")
