package sse

import (
	"bytes"
	"errors"
	"strconv"
	"unicode/utf8"
)

// A small JSON reader over raw bytes. It exists so that neither assembling a stream nor replaying a stored
// answer goes through reflection or copies values it only passes along: values are sub-slices of the input,
// strings stay in their escaped form (concatenating the escaped bodies of several JSON strings is the escaped
// body of their concatenation, and it keeps a surrogate pair that an upstream split across two chunks intact),
// and numbers keep their spelling.
//
// validate checks a whole document once; the iterators and skipValue after it assume valid input. They still
// never index out of range on invalid input, they just give meaningless answers.

// maxDepth bounds nesting so that a hostile chunk cannot make validation recurse without limit. Answers
// nest a handful of levels; tool arguments are strings, not structure.
const maxDepth = 512

var (
	errSyntax = errors.New("invalid JSON")
	errDepth  = errors.New("JSON nested too deeply")
)

// strPlain marks the bytes that need no attention inside a string literal: everything but '"', '\\',
// control characters and non-ASCII bytes (which are checked as UTF-8 afterwards).
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// validate reports whether b holds exactly one JSON value (surrounding whitespace allowed) whose strings
// are valid UTF-8. Lone surrogate escapes are accepted: JSON allows them and some upstreams emit them.
func validate(b []byte) error {
	i, err := validValue(b, skipWS(b, 0), 0)
	if err != nil {
		return err
	}
	if skipWS(b, i) != len(b) {
		return errSyntax
	}
	return nil
}

func validValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch c := b[i]; {
	case c == '"':
		return validString(b, i)
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return 0, errDepth
		}
		return validContainer(b, i, depth+1)
	case c == 't':
		return validLiteral(b, i, "true")
	case c == 'f':
		return validLiteral(b, i, "false")
	case c == 'n':
		return validLiteral(b, i, "null")
	default:
		return validNumber(b, i)
	}
}

func validLiteral(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, errSyntax
	}
	return i + len(lit), nil
}

// validContainer checks the object or array that opens at b[i].
func validContainer(b []byte, i, depth int) (int, error) {
	object := b[i] == '{'
	closer := byte(']')
	if object {
		closer = '}'
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == closer {
		return i + 1, nil
	}
	for {
		var err error
		if object {
			if i >= len(b) || b[i] != '"' {
				return 0, errSyntax
			}
			if i, err = validString(b, i); err != nil {
				return 0, err
			}
			i = skipWS(b, i)
			if i >= len(b) || b[i] != ':' {
				return 0, errSyntax
			}
			i = skipWS(b, i+1)
		}
		if i, err = validValue(b, i, depth); err != nil {
			return 0, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return 0, errSyntax
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case closer:
			return i + 1, nil
		default:
			return 0, errSyntax
		}
	}
}

func validString(b []byte, i int) (int, error) {
	start := i
	ascii := true
	for i++; i < len(b); i++ {
		c := b[i]
		if strPlain[c] {
			continue
		}
		switch {
		case c == '"':
			if !ascii && !utf8.Valid(b[start:i]) {
				return 0, errors.New("invalid UTF-8 in JSON string")
			}
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return 0, errSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if len(b)-i < 6 || !isHex4(b[i+2:i+6]) {
					return 0, errSyntax
				}
				i += 5
			default:
				return 0, errSyntax
			}
		case c >= utf8.RuneSelf:
			ascii = false
		default: // a raw control character
			return 0, errSyntax
		}
	}
	return 0, errSyntax
}

func isHex4(h []byte) bool {
	for _, c := range h[:4] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// validNumber checks RFC 8259's number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(b []byte, i int) (int, error) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return 0, errSyntax
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return 0, errSyntax
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return 0, errSyntax
		}
		i = j
	}
	return i, nil
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// skipValue returns the offset just past the valid value that starts at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default: // number or literal: runs to the next delimiter
		for i < len(b) {
			switch c := b[i]; {
			case c == ',' || c == '}' || c == ']' || isWS(c):
				return i
			}
			i++
		}
		return i
	}
}

// skipString returns the offset just past the string literal that opens at b[i]. The closing quote is the
// first '"' not preceded by an odd run of backslashes; IndexByte finds candidates quickly.
func skipString(b []byte, i int) int {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		k := i - 1
		for k >= 0 && b[k] == '\\' {
			k--
		}
		i++
		if (i-2-k)%2 == 0 {
			return i
		}
	}
}

// members iterates over the members of a valid JSON object.
type members struct {
	b []byte
	i int
}

// objectMembers starts an iteration over obj, which must be a valid object (as checked by isObject).
func objectMembers(obj []byte) members { return members{b: obj, i: 1} }

// next returns the next member: key is the raw body of the key string (without quotes, escapes as written)
// and val the raw value.
func (m *members) next() (key, val []byte, ok bool) {
	i := skipWS(m.b, m.i)
	if i < len(m.b) && m.b[i] == ',' {
		i = skipWS(m.b, i+1)
	}
	if i >= len(m.b) || m.b[i] != '"' {
		return nil, nil, false
	}
	ke := skipString(m.b, i)
	key = m.b[i+1 : max(i+1, ke-1)]
	i = skipWS(m.b, ke)
	if i < len(m.b) && m.b[i] == ':' {
		i = skipWS(m.b, i+1)
	}
	ve := skipValue(m.b, i)
	m.i = ve
	return key, m.b[i:ve], true
}

// elements iterates over the elements of a valid JSON array.
type elements struct {
	b []byte
	i int
}

func arrayElements(arr []byte) elements { return elements{b: arr, i: 1} }

func (e *elements) next() (val []byte, ok bool) {
	i := skipWS(e.b, e.i)
	if i < len(e.b) && e.b[i] == ',' {
		i = skipWS(e.b, i+1)
	}
	if i >= len(e.b) || e.b[i] == ']' {
		return nil, false
	}
	ve := skipValue(e.b, i)
	e.i = ve
	return e.b[i:ve], true
}

// Value classification of raw values as returned by the iterators (never empty for valid input).

func isNull(v []byte) bool   { return len(v) == 0 || v[0] == 'n' }
func isString(v []byte) bool { return len(v) >= 2 && v[0] == '"' }
func isObject(v []byte) bool { return len(v) >= 2 && v[0] == '{' }
func isArray(v []byte) bool  { return len(v) >= 2 && v[0] == '[' }

// strBody returns the raw (still escaped) body of a string value.
func strBody(v []byte) []byte { return v[1 : len(v)-1] }

// isEmptyContainer reports whether v is [] or {} (with any inner whitespace).
func isEmptyContainer(v []byte) bool {
	return (isArray(v) || isObject(v)) && skipWS(v, 1) == len(v)-1
}

// arrayBody returns what lies between the brackets of an array, trimmed, so that the bodies of several arrays
// joined with commas form the body of their concatenation.
func arrayBody(v []byte) []byte {
	body := v[1 : len(v)-1]
	i, j := skipWS(body, 0), len(body)
	for j > i && isWS(body[j-1]) {
		j--
	}
	return body[i:j]
}

// plainKey returns a raw key (as returned by members.next) decoded, for comparison with plain names in switch
// statements. Keys almost never hold escapes, and then the raw bytes are returned; a key written with escapes
// ("\u0063ontent") is decoded into buf, because the escape must not change what the key means.
func plainKey(key []byte, buf *[64]byte) []byte {
	if bytes.IndexByte(key, '\\') < 0 {
		return key
	}
	dec, ok := unescape(buf[:0], key)
	if !ok {
		return nil
	}
	return dec
}

// unescape appends the decoded form of a valid escaped string body to dst.
func unescape(dst, s []byte) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		if i+1 >= len(s) {
			return dst, false
		}
		i++
		switch s[i] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			if len(s)-i < 5 {
				return dst, false
			}
			r, err := strconv.ParseUint(string(s[i+1:i+5]), 16, 32)
			if err != nil {
				return dst, false
			}
			dst = utf8.AppendRune(dst, rune(r))
			i += 4
		default:
			dst = append(dst, s[i])
		}
	}
	return dst, true
}

// parseIndex reads a choice or tool-call index: a small non-negative integer.
func parseIndex(v []byte) (int, bool) {
	if len(v) == 0 || len(v) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
