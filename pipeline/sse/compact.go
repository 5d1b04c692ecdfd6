package sse

// AppendCompact appends the JSON value v to dst without its insignificant whitespace (spaces, tabs, CR and
// LF between tokens), and returns the extended buffer. Strings are copied exactly as written, escapes
// included, and numbers keep their spelling: only the layout changes.
//
// Upstreams may indent their answers (OpenAI's API does), and a value copied from such an answer into an SSE
// data line or a reassembled body would carry the answer's newlines with it. Every value this package copies
// out of an answer or a chunk goes through AppendCompact; other code that splices raw values into a body it
// builds (embeddings usage, batched completions) can use it the same way.
//
// v must be valid JSON (or a run of valid JSON values): on anything else the output is meaningless, but the
// call never fails or reads out of range. It allocates only when dst has no room.
func AppendCompact(dst, v []byte) []byte {
	if len(v) > 0 && v[0] != '{' && v[0] != '[' && !isWS(v[0]) {
		// A string, number or literal as the iterators hand it out holds no layout: the common fields that
		// every replayed chunk repeats are copied without a scan.
		if c := v[len(v)-1]; !isWS(c) {
			return append(dst, v...)
		}
	}
	start := 0 // v[start:i] is copied in one go when whitespace or the end is reached
	for i := 0; i < len(v); {
		switch c := v[i]; {
		case c == '"':
			i = skipString(v, i)
		case isWS(c):
			dst = append(dst, v[start:i]...)
			i = skipWS(v, i)
			start = i
		default:
			i++
		}
	}
	return append(dst, v[start:]...)
}

// appendRawOrNull appends a value copied from an answer or a chunk, compacted; nil (absent) gives null.
func appendRawOrNull(b, raw []byte) []byte {
	if raw == nil {
		return append(b, "null"...)
	}
	return AppendCompact(b, raw)
}
