package sse

import "bytes"

// IsUsageChunk reports whether event, one raw event as a Splitter hands it out, is the usage-only chunk of a
// chat or legacy completions stream: the chunk an upstream sends after the last choice chunk, before
// [DONE], when the request set stream_options.include_usage. A proxy that asks the upstream for usage on a
// client's behalf can drop that one event for a client that did not ask, and forward everything else.
//
// It is true for an unnamed (or "message") event whose data is one JSON object with a non-null "usage"
// object, whose "choices" is an empty array (or null, or absent), and which carries no non-null "error";
// where a key appears twice, the last one counts. It is false for everything else: a chunk that carries
// choices and usage together (vLLM's continuous usage statistics, servers that put usage on the finish
// chunk), an empty-choices chunk without usage (Azure's prompt filter results), [DONE], comments, error
// events, data that is not valid JSON. Either kind of stream is recognised without being told which.
//
// It is safe for concurrent use and does not retain event. It allocates nothing, unless the event splits its
// data over several lines longer than 2 KiB together (no known upstream splits a chunk at all).
func IsUsageChunk(event []byte) bool {
	var buf [2048]byte // joins multi-line data without a heap allocation
	data, et, _, ok := parseEvent(event, buf[:0])
	if !ok || len(et) > 0 && string(et) != "message" {
		return false
	}
	data = bytes.TrimSpace(data)
	if !isObject(data) || validate(data) != nil {
		return false
	}
	var kb [64]byte
	noChoices, usage := true, false
	m := objectMembers(data)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		switch string(plainKey(k, &kb)) {
		case "choices":
			noChoices = isNull(v) || isArray(v) && isEmptyContainer(v)
		case "usage":
			usage = isObject(v)
		case "error":
			if !isNull(v) {
				return false
			}
		}
	}
	return noChoices && usage
}
