package pipeline

import (
	"slices"

	"llmcache/pipeline/canon"
)

// edit replaces body[start:end] with text.
type edit struct {
	start, end int
	text       []byte
}

// applyEdits writes body with non-overlapping edits applied; every other byte is kept as the client sent it.
func applyEdits(body []byte, edits []edit) []byte {
	slices.SortFunc(edits, func(a, b edit) int { return a.start - b.start })
	out := make([]byte, 0, len(body)+64)
	at := 0
	for _, e := range edits {
		out = append(out, body[at:e.start]...)
		out = append(out, e.text...)
		at = e.end
	}
	return append(out, body[at:]...)
}

// removeMember is the edit that deletes members[i] together with one adjacent comma.
func removeMember(members []canon.Member, i int) edit {
	switch {
	case i+1 < len(members):
		return edit{start: members[i].KeyStart, end: members[i+1].KeyStart}
	case i > 0:
		return edit{start: members[i-1].ValueEnd, end: members[i].ValueEnd}
	}
	return edit{start: members[i].KeyStart, end: members[i].ValueEnd}
}

// closingBrace is the offset of the top-level object's final '}'.
func closingBrace(body []byte) int {
	for i := len(body) - 1; i >= 0; i-- {
		if body[i] == '}' {
			return i
		}
	}
	return len(body)
}

// upstreamBody returns what is sent upstream for r: the client's bytes with the "cache" object removed,
// enable_thinking placed as configured, and, for a streamed chat or completions request, the upstream asked
// for usage (stream_options.include_usage), so that the stored answer always has it (the clients that did
// not ask are not shown the usage chunk). The model override is spliced later, per endpoint, at the returned
// model offsets.
func (c *Config) upstreamBody(parser, sub *canon.Parser, r *Request) (body []byte, modelStart, modelEnd int, err error) {
	return c.upstreamBodyWith(parser, sub, r, nil)
}

// upstreamBodyWith is upstreamBody with the value of "prompt" replaced by prompts when that is not nil: a
// batched completions request asks the upstream only for the prompts the cache lacks.
func (c *Config) upstreamBodyWith(parser, sub *canon.Parser, r *Request, prompts []byte) (body []byte, modelStart, modelEnd int, err error) {
	members, err := parser.ParseObject(r.Body)
	if err != nil {
		return nil, 0, 0, err
	}
	var edits []edit
	kept := len(members)
	thinking := c.EnableThinking
	topLevel := thinking != ThinkingAbsent && (c.ThinkingField == "both" || c.ThinkingField == "top_level")
	inKwargs := thinking != ThinkingAbsent && (c.ThinkingField == "both" || c.ThinkingField == "chat_template_kwargs")
	usage := r.Stream && !r.includeUsage && (r.Kind == KindChat || r.Kind == KindCompletion)
	value := []byte("false")
	if thinking == ThinkingTrue {
		value = []byte("true")
	}
	modelStart, modelEnd = -1, 0
	for i := range members {
		m := &members[i]
		switch string(m.Key) {
		case "model":
			if modelStart < 0 {
				modelStart, modelEnd = m.ValueStart, m.ValueEnd
			}
		case "cache":
			edits = append(edits, removeMember(members, i))
			kept--
		case "prompt":
			if prompts != nil {
				edits = append(edits, edit{start: m.ValueStart, end: m.ValueEnd, text: prompts})
			}
		case "enable_thinking":
			if topLevel {
				edits = append(edits, edit{start: m.ValueStart, end: m.ValueEnd, text: value})
				topLevel = false
			}
		case "chat_template_kwargs":
			if inKwargs {
				edits = append(edits, edit{start: m.ValueStart, end: m.ValueEnd, text: setMemberIn(sub, r.Body[m.ValueStart:m.ValueEnd], m.Type, "enable_thinking", value)})
				inKwargs = false
			}
		case "stream_options":
			if usage {
				edits = append(edits, edit{start: m.ValueStart, end: m.ValueEnd, text: setMemberIn(sub, r.Body[m.ValueStart:m.ValueEnd], m.Type, "include_usage", []byte("true"))})
				usage = false
			}
		}
	}
	var tail []byte
	if topLevel {
		tail = appendMember(tail, kept, `"enable_thinking":`, value)
		kept++
	}
	if inKwargs {
		tail = appendMember(tail, kept, `"chat_template_kwargs":{"enable_thinking":`, append(value, '}'))
		kept++
	}
	if usage {
		tail = appendMember(tail, kept, `"stream_options":{"include_usage":true}`, nil)
	}
	if len(tail) > 0 {
		at := closingBrace(r.Body)
		edits = append(edits, edit{start: at, end: at, text: tail})
	}
	if len(edits) == 0 {
		// The body goes as it came (the usual case): the model's place is where the parse above found it.
		return slices.Clone(r.Body), max(modelStart, 0), modelEnd, nil
	}
	return editedBody(parser, r.Body, edits)
}

// editedBody applies edits to a copy of body and finds the model value in the result, where the endpoint's
// model override is spliced later.
func editedBody(parser *canon.Parser, body []byte, edits []edit) (out []byte, modelStart, modelEnd int, err error) {
	if len(edits) == 0 {
		out = slices.Clone(body)
	} else {
		out = applyEdits(body, edits)
	}
	members, err := parser.ParseObject(out)
	if err != nil {
		return nil, 0, 0, err
	}
	for _, m := range members {
		if string(m.Key) == "model" {
			return out, m.ValueStart, m.ValueEnd, nil
		}
	}
	return out, 0, 0, nil
}

func appendMember(dst []byte, kept int, keyAndColon string, value []byte) []byte {
	if kept > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, keyAndColon...)
	return append(dst, value...)
}

// setMemberIn returns the object raw with member name set to value; a value that is not an object is
// replaced by an object holding only that member.
func setMemberIn(sub *canon.Parser, raw []byte, typ canon.Type, name string, value []byte) []byte {
	only := func() []byte { return append(append([]byte(`{"`+name+`":`), value...), '}') }
	if typ != canon.Object {
		return only()
	}
	members, err := sub.ParseObject(raw)
	if err != nil {
		return only()
	}
	for _, m := range members {
		if string(m.Key) == name {
			return applyEdits(raw, []edit{{start: m.ValueStart, end: m.ValueEnd, text: value}})
		}
	}
	at := closingBrace(raw)
	return applyEdits(raw, []edit{{start: at, end: at, text: appendMember(nil, len(members), `"`+name+`":`, value)}})
}

// withModel returns body with its model value replaced by modelJSON (a JSON string literal).
func withModel(body []byte, start, end int, modelJSON []byte) []byte {
	if end <= start {
		return body
	}
	return applyEdits(body, []edit{{start: start, end: end, text: modelJSON}})
}
