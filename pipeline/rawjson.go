package pipeline

// Scanners of raw JSON for the answers the proxy reassembles (batched completions): they walk JSON that has
// been validated (a request body by the keyer's parser, an upstream answer by json.Valid) and find where
// values start and end, without decoding or copying them. They accept what a lenient decoder accepts (an
// upstream's lone surrogate escapes, say), which the keyer's strict parser refuses. On input that is not
// valid JSON they return nonsense but never read out of range or loop.

// rawSkipWS returns the first index at or after i that is not JSON whitespace.
func rawSkipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// rawValueEnd returns the end of the JSON value starting at b[i].
func rawValueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return rawStringEnd(b, i)
	case '[', '{':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = rawStringEnd(b, i) - 1
			case '[', '{':
				depth++
			case ']', '}':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(b) {
		switch b[i] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// rawStringEnd returns the index just past the string literal starting at b[i] (its opening quote).
func rawStringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// rawArrayElems returns the spans of the elements of the array that starts at b[i] ('['); nil when b[i] is
// not an array or the array is empty.
func rawArrayElems(b []byte, i int) [][2]int {
	if i >= len(b) || b[i] != '[' {
		return nil
	}
	var out [][2]int
	for i = rawSkipWS(b, i+1); i < len(b) && b[i] != ']'; {
		end := rawValueEnd(b, i)
		if end <= i {
			return out
		}
		out = append(out, [2]int{i, end})
		i = rawSkipWS(b, end)
		if i < len(b) && b[i] == ',' {
			i = rawSkipWS(b, i+1)
		}
	}
	return out
}

// rawMember is one member of a JSON object: its key as written (with its quotes) and its value's span.
type rawMember struct {
	keyStart, keyEnd     int
	valueStart, valueEnd int
}

// is reports whether the member's key, as written, is name.
func (m rawMember) is(b []byte, name string) bool {
	return m.keyEnd-m.keyStart == len(name)+2 && string(b[m.keyStart+1:m.keyEnd-1]) == name
}

// rawObjectMembers returns the members of the object that starts at b[i] ('{'), in their order; ok is false
// when b[i] is not an object.
func rawObjectMembers(b []byte, i int) (ms []rawMember, ok bool) {
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	for i = rawSkipWS(b, i+1); i < len(b) && b[i] == '"'; {
		m := rawMember{keyStart: i, keyEnd: rawStringEnd(b, i)}
		i = rawSkipWS(b, m.keyEnd)
		if i >= len(b) || b[i] != ':' {
			return ms, false
		}
		m.valueStart = rawSkipWS(b, i+1)
		m.valueEnd = rawValueEnd(b, m.valueStart)
		if m.valueEnd <= m.valueStart {
			return ms, false
		}
		ms = append(ms, m)
		i = rawSkipWS(b, m.valueEnd)
		if i < len(b) && b[i] == ',' {
			i = rawSkipWS(b, i+1)
		}
	}
	return ms, true
}
