package canon

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// strictRefusals are the refusals of documents that encoding/json accepts:
// the rules this package adds on purpose. Any other refusal of a document
// json.Valid accepts is a bug.
var strictRefusals = []string{
	"duplicate object key",
	"invalid UTF-8",
	"lone UTF-16 surrogate",
	"nesting deeper than",
	"out of range for a 64-bit float",
	"request body must be a JSON object",
}

var fuzzSeeds = []string{
	`{}`,
	chatBody500,
	`{"a":1,"b":[true,false,null],"c":{"d":"e"}}`,
	` {"b" : 1 , "a" : [ ] } `,
	`{"s":"\u00e9 é \ud83d\ude00 \/ \" \\ \b\f\n\r\t \u0000 \u001f \u2028"}`,
	`{"\u20ac":1,"\r":2,"\ufb33":3,"1":4,"\ud83d\ude00":5,"\u0080":6,"\u00f6":7,"</script>":8}`,
	`{"n":[0,-0,1.0,1e0,10E-1,-0.0,1e21,1e-7,123456789012345678901234567890,9007199254740993,1.5e-7,0.1,4.5,-2.5E+3]}`,
	`{"n":1e308,"m":1e-400,"o":-1.7976931348623157e308}`,
	`{"o":{"b":{"d":1,"c":2},"a":[{"z":1,"y":2}]}}`,
	`{"a":1,"a":2}`,
	`{"a":1,"\u0061":2}`,
	`{"a":"\ud800"}`,
	`{"a":"\udc00"}`,
	"{\"a\":\"\xff\"}",
	`{"a":1e400}`,
	`{"a":01}`,
	`{"a":1,}`,
	`[1,2]`,
	`"str"`,
	``,
	`{"a":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}`,
	`{"a":1} {}`,
	`{"a" 1}`,
	`{"a":"x\ny"}`,
	`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k3":17}`,
	`{"k16":0,"k15":1,"k14":2,"k13":3,"k12":4,"k11":5,"k10":6,"k9":7,"k8":8,"k7":9,"k6":10,"k5":11,"k4":12,"k3":13,"k2":14,"k1":15,"k0":16}`,
	"{\"\uffff\":1,\"\U00010000\":2,\"\ue000\":3,\"\ud7ff\":4}",
	`{"s":"0123456789abcdef\"0123456789abcdef\\0123456789abcdef\u00e9"}`,
}

func FuzzCanonical(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Parser
		// Never validated: must not panic or hang, whatever the input.
		_ = p.AppendCanonical(nil, data)
		if i := skipWS(data, 0); i < len(data) {
			p.index(data, i)
			checkIndex(t, data, p.nodes)
		}

		stdValid := json.Valid(data)
		members, err := p.ParseObject(data)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %T is not a *SyntaxError: %v", err, err)
			}
			if stdValid && !isStrictRefusal(se.Msg) {
				t.Fatalf("refused JSON that encoding/json accepts: %v", err)
			}
			if strings.Contains(se.Msg, "invalid UTF-8") && utf8.Valid(data) {
				t.Fatalf("UTF-8 refusal of valid UTF-8: %v", err)
			}
			if se.Offset < 0 || se.Offset > len(data) {
				t.Fatalf("offset %d outside the body (%d bytes)", se.Offset, len(data))
			}
			return
		}
		if !stdValid {
			t.Fatalf("accepted JSON that encoding/json rejects")
		}
		if !utf8.Valid(data) {
			t.Fatalf("accepted invalid UTF-8")
		}
		checkMembers(t, data, members)

		canon := p.AppendCanonicalObject(nil, data, members, nil)
		if whole := p.AppendCanonical(nil, data); !bytes.Equal(whole, canon) {
			t.Fatalf("AppendCanonical and AppendCanonicalObject disagree:\n%s\n%s", whole, canon)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, canon); err != nil || !bytes.Equal(compact.Bytes(), canon) {
			t.Fatalf("canonical form is not compact JSON: %s (%v)", canon, err)
		}

		var p2 Parser
		members2, err := p2.ParseObject(canon)
		if err != nil {
			t.Fatalf("canonical form refused: %v\n%s", err, canon)
		}
		if again := p2.AppendCanonicalObject(nil, canon, members2, nil); !bytes.Equal(again, canon) {
			t.Fatalf("not idempotent:\n%s\n%s", canon, again)
		}

		if a, b := decodeNormalized(t, data), decodeNormalized(t, canon); !reflect.DeepEqual(a, b) {
			t.Fatalf("canonical form means something else:\n in: %#v\nout: %#v", a, b)
		}
	})
}

// checkIndex verifies the invariants emit relies on to terminate without
// panicking, which index must keep even for malformed input.
func checkIndex(t *testing.T, b []byte, nodes []node) {
	t.Helper()
	for n, nd := range nodes {
		if nd.next <= n || nd.next > len(nodes) {
			t.Fatalf("node %d: next %d (of %d nodes)", n, nd.next, len(nodes))
		}
		if nd.start < 0 || nd.start >= len(b) || nd.end < nd.start || nd.end > len(b) {
			t.Fatalf("node %d: span [%d,%d) in %d bytes", n, nd.start, nd.end, len(b))
		}
		if nd.keyStart < 0 || nd.keyEnd < nd.keyStart || nd.keyEnd > len(b) {
			t.Fatalf("node %d: key span [%d,%d) in %d bytes", n, nd.keyStart, nd.keyEnd, len(b))
		}
		for c := n + 1; c < nd.next; c = nodes[c].next {
			if nodes[c].next > nd.next {
				t.Fatalf("node %d: child %d ends after its parent", n, c)
			}
		}
	}
}

func isStrictRefusal(msg string) bool {
	for _, s := range strictRefusals {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// checkMembers verifies the offsets ParseObject reported against the body.
func checkMembers(t *testing.T, data []byte, members []Member) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatalf("encoding/json cannot decode an accepted object: %v", err)
	}
	if len(top) != len(members) {
		t.Fatalf("%d members, encoding/json sees %d", len(members), len(top))
	}
	for _, m := range members {
		if data[m.KeyStart] != '"' {
			t.Fatalf("KeyStart %d is not a quote", m.KeyStart)
		}
		end := stringEnd(data, m.KeyStart)
		key, err := DecodeString(nil, data[m.KeyStart:end])
		if err != nil || !bytes.Equal(key, m.Key) {
			t.Fatalf("key %q, decoded from the body %q (%v)", m.Key, key, err)
		}
		raw := data[m.ValueStart:m.ValueEnd]
		if want := bytes.TrimSpace(top[string(m.Key)]); !bytes.Equal(raw, want) {
			t.Fatalf("value of %q is %q, encoding/json says %q", m.Key, raw, want)
		}
		if m.Type != typeOf(raw[0]) {
			t.Fatalf("value %q has type %v", raw, m.Type)
		}
		if m.Type == String {
			var want string
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			if got, err := DecodeString(nil, raw); err != nil || string(got) != want {
				t.Fatalf("DecodeString(%s) = %q, %v; want %q", raw, got, err, want)
			}
		}
	}
}

func typeOf(c byte) Type {
	switch c {
	case '{':
		return Object
	case '[':
		return Array
	case '"':
		return String
	case 't':
		return True
	case 'f':
		return False
	case 'n':
		return Null
	}
	return Number
}

// decodeNormalized decodes with encoding/json and turns every number into a
// float64: canonical numbers are spelled differently by design, but must
// denote the same double.
func decodeNormalized(t *testing.T, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return normalizeNumbers(v)
}

func normalizeNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		f, _ := strconv.ParseFloat(string(v), 64) // out-of-range integers become ±Inf on both sides
		return f
	case []any:
		for i := range v {
			v[i] = normalizeNumbers(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = normalizeNumbers(v[k])
		}
	}
	return v
}
