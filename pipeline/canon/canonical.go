package canon

// AppendCanonical appends the canonical form of one JSON value (raw: a span previously validated by ParseObject,
// e.g. body[m.ValueStart:m.ValueEnd]) to dst.
//
// raw is trusted to be valid; for anything else the output is unspecified,
// but AppendCanonical still neither panics nor loops.
func (p *Parser) AppendCanonical(dst, raw []byte) []byte {
	p.canonKeys = p.canonKeys[:0]
	i := skipWS(raw, 0)
	if i >= len(raw) {
		return dst
	}
	if raw[i] != '{' && raw[i] != '[' {
		return appendScalar(dst, raw, i, scalarEnd(raw, i))
	}
	p.index(raw, i)
	return p.emit(dst, raw, 0)
}

// AppendCanonicalObject appends the canonical form of the top-level object described by members (from ParseObject on body),
// leaving out each member for which skip(key) is true (skip may be nil).
//
// Leaving members out here, rather than editing the body, lets the caller
// drop fields that do not affect the upstream answer (such as "stream" or a
// "user" tag) from the cache key without copying the request.
func (p *Parser) AppendCanonicalObject(dst, body []byte, members []Member, skip func(key []byte) bool) []byte {
	p.canonKeys = p.canonKeys[:0]
	sorted := p.sortedMembers[:0]
	for _, m := range members {
		if skip == nil || !skip(m.Key) {
			sorted = append(sorted, m)
		}
	}
	p.sortedMembers = sorted
	sortMembers(sorted)

	dst = append(dst, '{')
	for k, m := range sorted {
		if k > 0 {
			dst = append(dst, ',')
		}
		dst = appendQuoted(dst, m.Key)
		dst = append(dst, ':')
		if m.Type == Object || m.Type == Array {
			p.index(body[:m.ValueEnd], m.ValueStart)
			dst = p.emit(dst, body, 0)
		} else {
			dst = appendScalar(dst, body, m.ValueStart, m.ValueEnd)
		}
	}
	return append(dst, '}')
}

// appendScalar writes the canonical form of the string, number or literal
// b[i:end].
func appendScalar(dst, b []byte, i, end int) []byte {
	switch b[i] {
	case '"':
		dst, _ = appendCanonicalString(dst, b[:end], i)
		return dst
	case 't':
		return append(dst, "true"...)
	case 'f':
		return append(dst, "false"...)
	case 'n':
		return append(dst, "null"...)
	}
	return appendCanonicalNumber(dst, b[i:end])
}

// emit writes the canonical form of the value indexed as p.nodes[n].
// Containers recurse; the index bounds the depth by maxDepth.
func (p *Parser) emit(dst, b []byte, n int) []byte {
	nd := p.nodes[n]
	switch b[nd.start] {
	case '[':
		dst = append(dst, '[')
		for c := n + 1; c < nd.next; c = p.nodes[c].next {
			if c > n+1 {
				dst = append(dst, ',')
			}
			dst = p.emit(dst, b, c)
		}
		return append(dst, ']')
	case '{':
		return p.emitObject(dst, b, n)
	}
	return appendScalar(dst, b, nd.start, nd.end)
}

// emitObject writes the object indexed as p.nodes[n] with its members in
// UTF-16 key order.
func (p *Parser) emitObject(dst, b []byte, n int) []byte {
	base := len(p.entries)
	inOrder := true
	for c := n + 1; c < p.nodes[n].next; c = p.nodes[c].next {
		nd := p.nodes[c]
		lit := b[nd.keyStart:nd.keyEnd]
		var key []byte
		escaped := false
		if len(lit) >= 2 {
			key = lit[1 : len(lit)-1]
			if escaped = hasBackslash(key); escaped {
				k := len(p.canonKeys)
				p.canonKeys = appendUnescaped(p.canonKeys, key)
				key = p.canonKeys[k:len(p.canonKeys):len(p.canonKeys)]
			}
		}
		if len(p.entries) > base && inOrder && compareUTF16(p.entries[len(p.entries)-1].key, key) > 0 {
			inOrder = false
		}
		p.entries = append(p.entries, entry{key: key, node: c, escaped: escaped})
	}
	if !inOrder {
		sortEntries(p.entries[base:])
	}
	dst = append(dst, '{')
	for k := base; k < len(p.entries); k++ {
		e := p.entries[k]
		if k > base {
			dst = append(dst, ',')
		}
		if e.escaped {
			dst = appendQuoted(dst, e.key)
		} else {
			nd := p.nodes[e.node]
			dst = append(dst, b[nd.keyStart:nd.keyEnd]...) // validated and escape-free: already canonical
		}
		dst = append(dst, ':')
		dst = p.emit(dst, b, e.node)
	}
	p.entries = p.entries[:base]
	return append(dst, '}')
}

// entry is one member of an object being written: its decoded key and its
// node in the index.
type entry struct {
	key     []byte
	node    int
	escaped bool
}

func hasBackslash(s []byte) bool {
	for _, c := range s {
		if c == '\\' {
			return true
		}
	}
	return false
}
