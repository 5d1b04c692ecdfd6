package sse

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestIsUsageChunk(t *testing.T) {
	const usage = `"usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18}`
	const head = `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m"`
	for _, tc := range []struct {
		name  string
		event string
		want  bool
	}{
		{"openai chat", "data: " + head + `,"choices":[],` + usage + "}\n\n", true},
		{"legacy completions", `data: {"id":"cmpl-1","object":"text_completion","created":1,"choices":[],"model":"m",` + usage + "}\n\n", true},
		{"no space after colon, CRLF", "data:" + head + `,"choices":[ ],` + usage + "}\r\n\r\n", true},
		{"named message", "event: message\ndata: " + head + `,"choices":[],` + usage + "}\n\n", true},
		{"after a comment", ": keep-alive\ndata: " + head + `,"choices":[],` + usage + "}\n\n", true},
		{"byte order mark", "\xef\xbb\xbfdata: " + head + `,"choices":[],` + usage + "}\n\n", true},
		{"data on several lines", "data: {\ndata:   \"choices\": [],\ndata:   \"usage\": {\"total_tokens\": 1}\ndata: }\n\n", true},
		{"several lines, long", "data: {\ndata: \"choices\": [],\ndata: \"usage\": {\"x\": \"" + strings.Repeat("y", 5000) + "\"}\ndata: }\n\n", true},
		{"usage first, no choices member", `data: {"usage":{"total_tokens":3},"id":"x"}` + "\n\n", true},
		{"choices null", `data: {"choices":null,"usage":{"total_tokens":3}}` + "\n\n", true},
		{"escaped key", `data: {"choices":[],"us\u0061ge":{"total_tokens":3}}` + "\n\n", true},
		{"no final blank line", "data: " + head + `,"choices":[],` + usage + "}", true},

		{"content chunk", "data: " + head + `,"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}` + "\n\n", false},
		{"finish chunk with usage (vLLM continuous usage)", "data: " + head + `,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],` + usage + "}\n\n", false},
		{"empty choices, usage null", "data: " + head + `,"choices":[],"usage":null}` + "\n\n", false},
		{"empty choices, no usage (Azure prompt filter results)", `data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0}]}` + "\n\n", false},
		{"usage not an object", `data: {"choices":[],"usage":3}` + "\n\n", false},
		{"choices not an array", `data: {"choices":{},"usage":{"total_tokens":3}}` + "\n\n", false},
		{"an error with usage", `data: {"choices":[],"usage":{"total_tokens":3},"error":{"message":"boom"}}` + "\n\n", false},
		{"event: error", "event: error\ndata: {\"choices\":[]," + usage + "}\n\n", false},
		{"other named event", "event: usage\ndata: {\"choices\":[]," + usage + "}\n\n", false},
		{"done", "data: [DONE]\n\n", false},
		{"comment only", ": ping\n\n", false},
		{"empty", "", false},
		{"not JSON", "data: {\"choices\":[],\"usage\":{\n\n", false},
		{"trailing garbage", "data: {\"choices\":[]," + usage + "} x\n\n", false},
		{"an array", "data: [{\"choices\":[]," + usage + "}]\n\n", false},
		{"duplicate choices, last not empty", `data: {"choices":[],"usage":{"a":1},"choices":[{"index":0}]}` + "\n\n", false},
	} {
		if got := IsUsageChunk([]byte(tc.event)); got != tc.want {
			t.Errorf("%s: IsUsageChunk(%q) = %v, want %v", tc.name, tc.event, got, tc.want)
		}
	}
}

// The usage chunks of the fake streams the package is tested with are found, and nothing else in them.
func TestIsUsageChunkInStreams(t *testing.T) {
	for _, tc := range roundTripStreams() {
		var s Splitter
		var got []bool
		s.Feed([]byte(tc.stream), func(ev []byte) { got = append(got, IsUsageChunk(ev)) })
		for i, u := range got {
			// Only the event before [DONE] can be the usage chunk, and it is one when the stream has usage.
			want := i == len(got)-2 && strings.Contains(tc.stream, `"choices":[],"usage":{`)
			if u != want {
				t.Errorf("%s: event %d: IsUsageChunk = %v, want %v", tc.name, i, u, want)
			}
		}
	}
}

// IsUsageChunk agrees with a reading of the event by encoding/json.
func FuzzIsUsageChunk(f *testing.F) {
	f.Add([]byte(`data: {"choices":[],"usage":{"total_tokens":3}}` + "\n\n"))
	f.Add([]byte("event: message\r\ndata: {\"choices\" : [ ],\r\ndata: \"usage\":{}}\r\n\r\n"))
	f.Add([]byte(`data: {"choices":[{}],"usage":{"a":1},"error":null}` + "\n\n"))
	f.Add([]byte(`data: {"choices":[],"usage":{"a":1},"us\u0061ge":null}` + "\n\n"))
	f.Fuzz(func(t *testing.T, event []byte) {
		got := IsUsageChunk(event)
		data, et, ok := Data(event)
		data = bytes.TrimSpace(data)
		if !utf8.Valid(data) || bytes.Count(data, []byte("[")) > 100 || bytes.Count(data, []byte("{")) > 100 {
			return // encoding/json accepts invalid UTF-8 and deeper nesting than the package
		}
		var m map[string]json.RawMessage
		want := ok && (et == "" || et == "message") && json.Valid(data) && json.Unmarshal(data, &m) == nil
		if want {
			ch, usage, e := m["choices"], m["usage"], m["error"]
			want = (ch == nil || string(ch) == "null" || string(bytes.TrimSpace(ch[1:len(ch)-1])) == "" && ch[0] == '[') &&
				len(usage) > 0 && usage[0] == '{' && (e == nil || string(e) == "null")
		}
		if got != want {
			t.Fatalf("IsUsageChunk(%q) = %v, encoding/json says %v", event, got, want)
		}
	})
}
