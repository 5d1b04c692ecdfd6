package pipeline

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// keyed keys body as a completions request and returns its request key and its prompts' keys (nil when it
// is not cached prompt by prompt).
func keyed(t *testing.T, body string, mode Mode) (Key, []Key) {
	t.Helper()
	k := NewKeyer(Config{})
	r := &Request{Kind: KindCompletion, Body: []byte(body), Controls: DefaultControls(mode)}
	if err := k.Key(r); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	var items []Key
	for _, it := range r.items {
		items = append(items, it.key)
		if got := body[it.start:it.end]; !strings.HasPrefix(got, `"`) && !strings.HasPrefix(got, "[") {
			t.Fatalf("%s: a prompt's span is %q", body, got)
		}
	}
	return r.Key, items
}

// A prompt's key depends on the prompt and on the rest of the request, never on its batch: its position,
// its neighbours, the spacing of the array.
func TestPromptKeysIgnoreTheBatch(t *testing.T) {
	_, ab := keyed(t, `{"model":"m","prompt":["a","b"],"max_tokens":3}`, ModeReadWrite)
	_, ba := keyed(t, `{"max_tokens": 3, "prompt": [ "b" , "a" ], "model": "m"}`, ModeReadWrite)
	_, a := keyed(t, `{"model":"m","prompt":["a"],"max_tokens":3}`, ModeReadWrite)
	_, aEsc := keyed(t, `{"model":"m","prompt":["\u0061"],"max_tokens":3}`, ModeReadWrite)
	if len(ab) != 2 || ab[0] != ba[1] || ab[1] != ba[0] || a[0] != ab[0] || aEsc[0] != a[0] {
		t.Fatalf("keys: ab %x, ba %x, a %x", ab, ba, a)
	}
	if ab[0] == ab[1] {
		t.Fatal("two prompts share a key")
	}
	for _, other := range []string{
		`{"model":"m","prompt":["a"],"max_tokens":4}`,
		`{"model":"m","prompt":["a"],"max_tokens":3,"n":2}`,
		`{"model":"m","prompt":["a"],"max_tokens":3,"echo":true}`,
		`{"model":"o","prompt":["a"],"max_tokens":3}`,
		`{"model":"m","prompt":[[97]],"max_tokens":3}`,
	} {
		if _, k := keyed(t, other, ModeReadWrite); len(k) != 1 || k[0] == a[0] {
			t.Errorf("%s shares the key of prompt a", other)
		}
	}
	_, ids := keyed(t, `{"model":"m","prompt":[[1,2],[3]]}`, ModeReadWrite)
	_, ids2 := keyed(t, `{"model":"m","prompt":[[3],[1, 2]]}`, ModeReadWrite)
	if len(ids) != 2 || ids[0] != ids2[1] || ids[1] != ids2[0] {
		t.Fatal("token-id prompts are not keyed one by one")
	}
	if _, n1 := keyed(t, `{"model":"m","prompt":["a","b"],"max_tokens":3,"n":null}`, ModeReadWrite); len(n1) != 2 {
		t.Error("n null is not the default n")
	}
}

// What keeps its whole entry: the request key is the completions route's, and no prompt is keyed.
func TestPromptArraysThatStayWhole(t *testing.T) {
	whole := func(body string) Key {
		k := NewKeyer(Config{})
		r := &Request{Kind: KindCompletion, Body: []byte(body), Controls: DefaultControls(ModeReadWrite)}
		if err := k.Key(r); err != nil {
			t.Fatal(err)
		}
		return r.Key
	}
	for _, body := range []string{
		`{"model":"m","prompt":"a"}`,
		`{"model":"m","prompt":[1,2,3]}`,
		`{"model":"m","prompt":["a","b"],"stream":true}`,
		`{"model":"m","prompt":[]}`,
		`{"model":"m","prompt":["a",[1]]}`,
		`{"model":"m","prompt":[[1],[]]}`,
		`{"model":"m","prompt":[[1.5]]}`,
		`{"model":"m","prompt":[null]}`,
		`{"model":"m","prompt":["a"],"n":0}`,
		`{"model":"m","prompt":["a"],"n":"2"}`,
		`{"model":"m","prompt":["a"],"n":1.5}`,
	} {
		key, items := keyed(t, body, ModeReadWrite)
		if items != nil {
			t.Errorf("%s is cached prompt by prompt", body)
		}
		if key != whole(body) {
			t.Errorf("%s: the request key is not the whole entry's", body)
		}
	}
	if _, items := keyed(t, `{"model":"m","prompt":["a","b"]}`, ModeOff); items != nil {
		t.Error("mode off keys prompts")
	}
	big := `{"model":"m","prompt":[` + strings.Repeat(`"p",`, maxBatchedPrompts) + `"p"]}`
	if _, items := keyed(t, big, ModeReadWrite); items != nil {
		t.Error("a batch over maxBatchedPrompts is keyed prompt by prompt")
	}
	// The request key of a prompt array is not the whole entry of the same body (a streamed request has it).
	arr, _ := keyed(t, `{"model":"m","prompt":["a","b"]}`, ModeReadWrite)
	if arr == whole(`{"model":"m","prompt":["a","b"],"stream":true}`) {
		t.Error("a batched request shares its key with the streamed request of the same body")
	}
	// A one-prompt array is not the string prompt's entry.
	_, one := keyed(t, `{"model":"m","prompt":["a"]}`, ModeReadWrite)
	if one[0] == whole(`{"model":"m","prompt":"a"}`) {
		t.Error("a one-prompt array shares the string prompt's whole entry")
	}
}

func TestRawJSONScanners(t *testing.T) {
	b := []byte(` { "a" : [ 1 , "x,]\"}" , {"k":[2,3]} , null ] ,"b":{"c":"}"},"\u0063":-1.5e3 } `)
	ms, ok := rawObjectMembers(b, rawSkipWS(b, 0))
	if !ok || len(ms) != 3 {
		t.Fatalf("members %v %v", ms, ok)
	}
	if !ms[0].is(b, "a") || !ms[1].is(b, "b") || ms[2].is(b, "c") || string(b[ms[2].valueStart:ms[2].valueEnd]) != "-1.5e3" {
		t.Fatalf("members %v", ms)
	}
	var got []string
	for _, sp := range rawArrayElems(b, ms[0].valueStart) {
		got = append(got, string(b[sp[0]:sp[1]]))
	}
	if strings.Join(got, "|") != `1|"x,]\"}"|{"k":[2,3]}|null` {
		t.Fatalf("elements %q", got)
	}
	if string(b[ms[1].valueStart:ms[1].valueEnd]) != `{"c":"}"}` {
		t.Fatalf("b = %s", b[ms[1].valueStart:ms[1].valueEnd])
	}
	if rawArrayElems([]byte(`[ ]`), 0) != nil || rawArrayElems([]byte(`{}`), 0) != nil {
		t.Fatal("an empty array or an object has elements")
	}
	// Garbage: nonsense out, never a panic or a hang.
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte(`{}[]",:\ a1-`)
	for range 20000 {
		g := make([]byte, rng.IntN(24))
		for i := range g {
			g[i] = alphabet[rng.IntN(len(alphabet))]
		}
		rawObjectMembers(g, 0)
		rawArrayElems(g, 0)
		if len(g) > 0 {
			rawValueEnd(g, rng.IntN(len(g)))
		}
	}
}

func TestChoiceIndexRewrite(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"text":"a","index":7,"logprobs":null}`, `{"text":"a","index":3,"logprobs":null}`},
		{`{"index":12}`, `{"index":3}`},
		{`{"text":"no index"}`, `{"index":3,"text":"no index"}`},
		{`{}`, `{"index":3}`},
	} {
		if got := string(appendWithIndex(nil, []byte(c.in), 3)); got != c.want {
			t.Errorf("%s: %s, want %s", c.in, got, c.want)
		}
	}
	if i, ok := choiceIndex([]byte(`{"text":"x","index":42}`)); !ok || i != 42 {
		t.Errorf("index %d %v", i, ok)
	}
	if _, ok := choiceIndex([]byte(`{"text":"x","index":"1"}`)); ok {
		t.Error("a string index is read")
	}
}

// The reassembled answer keeps the top-level fields in their order, compact, with every prompt's choices
// in the client's order and the usage given.
func TestPromptResponse(t *testing.T) {
	pc := &promptCall{n: 2, choices: [][][]byte{
		{[]byte(`{"text":"a0","index":0}`), []byte(`{"text":"a1","index":1}`)},
		{[]byte(`{"text":"b0","index":0}`), []byte(`{"text":"b1","index":1}`)},
	}}
	top := []byte("{\n  \"id\": \"cmpl-1\",\n  \"choices\": [],\n  \"model\": \"m\",\n  \"usage\": {\"total_tokens\": 9}\n}\n")
	want := `{"id":"cmpl-1","choices":[{"text":"a0","index":0},{"text":"a1","index":1},{"text":"b0","index":2},{"text":"b1","index":3}],"model":"m","usage":{"total_tokens":1}}`
	if got := string(pc.response(top, []byte(`{ "total_tokens" : 1 }`))); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// A cached entry has no usage: zero usage goes last.
	entry := entryBody(top, mustMembers(t, top), [][]byte{[]byte(`{"text":"a0","index":0}`)})
	if string(entry) != `{"id":"cmpl-1","choices":[{"text":"a0","index":0}],"model":"m"}` {
		t.Fatalf("entry %s", entry)
	}
	want = `{"id":"cmpl-1","choices":[{"text":"a0","index":0},{"text":"a1","index":1},{"text":"b0","index":2},{"text":"b1","index":3}],"model":"m","usage":` + string(zeroUsage) + `}`
	if got := string(pc.response(entry, zeroUsage)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// An upstream answer without usage gets none.
	if got := string(pc.response([]byte(`{"id":"x","choices":[]}`), nil)); strings.Contains(got, "usage") {
		t.Errorf("usage invented: %s", got)
	}
}

func mustMembers(t *testing.T, b []byte) []rawMember {
	ms, ok := rawObjectMembers(b, rawSkipWS(b, 0))
	if !ok {
		t.Fatalf("not an object: %s", b)
	}
	return ms
}
