package trim

import (
	"bytes"
	"errors"
	"fmt"

	json "github.com/goccy/go-json"
)

// span is body[start:end]; end is 0 for a field that is absent.
type span struct{ start, end int }

func (s span) present() bool { return s.end > 0 }

// fields are the byte ranges of the top-level members Trim reads. When a key repeats, the last
// one wins, as in encoding/json and Python's json.
type fields struct {
	messages, tools, functions, maxTokens, maxCompletionTokens span
}

// errSyntax reports a body the scanner cannot walk; the caller validated the body, so this only
// guards against a bug elsewhere.
var errSyntax = errors.New("malformed JSON")

// scanTop walks the top-level object of body without decoding it and records where the members
// Trim needs are. Nested values are skipped by matching brackets and strings, which is all the
// splice needs: every byte outside the messages value is copied, never re-encoded.
func scanTop(body []byte) (fields, error) {
	var f fields
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return f, fmt.Errorf("%w: the body is not an object", errSyntax)
	}
	i = skipWS(body, i+1)
	if i < len(body) && body[i] == '}' {
		return f, nil
	}
	for {
		if i >= len(body) || body[i] != '"' {
			return f, fmt.Errorf("%w: want a key at offset %d", errSyntax, i)
		}
		keyEnd, err := skipString(body, i)
		if err != nil {
			return f, err
		}
		key, err := memberName(body[i:keyEnd])
		if err != nil {
			return f, err
		}
		i = skipWS(body, keyEnd)
		if i >= len(body) || body[i] != ':' {
			return f, fmt.Errorf("%w: want ':' at offset %d", errSyntax, i)
		}
		start := skipWS(body, i+1)
		end, err := skipValue(body, start)
		if err != nil {
			return f, err
		}
		switch key {
		case "messages":
			f.messages = span{start, end}
		case "tools":
			f.tools = span{start, end}
		case "functions":
			f.functions = span{start, end}
		case "max_tokens":
			f.maxTokens = span{start, end}
		case "max_completion_tokens":
			f.maxCompletionTokens = span{start, end}
		}
		i = skipWS(body, end)
		if i < len(body) && body[i] == ',' {
			i = skipWS(body, i+1)
			continue
		}
		if i < len(body) && body[i] == '}' {
			return f, nil
		}
		return f, fmt.Errorf("%w: want ',' or '}' at offset %d", errSyntax, i)
	}
}

// memberName returns the text of a key literal; only keys with escapes are decoded.
func memberName(lit []byte) (string, error) {
	for _, c := range lit {
		if c == '\\' {
			var s string
			if err := json.Unmarshal(lit, &s); err != nil {
				return "", fmt.Errorf("%w: key %s: %v", errSyntax, lit, err)
			}
			return s, nil
		}
	}
	return string(lit[1 : len(lit)-1]), nil
}

// elements returns the spans of the values of the array at body[s.start:s.end].
func elements(body []byte, s span) ([]span, error) {
	i := s.start
	if body[i] != '[' {
		return nil, errors.New("messages is not an array")
	}
	var out []span
	i = skipWS(body, i+1)
	if body[i] == ']' {
		return out, nil
	}
	for {
		end, err := skipValue(body, i)
		if err != nil {
			return nil, err
		}
		out = append(out, span{i, end})
		i = skipWS(body, end)
		switch body[i] { // in range: skipValue checked the array's brackets
		case ',':
			i = skipWS(body, i+1)
		case ']':
			return out, nil
		default:
			return nil, fmt.Errorf("%w: want ',' or ']' at offset %d", errSyntax, i)
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// skipString returns the offset just past the string literal at b[i]. A quote ends the string
// unless an odd number of backslashes precedes it; the opening quote stops that count.
func skipString(b []byte, i int) (int, error) {
	for i++; ; i++ {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, fmt.Errorf("%w: unterminated string", errSyntax)
		}
		i += j
		k := i
		for b[k-1] == '\\' {
			k--
		}
		if (i-k)%2 == 0 {
			return i + 1, nil
		}
	}
}

// skipValue returns the offset just past the value at b[i]. Containers are matched bracket for
// bracket; scalars are taken to the next delimiter and left for the decoder to judge, since only
// message objects are decoded and everything else is copied as it came.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, fmt.Errorf("%w: want a value at offset %d", errSyntax, i)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		var stack []byte // the closing bracket each open container needs
		for ; i < len(b); i++ {
			switch c := b[i]; c {
			case '"':
				end, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = end - 1
			case '{', '[':
				stack = append(stack, c+2) // '{'+2 == '}', '['+2 == ']'
			case '}', ']':
				if len(stack) == 0 || stack[len(stack)-1] != c {
					return 0, fmt.Errorf("%w: unbalanced %q at offset %d", errSyntax, c, i)
				}
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("%w: unterminated container", errSyntax)
	}
	start := i
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\n' && b[i] != '\r' && b[i] != '\t' {
		if b[i] == '{' || b[i] == '[' || b[i] == '"' || b[i] == ':' {
			return 0, fmt.Errorf("%w: unexpected %q at offset %d", errSyntax, b[i], i)
		}
		i++
	}
	if i == start {
		return 0, fmt.Errorf("%w: want a value at offset %d", errSyntax, i)
	}
	return i, nil
}
