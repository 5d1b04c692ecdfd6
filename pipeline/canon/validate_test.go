package canon

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// TestRefusals checks every class of refused body: the error must be a
// *SyntaxError whose message names the problem, at a sensible offset.
func TestRefusals(t *testing.T) {
	tests := []struct {
		name, in string
		msg      string // must appear in the error message
		offset   int    // -1: don't check
	}{
		// RFC 8259 grammar.
		{"empty", ``, "request body is empty", 0},
		{"only whitespace", " \n\t ", "request body is empty", 4},
		{"bad token", `{"a":nul}`, "invalid literal: expected null", 5},
		{"bad token true", `{"a":tru}`, "expected true", 5},
		{"bare word", `{"a":yes}`, `unexpected character 'y', expected a value`, 5},
		{"trailing comma object", `{"a":1,}`, "trailing comma before '}'", 7},
		{"trailing comma array", `{"a":[1,2,]}`, "trailing comma before ']'", 10},
		{"missing comma", `{"a":1 "b":2}`, "expected ',' or '}'", 7},
		{"missing array comma", `{"a":[1 2]}`, "expected ',' or ']'", 8},
		{"missing colon", `{"a" 1}`, "expected ':'", 5},
		{"missing value", `{"a":}`, `unexpected character '}', expected a value`, 5},
		{"leading zero", `{"a":01}`, "leading zeros are not allowed", 5},
		{"negative leading zero", `{"a":-01}`, "leading zeros are not allowed", 5},
		{"lone minus", `{"a":-}`, "expected a digit", 6},
		{"plus sign", `{"a":+1}`, `unexpected character '+'`, 5},
		{"leading dot", `{"a":.5}`, `unexpected character '.'`, 5},
		{"trailing dot", `{"a":1.}`, "expected a digit after the decimal point", 7},
		{"empty exponent", `{"a":1e}`, "expected a digit in the exponent", 7},
		{"signed empty exponent", `{"a":1e+}`, "expected a digit in the exponent", 8},
		{"hex number", `{"a":0x10}`, "expected ',' or '}'", 6},
		{"NaN", `{"a":NaN}`, `unexpected character 'N'`, 5},
		{"unquoted key", `{a:1}`, "expected an object key in double quotes", 1},
		{"single-quoted key", `{'a':1}`, "expected an object key in double quotes", 1},
		{"number key", `{1:1}`, "expected an object key in double quotes", 1},
		{"raw newline in string", "{\"a\":\"x\ny\"}", "control character U+000A inside a string must be escaped", 7},
		{"raw tab in string", "{\"a\":\"\t\"}", "control character U+0009", 6},
		{"raw NUL in key", "{\"\x00\":1}", "control character U+0000", 2},
		{"bad escape", `{"a":"\x"}`, `invalid escape sequence \x`, 6},
		{"short unicode escape", `{"a":"\u12"}`, `invalid \u escape`, 6},
		{"non-hex unicode escape", `{"a":"\u12g4"}`, `invalid \u escape`, 6},
		{"unterminated string", `{"a":"abc`, "unterminated string", 5},
		{"unterminated escape", `{"a":"abc\`, "unterminated string", 9},
		{"trailing data", `{"a":1} x`, `unexpected character 'x' after the end of the JSON value`, 8},
		{"two objects", `{}{}`, "after the end of the JSON value", 2},
		{"unclosed object", `{"a":1`, "unexpected end of input", 6},
		{"unclosed array", `{"a":[1`, "unexpected end of input", 7},
		{"unclosed after key", `{"a"`, "unexpected end of input, expected ':'", 4},
		{"unclosed after colon", `{"a":`, "unexpected end of input, expected a value", 5},
		{"unclosed after comma", `{"a":1,`, "unexpected end of input, expected an object key", 7},
		{"BOM", "\xef\xbb\xbf{}", "unexpected byte 0xEF, expected a value", 0},
		{"non-ASCII outside strings", "{\"a\":1,\xc3\xa9:1}", "byte 0xC3", 7},
		{"comment", `{"a":1 /* c */}`, `unexpected character '/'`, 7},
		{"vertical tab whitespace", "{\v}", "byte 0x0B", 1},

		// Not an object.
		{"array", `[1,2]`, "request body must be a JSON object", 0},
		{"string", ` "x"`, "request body must be a JSON object", 1},
		{"number", `1`, "request body must be a JSON object", 0},
		{"null", `null`, "request body must be a JSON object", 0},
		{"invalid non-object", `[1,}`, "unexpected character '}'", 3},

		// Invalid UTF-8.
		{"invalid byte in string", "{\"a\":\"\xff\"}", "invalid UTF-8 byte 0xFF inside a string", 6},
		{"truncated sequence", "{\"a\":\"\xc3\"}", "invalid UTF-8", 6},
		{"overlong encoding", "{\"a\":\"\xc0\xaf\"}", "invalid UTF-8", 6},
		{"UTF-8 encoded surrogate", "{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8", 6},
		{"beyond U+10FFFF", "{\"a\":\"\xf4\x90\x80\x80\"}", "invalid UTF-8", 6},
		{"invalid UTF-8 in key", "{\"\xfe\":1}", "invalid UTF-8", 2},
		{"invalid UTF-8 after SWAR block", "{\"a\":\"0123456789abcdef\x80\"}", "invalid UTF-8", 22},

		// Duplicate keys.
		{"duplicate key", `{"model":1,"model":2}`, `duplicate object key "model"`, 11},
		{"duplicate via escape", `{"a":1,"\u0061":2}`, `duplicate object key "a"`, 7},
		{"duplicate nested", `{"m":[{"role":"a","content":"x","role":"b"}]}`, `duplicate object key "role"`, 32},
		{"duplicate deep", `{"a":{"b":{"c":{"d":1,"d":2}}}}`, `duplicate object key "d"`, 22},
		{"duplicate escaped control", `{"\n":1,"\u000a":2}`, `duplicate object key "\n"`, 8},
		{"duplicate in large object", largeObject(100, 37), `duplicate object key "k37"`, -1},
		{"duplicate in large nested object", `{"x":` + largeObject(40, 0) + `}`, `duplicate object key "k0"`, -1},

		// Lone surrogates.
		{"lone high surrogate", `{"a":"\ud800"}`, `lone UTF-16 surrogate \ud800`, 6},
		{"high surrogate then text", `{"a":"\ud83dx"}`, `lone UTF-16 surrogate \ud83d`, 6},
		{"high surrogate then non-low escape", `{"a":"\ud83d\u0041"}`, `lone UTF-16 surrogate \ud83d`, 6},
		{"two high surrogates", `{"a":"\ud83d\ud83d"}`, `lone UTF-16 surrogate \ud83d`, 6},
		{"lone low surrogate", `{"a":"\ude00"}`, `lone UTF-16 surrogate \ude00`, 6},
		{"reversed pair", `{"a":"\ude00\ud83d"}`, `lone UTF-16 surrogate \ude00`, 6},
		{"lone surrogate in key", `{"\udfff":1}`, `lone UTF-16 surrogate \udfff`, 2},
		{"high surrogate at end", `{"a":"\ud800`, `lone UTF-16 surrogate`, 6},

		// Nesting.
		{"too deep arrays", `{"a":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`, "nesting deeper than 512 levels", 5 + maxDepth - 1},
		{"too deep objects", strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1), "nesting deeper than 512 levels", 5 * maxDepth},
		{"huge unclosed nesting", `{"a":` + strings.Repeat("[", 1_000_000), "nesting deeper than 512 levels", -1},

		// Float overflow.
		{"1e400", `{"a":1e400}`, "number 1e400 is out of range for a 64-bit float", 5},
		{"-1e400", `{"a":[-1e400]}`, "number -1e400 is out of range", 6},
		{"big with fraction", `{"a":` + strings.Repeat("9", 400) + `.5}`, "is out of range", 5},
		{"just above max", `{"a":1.7976931348623159e308}`, "is out of range", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parser
			members, err := p.ParseObject([]byte(tt.in))
			if err == nil {
				t.Fatalf("accepted %q", clip([]byte(tt.in)))
			}
			if members != nil {
				t.Errorf("members returned with an error")
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v is not a *SyntaxError", err, err)
			}
			if !strings.Contains(se.Msg, tt.msg) {
				t.Errorf("message %q does not mention %q", se.Msg, tt.msg)
			}
			if se.Error() != se.Msg {
				t.Errorf("Error() = %q, Msg = %q", se.Error(), se.Msg)
			}
			if tt.offset >= 0 && se.Offset != tt.offset {
				t.Errorf("offset %d, want %d (%s)", se.Offset, tt.offset, se.Msg)
			}
		})
	}
}

// largeObject returns an object with n keys k0..k(n-1), in reverse order,
// whose last member repeats key k<dup>.
func largeObject(n, dup int) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i := n - 1; i >= 0; i-- {
		sb.WriteString(`"k` + strconv.Itoa(i) + `":1,`)
	}
	sb.WriteString(`"k` + strconv.Itoa(dup) + `":2}`)
	return sb.String()
}

func TestErrorMessageFormat(t *testing.T) {
	var p Parser
	_, err := p.ParseObject([]byte(`{"model":"a", "model":"b"}`))
	if want := `invalid JSON at offset 14: duplicate object key "model"`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	_, err = p.ParseObject([]byte(`[]`))
	if want := `request body must be a JSON object`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	// A hostile key must not blow up the message.
	long := strings.Repeat("x", 10000)
	_, err = p.ParseObject([]byte(`{"` + long + `":1,"` + long + `":2}`))
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("message for a long duplicate key: %d bytes", len(err.Error()))
	}
}

// TestAccepts checks bodies at the edges of what is allowed.
func TestAccepts(t *testing.T) {
	accepts := []string{
		`{}`,
		` {"a":[]} `,
		`{"a":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `}`,
		strings.Repeat(`{"a":`, maxDepth) + "1" + strings.Repeat("}", maxDepth),
		`{"a":"\ud83d\ude00","b":"\uDBFF\uDFFF","c":"\u0000"}`,
		"{\"a\":\"\xf0\x9f\x98\x80\xef\xbf\xbd\x7f\"}", // 😀, literal U+FFFD, DEL
		`{"a":1e308,"b":-1.7976931348623157e308,"c":1e-400,"d":` + strings.Repeat("9", 400) + `}`,
		`{"a":0,"b":-0,"c":0.0,"d":0e0,"e":1E+2,"f":1e-2}`,
		`{"a":1,"A":2,"a ":3,"\u00e9":4,"e\u0301":5}`, // different keys, even if they look alike
		`{"x":` + strings.Replace(largeObject(100, 0), `"k0":2}`, `"z":2}`, 1) + `}`,
	}
	for _, in := range accepts {
		var p Parser
		if _, err := p.ParseObject([]byte(in)); err != nil {
			t.Errorf("refused %q: %v", clip([]byte(in)), err)
		}
	}
}
