package canon

// The canonicalizer works in two passes over a value: index records where
// every value starts and ends, then emit writes them out in canonical order.
// Sorting an object's members needs their spans before any is written;
// finding them during the write would mean either scanning nested values
// once per enclosing object or moving written output once per enclosing
// object, both of which cost O(size × depth) on a hostile body nested 512
// deep. With the index each byte is looked at a fixed number of times.

// node is one value in the index, in document order.
type node struct {
	keyStart, keyEnd int // for an object member, its key literal b[keyStart:keyEnd]; else both 0
	start, end       int // the value b[start:end]
	next             int // index of the first node after this value and everything inside it
}

// index fills p.nodes for the value at b[i]: node 0 is that value, and the
// children of a container node n are n+1, then each child's next, up to
// n's own next.
//
// The input is trusted (validated earlier), so index only tokenizes. On
// malformed input it still terminates and leaves a consistent index (every
// next > own index, spans inside b), which is all emit needs not to panic.
func (p *Parser) index(b []byte, i int) {
	nodes := p.nodes[:0]
	open := p.open[:0] // container nodes not closed yet
	var keyStart, keyEnd int
	wantKey := false // the next string is an object key
	for i < len(b) {
		i = skipWS(b, i)
		if i >= len(b) {
			break
		}
		c := b[i]
		switch c {
		case ',':
			i++
			wantKey = len(open) > 0 && b[nodes[open[len(open)-1]].start] == '{'
			continue
		case ':':
			i++
			continue
		case '}', ']':
			i++
			if len(open) > 0 {
				n := open[len(open)-1]
				open = open[:len(open)-1]
				nodes[n].end, nodes[n].next = i, len(nodes)
			}
			wantKey = false
			if len(open) == 0 {
				i = len(b) // the value is complete
			}
			continue
		case '"':
			if wantKey {
				keyStart, keyEnd = i, stringEnd(b, i)
				i, wantKey = keyEnd, false
				continue
			}
		}
		if (c == '{' || c == '[') && len(open) == maxDepth {
			break // only with unvalidated input
		}
		n := len(nodes)
		nodes = append(nodes, node{keyStart: keyStart, keyEnd: keyEnd, start: i})
		keyStart, keyEnd = 0, 0
		if c == '{' || c == '[' {
			open = append(open, n)
			wantKey = c == '{'
			i++
			continue
		}
		end := scalarEnd(b, i)
		nodes[n].end, nodes[n].next = end, n+1
		i = end
		if len(open) == 0 {
			break // a scalar at the top: done
		}
	}
	// Close what malformed input left open.
	for _, n := range open {
		nodes[n].end, nodes[n].next = len(b), len(nodes)
	}
	p.nodes, p.open = nodes, open[:0]
}

// scalarEnd returns the end of the string, number or literal at b[i]. It
// always makes progress, so that malformed input cannot stall the index.
func scalarEnd(b []byte, i int) int {
	if b[i] == '"' {
		return stringEnd(b, i)
	}
	end := i + 1
	for end < len(b) && (isNumberByte(b[end]) || b[end] >= 'a' && b[end] <= 'z') {
		end++
	}
	return end
}

func isNumberByte(c byte) bool {
	return isDigit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}
