package canon

// maxDepth is the deepest nesting accepted. Real requests nest a handful of
// levels; the limit keeps both validation and the recursive canonicalizer
// bounded on hostile input.
const maxDepth = 512

// Parser validates JSON documents and writes their canonical form. It keeps scratch buffers between calls
// so that steady-state use allocates nothing. A Parser is not safe for concurrent use: each goroutine owns one
// (callers pool them).
//
// The zero value is ready to use.
type Parser struct {
	// Validation state.
	members    []Member // top-level members of the last ParseObject
	stack      []frame  // containers open at the current position
	keys       []keyRef // keys of all open objects, innermost last
	keyBuf     []byte   // decoded keys that contained escapes
	dupScratch []keyRef // sort space for duplicate checks of large objects

	// Canonicalization state.
	sortedMembers []Member // top-level members in canonical order
	nodes         []node   // index of the value being written
	open          []int    // containers not yet closed while indexing
	entries       []entry  // members of the objects being written, innermost last
	canonKeys     []byte   // decoded nested keys that contained escapes
}

// frame is one open container during validation.
type frame struct {
	object  bool
	keyBase int // index in Parser.keys of this object's first key
}

// ParseObject validates the whole document and returns the members of its top-level object in document order.
// The returned slice is owned by the Parser and valid until the next call.
//
// On failure the error is a *SyntaxError whose message can be shown to the
// client.
func (p *Parser) ParseObject(body []byte) ([]Member, error) {
	p.members = p.members[:0]
	p.stack = p.stack[:0]
	p.keys = p.keys[:0]
	p.keyBuf = p.keyBuf[:0]
	if err := p.parse(body); err != nil {
		return nil, err
	}
	return p.members, nil
}

// parse validates b with an explicit stack instead of recursion, so that
// deep nesting can only produce an error, never exhaust the goroutine stack.
// The labels form a small state machine: value (a value starts at b[i]),
// done (a value ended just before b[i]) and key (an object key starts at
// b[i]).
func (p *Parser) parse(b []byte) *SyntaxError {
	var (
		i        = skipWS(b, 0)
		root     = i
		rootObj  bool
		t        Type
		err      *SyntaxError
		keyStart int
		escaped  bool
		key      []byte
		top      frame
	)
	if i == len(b) {
		return syntaxErr(i, "request body is empty")
	}
	rootObj = b[i] == '{'

value:
	if i >= len(b) {
		return syntaxErr(i, "unexpected end of input, expected a value")
	}
	switch c := b[i]; {
	case c == '{':
		t = Object
	case c == '[':
		t = Array
	case c == '"':
		t = String
	case c == '-' || isDigit(c):
		t = Number
	case c == 't':
		t = True
	case c == 'f':
		t = False
	case c == 'n':
		t = Null
	case c == ']' && len(p.stack) > 0 && i > 0 && b[skipBackWS(b, i)] == ',':
		return syntaxErr(i, "trailing comma before ']'")
	default:
		return syntaxErr(i, "unexpected %s, expected a value", describeByte(c))
	}
	if rootObj && len(p.stack) == 1 {
		m := &p.members[len(p.members)-1]
		m.ValueStart, m.Type = i, t
	}
	switch t {
	case Object, Array:
		if len(p.stack) == maxDepth {
			return syntaxErr(i, "nesting deeper than %d levels", maxDepth)
		}
		p.stack = append(p.stack, frame{object: t == Object, keyBase: len(p.keys)})
		i = skipWS(b, i+1)
		if t == Object {
			if i < len(b) && b[i] == '}' {
				i++
				p.stack = p.stack[:len(p.stack)-1]
				goto done
			}
			goto key
		}
		if i < len(b) && b[i] == ']' {
			i++
			p.stack = p.stack[:len(p.stack)-1]
			goto done
		}
		goto value
	case String:
		i, _, err = scanString(b, i)
	case Number:
		i, err = scanNumber(b, i)
	case True:
		i, err = scanLiteral(b, i, "true")
	case False:
		i, err = scanLiteral(b, i, "false")
	case Null:
		i, err = scanLiteral(b, i, "null")
	}
	if err != nil {
		return err
	}

done:
	if rootObj && len(p.stack) == 1 {
		p.members[len(p.members)-1].ValueEnd = i
	}
	i = skipWS(b, i)
	if len(p.stack) == 0 {
		if i != len(b) {
			return syntaxErr(i, "unexpected %s after the end of the JSON value", describeByte(b[i]))
		}
		if !rootObj {
			return &SyntaxError{Offset: root, Msg: "request body must be a JSON object"}
		}
		return nil
	}
	if i >= len(b) {
		return syntaxErr(i, "unexpected end of input")
	}
	top = p.stack[len(p.stack)-1]
	if top.object {
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
			goto key
		case '}':
			if err = p.closeObject(top.keyBase); err != nil {
				return err
			}
			p.stack = p.stack[:len(p.stack)-1]
			i++
			goto done
		}
		return syntaxErr(i, "unexpected %s after object member, expected ',' or '}'", describeByte(b[i]))
	}
	switch b[i] {
	case ',':
		i = skipWS(b, i+1)
		goto value
	case ']':
		p.stack = p.stack[:len(p.stack)-1]
		i++
		goto done
	}
	return syntaxErr(i, "unexpected %s after array element, expected ',' or ']'", describeByte(b[i]))

key:
	if i >= len(b) {
		return syntaxErr(i, "unexpected end of input, expected an object key")
	}
	if b[i] != '"' {
		if b[i] == '}' {
			return syntaxErr(i, "trailing comma before '}'")
		}
		return syntaxErr(i, "unexpected %s, expected an object key in double quotes", describeByte(b[i]))
	}
	keyStart = i
	if i, escaped, err = scanString(b, i); err != nil {
		return err
	}
	key = b[keyStart+1 : i-1]
	if escaped {
		n := len(p.keyBuf)
		p.keyBuf = appendUnescaped(p.keyBuf, key)
		key = p.keyBuf[n:len(p.keyBuf):len(p.keyBuf)]
	}
	if err = p.addKey(p.stack[len(p.stack)-1].keyBase, key, keyStart); err != nil {
		return err
	}
	if rootObj && len(p.stack) == 1 {
		p.members = append(p.members, Member{Key: key, KeyStart: keyStart})
	}
	i = skipWS(b, i)
	if i >= len(b) || b[i] != ':' {
		if i >= len(b) {
			return syntaxErr(i, "unexpected end of input, expected ':' after object key")
		}
		return syntaxErr(i, "unexpected %s after object key, expected ':'", describeByte(b[i]))
	}
	i = skipWS(b, i+1)
	goto value
}

// skipBackWS returns the offset of the last non-whitespace byte before i (or
// 0). It only serves to word the trailing-comma error.
func skipBackWS(b []byte, i int) int {
	for i > 0 {
		i--
		switch b[i] {
		case ' ', '\t', '\n', '\r':
		default:
			return i
		}
	}
	return 0
}
