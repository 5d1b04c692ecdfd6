package sse

import (
	"fmt"
	"strconv"
)

// SynthesizeResponse appends to dst the typed-event replay of a stored response (a non-streamed
// /v1/responses answer, or the response of a stream's response.completed), in the order OpenAI streams one:
//
//	response.created, response.in_progress         the response with status "in_progress", no output, no usage
//	for each output item, in order:
//	  response.output_item.added                    the item without its text (status "in_progress")
//	  message:   per content part, response.content_part.added, then
//	             output_text: response.output_text.delta pieces, an annotation.added per annotation,
//	                          response.output_text.done
//	             refusal:     response.refusal.delta pieces, response.refusal.done
//	             then response.content_part.done
//	  function_call:    response.function_call_arguments.delta pieces, .done
//	  custom_tool_call: response.custom_tool_call_input.delta pieces, .done
//	  reasoning: per summary part, response.reasoning_summary_part.added, response.reasoning_summary_text.delta
//	             pieces, .done, response.reasoning_summary_part.done; per reasoning_text content part, the same
//	             with response.content_part.* and response.reasoning_text.*
//	  response.output_item.done                     the item as stored
//	response.completed (or response.incomplete)     the stored response, whole
//
// Each event is "event: <type>" and one "data:" line whose object starts with its "type" and a
// "sequence_number" counting from 0. The SDKs' stream helpers (openai-node's ResponseStream, openai-python's
// ResponseStreamState, openai-go's accumulator) build their snapshot from these events and end with the
// response of the final event, which is the stored one. Every value copied from the body is compacted, so an
// indented body replays exactly like its compact form. Item types without a streaming form of their own
// (web_search_call, file_search_call, ...) are added and done whole.
//
// A body that is not a JSON object with an "output" array, or whose status is other than "completed",
// "incomplete" (or absent), is refused: dst is returned unchanged with an error, and the caller treats the
// entry as a miss.
func SynthesizeResponse(dst, body []byte) ([]byte, error) {
	if err := validate(body); err != nil {
		return dst, fmt.Errorf("%w: %w", errNotResponse, err)
	}
	body = trimWS(body)
	if !isObject(body) {
		return dst, fmt.Errorf("%w: not a JSON object", errNotResponse)
	}
	output := member(body, "output")
	if !isArray(output) {
		return dst, fmt.Errorf("%w: it has no output array", errNotResponse)
	}
	final := ResponseCompleted
	switch st := memberString(body, "status"); st {
	case "", "completed":
	case "incomplete":
		final = ResponseIncomplete
	default:
		return dst, fmt.Errorf("%w: its status is %q", errNotResponse, st)
	}
	w := rwriter{b: dst}
	pending := []override{{"status", []byte(`"in_progress"`)}, {"output", []byte("[]")}, {"usage", []byte("null")},
		{"incomplete_details", []byte("null")}, {"error", []byte("null")}, {"completed_at", []byte("null")}}
	for _, typ := range []string{"response.created", "response.in_progress"} {
		w.open(typ)
		w.b = append(w.b, `,"response":`...)
		w.b = appendObjectWith(w.b, body, pending...)
		w.close()
	}
	e := arrayElements(output)
	for i := 0; ; i++ {
		item, ok := e.next()
		if !ok {
			break
		}
		if !isObject(item) {
			return dst, fmt.Errorf("%w: output item %d is not an object", errNotResponse, i)
		}
		if err := w.item(i, item); err != nil {
			return dst, fmt.Errorf("%w: output item %d: %w", errNotResponse, i, err)
		}
	}
	w.open(final)
	w.b = AppendCompact(append(w.b, `,"response":`...), body)
	w.close()
	return w.b, nil
}

func trimWS(b []byte) []byte {
	i, j := skipWS(b, 0), len(b)
	for j > i && isWS(b[j-1]) {
		j--
	}
	return b[i:j]
}

// rwriter appends typed events, numbering them.
type rwriter struct {
	b      []byte
	seq    int64
	itemID []byte // raw JSON string of the item being replayed ("" when it has none)
	out    int    // its output_index
}

// open starts an event of type typ up to the end of its sequence_number; close ends it.
func (w *rwriter) open(typ string) {
	w.b = append(w.b, "event: "...)
	w.b = append(w.b, typ...)
	w.b = append(w.b, "\ndata: {\"type\":\""...)
	w.b = append(w.b, typ...)
	w.b = append(w.b, `","sequence_number":`...)
	w.b = strconv.AppendInt(w.b, w.seq, 10)
	w.seq++
}

func (w *rwriter) close() { w.b = append(w.b, "}\n\n"...) }

// at appends the item_id, output_index and, when index >= 0, the named index of the item's part.
func (w *rwriter) at(name string, index int) {
	w.b = append(w.b, `,"item_id":`...)
	w.b = append(w.b, w.itemID...)
	w.b = append(w.b, `,"output_index":`...)
	w.b = strconv.AppendInt(w.b, int64(w.out), 10)
	if index >= 0 {
		w.b = append(append(append(w.b, `,"`...), name...), `":`...)
		w.b = strconv.AppendInt(w.b, int64(index), 10)
	}
}

// field appends ,"name":value with value compacted.
func (w *rwriter) field(name string, value []byte) {
	w.b = append(append(append(w.b, `,"`...), name...), `":`...)
	w.b = AppendCompact(w.b, value)
}

// whole appends an event that carries an object under key (an item, or a part at the named index), with some
// members replaced.
func (w *rwriter) whole(typ, name string, index int, key string, obj []byte, over ...override) {
	w.open(typ)
	if name == "" { // an item event: its output_index only
		w.b = append(w.b, `,"output_index":`...)
		w.b = strconv.AppendInt(w.b, int64(w.out), 10)
	} else {
		w.at(name, index)
	}
	w.b = append(append(append(w.b, `,"`...), key...), `":`...)
	w.b = appendObjectWith(w.b, obj, over...)
	w.close()
}

// deltas appends one event of type typ per piece of the string s (raw JSON, escaped), each carrying the
// piece as "delta" after the item's location; extra is appended raw after the delta (e.g. `,"logprobs":[]`).
func (w *rwriter) deltas(typ, name string, index int, s []byte, extra string) {
	if !isString(s) {
		return
	}
	body := strBody(s)
	for i := 0; i < len(body); {
		end := nextPiece(body, i)
		w.open(typ)
		w.at(name, index)
		w.b = append(append(append(w.b, `,"delta":"`...), body[i:end]...), '"')
		w.b = append(w.b, extra...)
		w.close()
		i = end
	}
}

// done appends the event that ends a text: its location and the whole text under key, then extra fields.
func (w *rwriter) done(typ, name string, index int, key string, s []byte, extra ...override) {
	w.open(typ)
	w.at(name, index)
	if isString(s) {
		w.field(key, s)
	} else {
		w.b = append(append(append(w.b, `,"`...), key...), `":""`...)
	}
	for _, x := range extra {
		w.field(x.key, x.val)
	}
	w.close()
}

var (
	emptyString = []byte(`""`)
	emptyArray  = []byte(`[]`)
	inProgress  = []byte(`"in_progress"`)
)

// item replays output item i.
func (w *rwriter) item(i int, item []byte) error {
	w.out = i
	w.itemID = emptyString
	if id := member(item, "id"); isString(id) {
		w.itemID = AppendCompact(nil, id)
	}
	over := []override{{"status", inProgress}}
	typ := memberString(item, "type")
	var texts []byte // the array of parts whose text streams (content, summary)
	switch typ {
	case "message":
		texts = member(item, "content")
		over = append(over, override{"content", emptyArray})
	case "function_call":
		over = append(over, override{"arguments", emptyString})
	case "custom_tool_call":
		over = append(over, override{"input", emptyString})
	case "reasoning":
		over = append(over, override{"summary", emptyArray})
		if c := member(item, "content"); isArray(c) {
			over = append(over, override{"content", emptyArray})
		}
	default:
		over = nil
	}
	if texts != nil && !isArray(texts) {
		return fmt.Errorf("its content is not an array")
	}
	w.whole("response.output_item.added", "", -1, "item", item, over...)
	switch typ {
	case "message":
		if err := w.messageParts(texts); err != nil {
			return err
		}
	case "function_call":
		args := member(item, "arguments")
		w.deltas("response.function_call_arguments.delta", "", -1, args, "")
		var extra []override
		if name := member(item, "name"); isString(name) {
			extra = append(extra, override{"name", name})
		}
		w.done("response.function_call_arguments.done", "", -1, "arguments", args, extra...)
	case "custom_tool_call":
		input := member(item, "input")
		w.deltas("response.custom_tool_call_input.delta", "", -1, input, "")
		w.done("response.custom_tool_call_input.done", "", -1, "input", input)
	case "reasoning":
		if err := w.reasoning(item); err != nil {
			return err
		}
	}
	w.whole("response.output_item.done", "", -1, "item", item)
	return nil
}

// messageParts replays the content parts of a message item.
func (w *rwriter) messageParts(content []byte) error {
	e := arrayElements(content)
	for j := 0; ; j++ {
		part, ok := e.next()
		if !ok {
			return nil
		}
		if !isObject(part) {
			return fmt.Errorf("content part %d is not an object", j)
		}
		switch memberString(part, "type") {
		case "output_text":
			over := []override{{"text", emptyString}, {"annotations", emptyArray}, {"logprobs", emptyArray}}
			w.whole("response.content_part.added", "content_index", j, "part", part, over...)
			text := member(part, "text")
			w.deltas("response.output_text.delta", "content_index", j, text, `,"logprobs":[]`)
			if anns := member(part, "annotations"); isArray(anns) {
				ae := arrayElements(anns)
				for k := 0; ; k++ {
					ann, ok := ae.next()
					if !ok {
						break
					}
					w.open("response.output_text.annotation.added")
					w.at("content_index", j)
					w.b = append(w.b, `,"annotation_index":`...)
					w.b = strconv.AppendInt(w.b, int64(k), 10)
					w.field("annotation", ann)
					w.close()
				}
			}
			lp := member(part, "logprobs")
			if !isArray(lp) {
				lp = emptyArray
			}
			w.done("response.output_text.done", "content_index", j, "text", text, override{"logprobs", lp})
		case "refusal":
			w.whole("response.content_part.added", "content_index", j, "part", part, override{"refusal", emptyString})
			refusal := member(part, "refusal")
			w.deltas("response.refusal.delta", "content_index", j, refusal, "")
			w.done("response.refusal.done", "content_index", j, "refusal", refusal)
		default:
			w.whole("response.content_part.added", "content_index", j, "part", part)
		}
		w.whole("response.content_part.done", "content_index", j, "part", part)
	}
}

// reasoning replays a reasoning item's summary parts, then its reasoning_text content parts.
func (w *rwriter) reasoning(item []byte) error {
	if s := member(item, "summary"); isArray(s) {
		e := arrayElements(s)
		for k := 0; ; k++ {
			part, ok := e.next()
			if !ok {
				break
			}
			if !isObject(part) {
				return fmt.Errorf("summary part %d is not an object", k)
			}
			text := member(part, "text")
			w.whole("response.reasoning_summary_part.added", "summary_index", k, "part", part, override{"text", emptyString})
			w.deltas("response.reasoning_summary_text.delta", "summary_index", k, text, "")
			w.done("response.reasoning_summary_text.done", "summary_index", k, "text", text)
			w.whole("response.reasoning_summary_part.done", "summary_index", k, "part", part)
		}
	}
	if c := member(item, "content"); isArray(c) {
		e := arrayElements(c)
		for j := 0; ; j++ {
			part, ok := e.next()
			if !ok {
				break
			}
			if !isObject(part) {
				return fmt.Errorf("reasoning content part %d is not an object", j)
			}
			if memberString(part, "type") != "reasoning_text" {
				w.whole("response.content_part.added", "content_index", j, "part", part)
			} else {
				text := member(part, "text")
				w.whole("response.content_part.added", "content_index", j, "part", part, override{"text", emptyString})
				w.deltas("response.reasoning_text.delta", "content_index", j, text, "")
				w.done("response.reasoning_text.done", "content_index", j, "text", text)
			}
			w.whole("response.content_part.done", "content_index", j, "part", part)
		}
	}
	return nil
}
