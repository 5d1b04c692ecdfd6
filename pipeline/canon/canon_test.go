package canon

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// canonical parses body and returns its canonical form, failing the test on a
// refusal.
func canonical(t *testing.T, body string) string {
	t.Helper()
	var p Parser
	members, err := p.ParseObject([]byte(body))
	if err != nil {
		t.Fatalf("ParseObject(%q): %v", body, err)
	}
	return string(p.AppendCanonicalObject(nil, []byte(body), members, nil))
}

func TestCanonicalForm(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty object", `{}`, `{}`},
		{"whitespace everywhere", " \t\r\n{ \"b\" : [ 1 , 2 ] ,\n\"a\" : { } , \"c\" : [ ] } \n", `{"a":{},"b":[1,2],"c":[]}`},
		{"keys sorted", `{"model":"m","messages":[],"max_tokens":1}`, `{"max_tokens":1,"messages":[],"model":"m"}`},
		{"nested keys sorted", `{"m":[{"role":"user","content":"hi"},{"z":{"y":1,"x":2}}]}`, `{"m":[{"content":"hi","role":"user"},{"z":{"x":2,"y":1}}]}`},
		{"prefix key sorts first", `{"ab":1,"a":2,"":3}`, `{"":3,"a":2,"ab":1}`},
		{"literals", `{"t":true,"f":false,"n":null}`, `{"f":false,"n":null,"t":true}`},
		{"short escapes kept", `{"s":"\"\\\b\f\n\r\t"}`, `{"s":"\"\\\b\f\n\r\t"}`},
		{"unicode escapes of short escapes", `{"s":"\u0022\u005c\u0008\u000c\u000a\u000d\u0009"}`, `{"s":"\"\\\b\f\n\r\t"}`},
		{"other controls lower-case hex", `{"s":"\u0000\u001F\u000B"}`, `{"s":"\u0000\u001f\u000b"}`},
		{"solidus unescaped", `{"s":"a\/b"}`, `{"s":"a/b"}`},
		{"non-ASCII literal", `{"s":"\u00e9\u20AC\ud83d\ude00"}`, `{"s":"é€😀"}`},
		{"line separators literal", `{"s":"\u2028\u2029"}`, "{\"s\":\"\u2028\u2029\"}"},
		{"DEL literal", `{"s":"\u007f"}`, "{\"s\":\"\x7f\"}"},
		{"escaped key", `{"\u0062":1,"a\n":2}`, `{"a\n":2,"b":1}`},
		{"escaped nested key", `{"o":{"\u0062":1,"a\n":2}}`, `{"o":{"a\n":2,"b":1}}`},
		{"integers keep digits", `{"a":123456789012345678901234567890,"b":-17,"c":0}`, `{"a":123456789012345678901234567890,"b":-17,"c":0}`},
		{"minus zero", `{"a":-0,"b":-0.0,"c":0e5,"d":-0E-3}`, `{"a":0,"b":0,"c":0,"d":0}`},
		{"floats", `{"a":1.0,"b":1e2,"c":0.1,"d":1.5,"e":-2.50e-1,"f":1E21,"g":1e-7,"h":1.5e-7,"i":0.000001,"j":123456789012345678901.0}`,
			`{"a":1,"b":100,"c":0.1,"d":1.5,"e":-0.25,"f":1e+21,"g":1e-7,"h":1.5e-7,"i":0.000001,"j":123456789012345680000}`},
		{"underflow rounds to zero", `{"a":1e-400}`, `{"a":0}`},
		{"openai request", `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi \u00e9"}],"temperature":0.70,"max_tokens":256,"stream":false}`,
			`{"max_tokens":256,"messages":[{"content":"Be brief.","role":"system"},{"content":"Hi é","role":"user"}],"model":"gpt-4o-mini","stream":false,"temperature":0.7}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := canonical(t, tt.in); got != tt.want {
				t.Errorf("canonical(%s)\n got %s\nwant %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestCanonicalEquivalence(t *testing.T) {
	groups := [][]string{
		{`{"a":1,"b":2}`, `{"b":2,"a":1}`, "{ \"b\" :2 ,\n\t\"a\":1 }"},
		{`{"s":"\u00e9"}`, `{"s":"é"}`, `{"s":"\u00E9"}`},
		{`{"n":1.0}`, `{"n":1e0}`, `{"n":10E-1}`, `{"n":1}`, `{"n":0.1e1}`, `{"n":100e-2}`},
		{`{"n":100}`, `{"n":1e2}`, `{"n":1E+2}`, `{"n":100.000}`},
		{`{"o":{"x":[1,{"q":1,"p":2}],"y":null}}`, `{"o":{"y":null,"x":[1,{"p":2,"q":1}]}}`},
		{`{"\u0061":1}`, `{"a":1}`},
		{`{"s":"a/b"}`, `{"s":"a\/b"}`},
	}
	for _, g := range groups {
		want := canonical(t, g[0])
		for _, in := range g[1:] {
			if got := canonical(t, in); got != want {
				t.Errorf("canonical(%s) = %s, want %s (same as %s)", in, got, want, g[0])
			}
		}
	}
}

func TestCanonicalDistinct(t *testing.T) {
	pairs := [][2]string{
		{`{"n":9007199254740993}`, `{"n":9007199254740992}`}, // equal as float64, distinct as integers
		{`{"n":1}`, `{"n":"1"}`},
		{`{"s":"a"}`, `{"s":"A"}`},
		{`{"a":[1,2]}`, `{"a":[2,1]}`},
		{`{"a":null}`, `{}`},
	}
	for _, pr := range pairs {
		if a, b := canonical(t, pr[0]), canonical(t, pr[1]); a == b {
			t.Errorf("%s and %s both canonicalize to %s", pr[0], pr[1], a)
		}
	}
}

// TestUTF16SortOrder uses the example of RFC 8785 section 3.2.3, where
// sorting by UTF-8 bytes or code points would put U+FB33 before U+1F600.
func TestUTF16SortOrder(t *testing.T) {
	keys := []string{`\u20ac`, `\r`, `\ufb33`, `1`, `\ud83d\ude00`, `\u0080`, `\u00f6`, `</script>`}
	wantOrder := []string{`\r`, `1`, `</script>`, `\u0080`, `\u00f6`, `\u20ac`, `\ud83d\ude00`, `\ufb33`}

	members := func(keys []string) string {
		var sb strings.Builder
		for i, k := range keys {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(`"` + k + `":"` + k + `"`)
		}
		return sb.String()
	}
	// Build the expected canonical text from the JSON-escaped keys by
	// canonicalizing each key string on its own.
	var want strings.Builder
	for i, k := range wantOrder {
		if i > 0 {
			want.WriteByte(',')
		}
		var p Parser
		s := string(p.AppendCanonical(nil, []byte(`"`+k+`"`)))
		want.WriteString(s + ":" + s)
	}
	if got, want := canonical(t, "{"+members(keys)+"}"), "{"+want.String()+"}"; got != want {
		t.Errorf("top level:\n got %s\nwant %s", got, want)
	}
	if got, want := canonical(t, `{"o":{`+members(keys)+"}}"), `{"o":{`+want.String()+"}}"; got != want {
		t.Errorf("nested:\n got %s\nwant %s", got, want)
	}
}

func TestCompareUTF16(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "a", -1},
		{"a", "b", -1},
		{"ab", "a", 1},
		{"\uffff", "\U00010000", 1}, // BMP above surrogates sorts after supplementary
		{"\ue000", "\U0010ffff", 1},
		{"\ud7ff", "\U00010000", -1}, // below surrogates sorts first
		{"\U0001f600", "\U0001f601", -1},
		{"x\U0001f600", "x\ufb33", -1},
		{"é", "z", 1},
	}
	for _, tt := range tests {
		if got := compareUTF16([]byte(tt.a), []byte(tt.b)); got != tt.want {
			t.Errorf("compareUTF16(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := compareUTF16([]byte(tt.b), []byte(tt.a)); got != -tt.want {
			t.Errorf("compareUTF16(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

func TestMemberOffsets(t *testing.T) {
	body := []byte(" {\"model\" : \"gpt\\u0034\", \"n\":[1, {\"x\":2}] ,\"\\u0061b\":{ } ,\"t\":true,\"z\":-1.5e3}  ")
	want := []struct {
		key, raw string
		typ      Type
	}{
		{"model", `"gpt\u0034"`, String},
		{"n", `[1, {"x":2}]`, Array},
		{"ab", `{ }`, Object},
		{"t", `true`, True},
		{"z", `-1.5e3`, Number},
	}
	var p Parser
	members, err := p.ParseObject(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != len(want) {
		t.Fatalf("got %d members, want %d", len(members), len(want))
	}
	for i, m := range members {
		w := want[i]
		if string(m.Key) != w.key {
			t.Errorf("member %d: key %q, want %q", i, m.Key, w.key)
		}
		if body[m.KeyStart] != '"' {
			t.Errorf("member %q: KeyStart %d points at %q, want '\"'", m.Key, m.KeyStart, body[m.KeyStart])
		}
		if got := string(body[m.ValueStart:m.ValueEnd]); got != w.raw {
			t.Errorf("member %q: raw value %q, want %q", m.Key, got, w.raw)
		}
		if m.Type != w.typ {
			t.Errorf("member %q: type %v, want %v", m.Key, m.Type, w.typ)
		}
	}
	if got := string(p.AppendCanonical(nil, body[members[1].ValueStart:members[1].ValueEnd])); got != `[1,{"x":2}]` {
		t.Errorf("AppendCanonical(n) = %s", got)
	}
	if got := string(p.AppendCanonical(nil, body[members[0].ValueStart:members[0].ValueEnd])); got != `"gpt4"` {
		t.Errorf("AppendCanonical(model) = %s", got)
	}
}

func TestSkip(t *testing.T) {
	body := []byte(`{"stream":true,"model":"m","user":"u1","messages":[{"stream":1}]}`)
	var p Parser
	members, err := p.ParseObject(body)
	if err != nil {
		t.Fatal(err)
	}
	skip := func(k []byte) bool { return string(k) == "stream" || string(k) == "user" }
	got := string(p.AppendCanonicalObject(nil, body, members, skip))
	if want := `{"messages":[{"stream":1}],"model":"m"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	// The members slice must not have been reordered by canonicalization.
	if string(members[0].Key) != "stream" {
		t.Errorf("members reordered: first key %q", members[0].Key)
	}
}

// TestAppendKeepsDst checks that output is appended, not overwritten.
func TestAppendKeepsDst(t *testing.T) {
	body := []byte(`{"b":{"d":1,"c":2},"a":1}`)
	var p Parser
	members, err := p.ParseObject(body)
	if err != nil {
		t.Fatal(err)
	}
	got := p.AppendCanonicalObject([]byte("prefix:"), body, members, nil)
	if want := `prefix:{"a":1,"b":{"c":2,"d":1}}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestParserReuse checks that scratch state does not leak between calls.
func TestParserReuse(t *testing.T) {
	var p Parser
	if _, err := p.ParseObject([]byte(`{"a":{"x":1,"x":2}}`)); err == nil {
		t.Fatal("duplicate accepted")
	}
	bodies := []string{`{"x":1,"o":{"x":2}}`, `{"\u0078":[{"y":1}],"y":{"\u0078":1}}`, `{"a":1}`}
	for _, b := range bodies {
		members, err := p.ParseObject([]byte(b))
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		want := canonical(t, b) // with a fresh Parser
		if got := string(p.AppendCanonicalObject(nil, []byte(b), members, nil)); got != want {
			t.Errorf("reused parser: %s, fresh: %s", got, want)
		}
	}
}

func TestDecodeString(t *testing.T) {
	tests := []struct{ in, want string }{
		{`""`, ""},
		{`"abc"`, "abc"},
		{`"a\"b\\c\/d\b\f\n\r\t"`, "a\"b\\c/d\b\f\n\r\t"},
		{`"\u00e9\u00E9é"`, "ééé"},
		{`"\ud83d\ude00"`, "😀"},
		{`"\u0000"`, "\x00"},
	}
	for _, tt := range tests {
		got, err := DecodeString([]byte("x"), []byte(tt.in))
		if err != nil {
			t.Errorf("DecodeString(%s): %v", tt.in, err)
			continue
		}
		if string(got) != "x"+tt.want {
			t.Errorf("DecodeString(%s) = %q, want %q", tt.in, got[1:], tt.want)
		}
	}
	for _, in := range []string{``, `"`, `abc`, `"abc`, `"a"b`, `"\x"`, `"\ud800"`, "\"\xff\"", "\"\n\""} {
		got, err := DecodeString([]byte("x"), []byte(in))
		if err == nil {
			t.Errorf("DecodeString(%q) accepted: %q", in, got)
		}
		if string(got) != "x" {
			t.Errorf("DecodeString(%q) changed dst on error: %q", in, got)
		}
	}
}

// TestAppendCanonicalGarbage checks that AppendCanonical on input that was
// never validated does not panic or hang.
func TestAppendCanonicalGarbage(t *testing.T) {
	inputs := []string{"", "{", "[", `{"a"`, `{"a":`, `{"a":1,`, `[1,`, `"abc`, `"\`, `"\u12`, `"\ud800`, `-`, `x`, `{x}`, `[}`, `{]`,
		`tru`, strings.Repeat("[", 100000), strings.Repeat(`{"a":`, 10000), `{"a":1 "b":2}`, `[1 2]`, `1e999`, `1.2.3`, `--1`}
	var p Parser
	for _, in := range inputs {
		_ = p.AppendCanonical(nil, []byte(in))
	}
}

func TestLargeObjects(t *testing.T) {
	var sb bytes.Buffer
	sb.WriteString(`{`)
	for i := 999; i >= 0; i-- {
		if i != 999 {
			sb.WriteByte(',')
		}
		sb.WriteString(`"k` + strings.Repeat("x", i%7) + strconv.Itoa(i) + `":` + strconv.Itoa(i))
	}
	sb.WriteString(`}`)
	body := sb.String()
	out := canonical(t, body)
	// Sorted output must itself be accepted and be a fixed point.
	if again := canonical(t, out); again != out {
		t.Error("canonical form is not a fixed point")
	}
	if strings.Count(out, ",") != 999 {
		t.Errorf("lost members: %d commas", strings.Count(out, ","))
	}
	// The same object nested.
	if got := canonical(t, `{"o":`+body+`}`); got != `{"o":`+out+`}` {
		t.Error("nested large object canonicalizes differently")
	}
}

// hostileNesting returns an object nested depth levels deep whose members are
// out of order at every level, with a large string at the bottom, and its
// canonical form. Canonicalizing it must cost time linear in its size.
func hostileNesting(depth, payload int) (body, want string) {
	big := strings.Repeat("x", payload)
	body, want = `"`+big+`"`, `"`+big+`"`
	for range depth - 1 {
		body = `{"b":1,"a":` + body + `}`
		want = `{"a":` + want + `,"b":1}`
	}
	return body, want
}

func TestHostileNesting(t *testing.T) {
	body, want := hostileNesting(maxDepth, 1<<10)
	if got := canonical(t, body); got != want {
		t.Errorf("deep unsorted nesting canonicalized wrongly")
	}
	var p Parser
	if got := string(p.AppendCanonical(nil, []byte(body))); got != want {
		t.Errorf("AppendCanonical of deep unsorted nesting differs")
	}
	// At the depth limit itself, arrays too.
	deep := `{"a":` + strings.Repeat("[", maxDepth-1) + `{"y":1,"x":2}` + strings.Repeat("]", maxDepth-1) + `}`
	if _, err := p.ParseObject([]byte(deep)); err == nil {
		t.Fatal("513 levels accepted")
	}
	deep = `{"a":` + strings.Repeat("[", maxDepth-2) + `{"y":1,"x":2}` + strings.Repeat("]", maxDepth-2) + `}`
	wantDeep := `{"a":` + strings.Repeat("[", maxDepth-2) + `{"x":2,"y":1}` + strings.Repeat("]", maxDepth-2) + `}`
	if got := canonical(t, deep); got != wantDeep {
		t.Errorf("512 levels canonicalized wrongly")
	}
}
