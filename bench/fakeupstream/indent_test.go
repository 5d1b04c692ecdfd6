package fakeupstream

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// laidOut checks that body is JSON laid out as api.openai.com does it: indented by indent per level, "key":
// value with one space, a newline at the end.
func laidOut(t *testing.T, what string, body []byte, indent string) {
	t.Helper()
	var compact, want bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		t.Fatalf("%s: not JSON: %v: %s", what, err, body)
	}
	if err := json.Indent(&want, compact.Bytes(), "", indent); err != nil {
		t.Fatal(err)
	}
	want.WriteByte('\n')
	if !bytes.Equal(body, want.Bytes()) {
		t.Fatalf("%s is not indented by %q:\n%s", what, indent, body)
	}
	if !bytes.HasPrefix(body, []byte("{\n"+indent+`"`)) || !bytes.Contains(body, []byte(`": `)) {
		t.Fatalf("%s does not look like OpenAI's layout:\n%s", what, body)
	}
}

// isCompact fails the test unless body is JSON without insignificant whitespace.
func isCompact(t *testing.T, what string, body []byte) {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, body); err != nil {
		t.Fatalf("%s: not JSON: %v: %s", what, err, body)
	}
	if !bytes.Equal(body, b.Bytes()) {
		t.Fatalf("%s is not compact: %s", what, body)
	}
}

// sameAnswer fails the test unless two answers are the same JSON value apart from the response id and
// creation time, which differ from call to call.
func sameAnswer(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	for _, m := range []map[string]any{g, w} {
		delete(m, "id")
		delete(m, "created")
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("answers differ:\n%s\n%s", got, want)
	}
}

// With Options.Indent every non-streamed body is laid out as OpenAI lays it out, and says the same as the
// compact one; X-Fake-Indent chooses per request.
func TestIndentNonStreamed(t *testing.T) {
	indented := start(t, Options{Indent: true})
	compact := start(t, Options{})
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"chat", http.MethodPost, "/v1/chat/completions", string(ChatRequest(1)), 200},
		{"chat tool call", http.MethodPost, "/v1/chat/completions", userChat("m", "TOOL: weather", `,"n":2`), 200},
		{"chat reasoning", http.MethodPost, "/v1/chat/completions", userChat("m", "THINK: why", ""), 200},
		{"completions with logprobs", http.MethodPost, "/v1/completions", `{"model":"m","prompt":["a b","c"],"logprobs":2,"echo":true,"max_tokens":3}`, 200},
		{"embeddings", http.MethodPost, "/v1/embeddings", `{"model":"m","input":["one","two"],"dimensions":4}`, 200},
		{"embeddings base64", http.MethodPost, "/v1/embeddings", `{"model":"m","input":"one","encoding_format":"base64"}`, 200},
		{"models", http.MethodGet, "/v1/models", "", 200},
		{"bad request", http.MethodPost, "/v1/chat/completions", `{"model":"m"}`, 400},
		{"unknown route", http.MethodGet, "/v1/nothing", "", 404},
		{"wrong method", http.MethodGet, "/v1/chat/completions", "", 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			indent := "  "
			if tc.status >= 400 {
				indent = "    " // OpenAI's error bodies are indented further than its answers
			}
			got := do(t, tc.method, indented.URL()+tc.path, tc.body, nil)
			want := do(t, tc.method, compact.URL()+tc.path, tc.body, nil)
			if got.status != tc.status || want.status != tc.status {
				t.Fatalf("status %d and %d, want %d: %s", got.status, want.status, tc.status, got.body)
			}
			if ct := got.header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			laidOut(t, "indented server", got.body, indent)
			isCompact(t, "compact server", want.body)
			sameAnswer(t, got.body, want.body)

			byHeader := do(t, tc.method, compact.URL()+tc.path, tc.body, map[string]string{"X-Fake-Indent": "1"})
			laidOut(t, "X-Fake-Indent: 1", byHeader.body, indent)
			notByHeader := do(t, tc.method, indented.URL()+tc.path, tc.body, map[string]string{"X-Fake-Indent": "0"})
			isCompact(t, "X-Fake-Indent: 0", notByHeader.body)
		})
	}
}

// Error bodies the server makes up are indented like the rest; a body given to FailNext goes out as given.
func TestIndentFailures(t *testing.T) {
	s := start(t, Options{Indent: true})
	r := do(t, http.MethodPost, s.URL()+"/v1/chat/completions", string(ChatRequest(1)), map[string]string{"X-Fake-Status": "429"})
	laidOut(t, "X-Fake-Status", r.body, "    ")

	s.FailNext(1, 500, "", nil)
	laidOut(t, "FailNext without a body", post(t, s, "/v1/chat/completions", string(ChatRequest(1))).body, "    ")

	for _, given := range []string{`{"error":{"message":"given","type":"x","param":null,"code":null}}`, "not json"} {
		s.FailNext(1, 503, given, nil)
		if r := post(t, s, "/v1/chat/completions", string(ChatRequest(1))); string(r.body) != given {
			t.Fatalf("FailNext body %q came out as %q", given, r.body)
		}
	}
}

// Streams stay compact, one chunk per data line, as OpenAI's do.
func TestIndentLeavesStreamsCompact(t *testing.T) {
	s := start(t, Options{Indent: true})
	for _, tc := range []struct{ path, body string }{
		{"/v1/chat/completions", userChat("m", "hello there", `,"stream":true,"stream_options":{"include_usage":true}`)},
		{"/v1/completions", `{"model":"m","prompt":"a","stream":true,"stream_options":{"include_usage":true}}`},
	} {
		r := post(t, s, tc.path, tc.body)
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%s: status %d, Content-Type %q: %s", tc.path, r.status, r.header.Get("Content-Type"), r.body)
		}
		events := strings.Split(strings.TrimSuffix(string(r.body), "\n\n"), "\n\n")
		if events[len(events)-1] != "data: [DONE]" || !strings.Contains(string(r.body), `"choices":[],"usage":{`) {
			t.Fatalf("%s: odd stream: %s", tc.path, r.body)
		}
		for _, ev := range events[:len(events)-1] {
			data, ok := strings.CutPrefix(ev, "data: ")
			if !ok || strings.Contains(data, "\n") {
				t.Fatalf("%s: event is not one data line: %q", tc.path, ev)
			}
			isCompact(t, tc.path+" chunk", []byte(data))
		}
	}
}
