package sse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// indentedResponse is a non-streamed /v1/responses answer laid out as api.openai.com writes it, with every
// kind of output item the replay streams: a reasoning item with two summary parts and a reasoning_text part,
// a message with an annotated output_text (escapes, non-ASCII, a surrogate pair, logprobs) and a refusal
// part, a function call, a custom tool call and a web search call (added and done whole).
const indentedResponse = `{
  "id": "resp_0123456789abcdef",
  "object": "response",
  "created_at": 1756000000,
  "status": "completed",
  "background": false,
  "error": null,
  "incomplete_details": null,
  "instructions": "Be brief.",
  "max_output_tokens": null,
  "model": "gpt-5-2025-08-07",
  "output": [
    {
      "id": "rs_01",
      "type": "reasoning",
      "summary": [
        {
          "type": "summary_text",
          "text": "**Thinking** about the weather in Paris, which is a long enough summary to be cut into pieces: a replay sends about two hundred bytes of text in one delta, so this summary goes on for a while, as the summaries of a model that thinks aloud do."
        },
        {
          "type": "summary_text",
          "text": "Second part."
        }
      ],
      "content": [
        {
          "type": "reasoning_text",
          "text": "raw chain of thought"
        }
      ]
    },
    {
      "id": "msg_02",
      "type": "message",
      "status": "completed",
      "content": [
        {
          "type": "output_text",
          "annotations": [
            {
              "type": "url_citation",
              "start_index": 0,
              "end_index": 5,
              "title": "Example",
              "url": "https://example.com/"
            }
          ],
          "logprobs": [
            {
              "token": "Hello",
              "logprob": -0.0001,
              "bytes": [
                72
              ],
              "top_logprobs": []
            }
          ],
          "text": "Hello! \"Quoted\"\nNew line, caf\u00e9 \ud83d\ude00 and a sentence long enough to be replayed in several deltas, word by word. A replay cuts text into pieces of about two hundred bytes, after a space where it can, so this answer goes on: the weather in Paris will be mild this week, with some rain on Tuesday, sunny spells on Wednesday and a cool wind from the west on Thursday. Take an umbrella for Tuesday and a coat for the evenings, when it gets colder than the afternoons suggest."
        },
        {
          "type": "refusal",
          "refusal": "I can't help with that part."
        }
      ],
      "role": "assistant"
    },
    {
      "id": "fc_03",
      "type": "function_call",
      "status": "completed",
      "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\",\"days\":[1,2,3],\"note\":\"a longer argument string, long enough that a replay sending about two hundred bytes a delta cuts it in three pieces; arguments of real tool calls are often this long, or longer, when they carry a whole query or a paragraph of text to search for, with filters, dates and the names of the fields to return, sorted by relevance and then by date, newest first, at most twenty of them\"}",
      "call_id": "call_abc",
      "name": "get_weather"
    },
    {
      "id": "ctc_04",
      "type": "custom_tool_call",
      "call_id": "call_def",
      "input": "print('hello')",
      "name": "python"
    },
    {
      "id": "ws_05",
      "type": "web_search_call",
      "status": "completed",
      "action": {
        "type": "search",
        "query": "weather paris"
      }
    }
  ],
  "parallel_tool_calls": true,
  "previous_response_id": null,
  "reasoning": {
    "effort": "medium",
    "summary": "auto"
  },
  "store": true,
  "temperature": 1.0,
  "text": {
    "format": {
      "type": "text"
    },
    "verbosity": "medium"
  },
  "tool_choice": "auto",
  "tools": [],
  "top_p": 1.0,
  "truncation": "disabled",
  "usage": {
    "input_tokens": 36,
    "input_tokens_details": {
      "cached_tokens": 0
    },
    "output_tokens": 87,
    "output_tokens_details": {
      "reasoning_tokens": 64
    },
    "total_tokens": 123
  },
  "user": null,
  "metadata": {}
}
`

// compactJSON is v without insignificant whitespace, as encoding/json compacts it.
func compactJSON(t testing.TB, v string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(v)); err != nil {
		t.Fatalf("cannot compact %s: %v", v, err)
	}
	return b.Bytes()
}

// typedEvent is one event of a Responses stream: its event: name and its data.
type typedEvent struct {
	name string
	data map[string]any
	raw  string
}

// typedEvents splits a synthesised Responses stream, checking the framing: every event is "event: <type>"
// and one data line, the data's type is the event's name, and sequence numbers count from 0.
func typedEvents(t testing.TB, stream []byte) []typedEvent {
	t.Helper()
	var s Splitter
	var out []typedEvent
	s.Feed(stream, func(ev []byte) {
		lines := strings.Split(strings.TrimSuffix(string(ev), "\n\n"), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "event: ") || !strings.HasPrefix(lines[1], "data: {") {
			t.Fatalf("event is not an event: line and one data line: %q", ev)
		}
		name := strings.TrimPrefix(lines[0], "event: ")
		raw := strings.TrimPrefix(lines[1], "data: ")
		d := json.NewDecoder(strings.NewReader(raw))
		d.UseNumber()
		var data map[string]any
		if err := d.Decode(&data); err != nil {
			t.Fatalf("event data is not a JSON object: %v: %s", err, raw)
		}
		if data["type"] != name {
			t.Fatalf("event %q carries type %v", name, data["type"])
		}
		if !strings.HasPrefix(raw, `{"type":"`+name+`","sequence_number":`) {
			t.Fatalf("event data does not start with its type and sequence_number: %s", raw)
		}
		if got := fmt.Sprint(data["sequence_number"]); got != fmt.Sprint(len(out)) {
			t.Fatalf("event %d has sequence_number %s", len(out), got)
		}
		if ResponseEventType(ev) != name {
			t.Fatalf("ResponseEventType(%q) = %q", ev, ResponseEventType(ev))
		}
		out = append(out, typedEvent{name: name, data: data, raw: raw})
	})
	if s.Pending() {
		t.Fatalf("the stream ends inside an event")
	}
	return out
}

// rebuilt is what a client that reads only the ".added" and ".delta" events of a replay (never a ".done"
// event, nor the final response) makes of each output item: its type, and its texts by part.
type rebuilt struct {
	typ                          string
	text, refusal                map[int]string // message content, by content_index
	args, input                  string
	summary, reasoning           map[int]string
	annotations                  map[int][]any
	addedStatus, addedContentLen string
}

// rebuild applies a replay's events as openai-node's accumulateResponse does, checking its invariants (an
// item or part is added at the next index, deltas name an item that exists, item ids match), but taking
// text only from deltas.
func rebuild(t testing.TB, evs []typedEvent) []*rebuilt {
	t.Helper()
	var items []*rebuilt
	var ids []any
	idx := func(e typedEvent, k string) int {
		var n int
		if _, err := fmt.Sscan(fmt.Sprint(e.data[k]), &n); err != nil {
			t.Fatalf("%s: %s is %v", e.name, k, e.data[k])
		}
		return n
	}
	get := func(e typedEvent) *rebuilt {
		i := idx(e, "output_index")
		if i >= len(items) {
			t.Fatalf("%s for output %d before it was added", e.name, i)
		}
		if id, ok := e.data["item_id"]; ok && id != ids[i] {
			t.Fatalf("%s names item %v, output %d is %v", e.name, id, i, ids[i])
		}
		return items[i]
	}
	for _, e := range evs {
		switch e.name {
		case "response.output_item.added":
			if idx(e, "output_index") != len(items) {
				t.Fatalf("item added at %v, want %d", e.data["output_index"], len(items))
			}
			item := e.data["item"].(map[string]any)
			r := &rebuilt{typ: item["type"].(string), text: map[int]string{}, refusal: map[int]string{}, summary: map[int]string{},
				reasoning: map[int]string{}, annotations: map[int][]any{}}
			r.addedStatus = fmt.Sprint(item["status"])
			if c, ok := item["content"].([]any); ok {
				r.addedContentLen = fmt.Sprint(len(c))
			}
			for _, k := range []string{"arguments", "input"} {
				if v, ok := item[k]; ok && v != "" {
					t.Fatalf("item %v added with %s %v", item["id"], k, v)
				}
			}
			items = append(items, r)
			ids = append(ids, item["id"])
		case "response.content_part.added":
			get(e)
			part := e.data["part"].(map[string]any)
			for _, k := range []string{"text", "refusal"} {
				if v, ok := part[k]; ok && v != "" {
					t.Fatalf("part added with %s %q", k, v)
				}
			}
		case "response.output_text.delta":
			get(e).text[idx(e, "content_index")] += e.data["delta"].(string)
		case "response.output_text.annotation.added":
			r := get(e)
			r.annotations[idx(e, "content_index")] = append(r.annotations[idx(e, "content_index")], e.data["annotation"])
		case "response.refusal.delta":
			get(e).refusal[idx(e, "content_index")] += e.data["delta"].(string)
		case "response.function_call_arguments.delta":
			get(e).args += e.data["delta"].(string)
		case "response.custom_tool_call_input.delta":
			get(e).input += e.data["delta"].(string)
		case "response.reasoning_summary_text.delta":
			get(e).summary[idx(e, "summary_index")] += e.data["delta"].(string)
		case "response.reasoning_text.delta":
			get(e).reasoning[idx(e, "content_index")] += e.data["delta"].(string)
		}
	}
	return items
}

// storedOutput decodes a response's output items.
func storedOutput(t testing.TB, body []byte) []map[string]any {
	t.Helper()
	var r struct {
		Output []map[string]any `json:"output"`
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r.Output
}

// checkRebuilt compares what the deltas rebuilt with the stored output items.
func checkRebuilt(t testing.TB, got []*rebuilt, want []map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("the replay added %d items, the response has %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.typ != w["type"] {
			t.Fatalf("item %d: type %s, want %v", i, g.typ, w["type"])
		}
		switch g.typ {
		case "message":
			for j, p := range w["content"].([]any) {
				part := p.(map[string]any)
				switch part["type"] {
				case "output_text":
					if g.text[j] != part["text"] {
						t.Errorf("item %d part %d: deltas give %q, want %q", i, j, g.text[j], part["text"])
					}
					if fmt.Sprint(g.annotations[j]) != fmt.Sprint(part["annotations"]) && len(part["annotations"].([]any)) > 0 {
						t.Errorf("item %d part %d: annotations %v, want %v", i, j, g.annotations[j], part["annotations"])
					}
				case "refusal":
					if g.refusal[j] != part["refusal"] {
						t.Errorf("item %d part %d: refusal deltas give %q, want %q", i, j, g.refusal[j], part["refusal"])
					}
				}
			}
			if g.addedStatus != "in_progress" || g.addedContentLen != "0" {
				t.Errorf("message added with status %s and %s parts, want in_progress and none", g.addedStatus, g.addedContentLen)
			}
		case "function_call":
			if g.args != w["arguments"] {
				t.Errorf("item %d: argument deltas give %q, want %q", i, g.args, w["arguments"])
			}
		case "custom_tool_call":
			if g.input != w["input"] {
				t.Errorf("item %d: input deltas give %q, want %q", i, g.input, w["input"])
			}
		case "reasoning":
			for k, p := range w["summary"].([]any) {
				if s := p.(map[string]any)["text"]; g.summary[k] != s {
					t.Errorf("item %d summary %d: deltas give %q, want %q", i, k, g.summary[k], s)
				}
			}
			if c, ok := w["content"].([]any); ok {
				for j, p := range c {
					if s := p.(map[string]any)["text"]; g.reasoning[j] != s {
						t.Errorf("item %d reasoning %d: deltas give %q, want %q", i, j, g.reasoning[j], s)
					}
				}
			}
		}
	}
}

// assembleResponse runs a Responses stream through a Splitter (7-byte pieces) and a ResponseAssembler.
func assembleResponse(stream []byte) (body []byte, ok bool, reason string, eventErr error) {
	var s Splitter
	a := NewResponseAssembler()
	for len(stream) > 0 {
		n := min(7, len(stream))
		s.Feed(stream[:n], func(ev []byte) {
			if err := a.Event(ev); err != nil && eventErr == nil {
				eventErr = err
			}
		})
		stream = stream[n:]
	}
	body, ok, reason = a.Result()
	return body, ok, reason, eventErr
}

func TestSynthesizeResponseRoundTrip(t *testing.T) {
	compact := compactJSON(t, indentedResponse)
	replay, err := SynthesizeResponse(nil, []byte(indentedResponse))
	if err != nil {
		t.Fatal(err)
	}
	fromCompact, err := SynthesizeResponse(nil, compact)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(replay, fromCompact) {
		t.Fatalf("an indented response replays differently from its compact form:\n%s\n%s", replay, fromCompact)
	}
	evs := typedEvents(t, replay)
	names := make([]string, len(evs))
	for i, e := range evs {
		names[i] = e.name
	}
	want := []string{"response.created", "response.in_progress",
		"response.output_item.added", // reasoning
		"response.reasoning_summary_part.added", "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
		"response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
		"response.reasoning_summary_part.added", "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
		"response.reasoning_summary_part.done",
		"response.content_part.added", "response.reasoning_text.delta", "response.reasoning_text.done", "response.content_part.done",
		"response.output_item.done",
		"response.output_item.added", // message
		"response.content_part.added", "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
		"response.output_text.annotation.added", "response.output_text.done", "response.content_part.done",
		"response.content_part.added", "response.refusal.delta", "response.refusal.done", "response.content_part.done",
		"response.output_item.done",
		"response.output_item.added", // function call
		"response.function_call_arguments.delta", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
		"response.function_call_arguments.done",
		"response.output_item.done",
		"response.output_item.added", "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
		"response.output_item.done",
		"response.output_item.added", "response.output_item.done", // web search, whole
		"response.completed"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("event order:\n got %v\nwant %v", names, want)
	}

	// The first events carry the response in progress; the last one the stored response itself.
	for _, e := range evs[:2] {
		r := e.data["response"].(map[string]any)
		if r["status"] != "in_progress" || len(r["output"].([]any)) != 0 || r["usage"] != nil || r["id"] != "resp_0123456789abcdef" {
			t.Fatalf("%s: response %v", e.name, r)
		}
	}
	last := evs[len(evs)-1].raw
	if wantLast := `{"type":"response.completed","sequence_number":` + fmt.Sprint(len(evs)-1) + `,"response":` + string(compact) + `}`; last != wantLast {
		t.Fatalf("the final event is not the stored response:\n got %s\nwant %s", last, wantLast)
	}
	var fc map[string]any
	for _, e := range evs {
		if e.name == "response.function_call_arguments.done" {
			fc = e.data
		}
	}
	if fc["arguments"] != `{"city":"Paris","unit":"celsius","days":[1,2,3],"note":"a longer argument string, long enough that a replay sending about two hundred bytes a delta cuts it in three pieces; arguments of real tool calls are often this long, or longer, when they carry a whole query or a paragraph of text to search for, with filters, dates and the names of the fields to return, sorted by relevance and then by date, newest first, at most twenty of them"}` || fc["name"] != "get_weather" || fc["item_id"] != "fc_03" {
		t.Fatalf("function_call_arguments.done: %v", fc)
	}

	checkRebuilt(t, rebuild(t, evs), storedOutput(t, compact))

	// Assembling the replay gives the stored response back, compacted.
	body, ok, reason, err := assembleResponse(replay)
	if err != nil || !ok {
		t.Fatalf("assembling the replay: ok=%v reason=%q err=%v", ok, reason, err)
	}
	if !bytes.Equal(body, compact) {
		t.Fatalf("round trip:\n got %s\nwant %s", body, compact)
	}
}

func TestSynthesizeResponseIncompleteAndRefusals(t *testing.T) {
	incomplete := `{"id":"resp_1","object":"response","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},` +
		`"output":[{"id":"msg_1","type":"message","status":"incomplete","role":"assistant","content":[{"type":"output_text","text":"cut sh","annotations":[]}]}],` +
		`"usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5}}`
	replay, err := SynthesizeResponse(nil, []byte(incomplete))
	if err != nil {
		t.Fatal(err)
	}
	evs := typedEvents(t, replay)
	if last := evs[len(evs)-1]; last.name != ResponseIncomplete {
		t.Fatalf("an incomplete response ends with %s", last.name)
	}
	if r := evs[0].data["response"].(map[string]any); r["incomplete_details"] != nil {
		t.Fatalf("response.created carries incomplete_details %v", r["incomplete_details"])
	}
	checkRebuilt(t, rebuild(t, evs), storedOutput(t, []byte(incomplete)))
	if body, ok, reason, err := assembleResponse(replay); !ok || err != nil || string(body) != incomplete {
		t.Fatalf("assembled %s ok=%v %q %v", body, ok, reason, err)
	}

	for name, bad := range map[string]string{
		"failed":       `{"id":"r","status":"failed","output":[]}`,
		"queued":       `{"id":"r","status":"queued","output":[]}`,
		"no output":    `{"id":"r","status":"completed"}`,
		"output text":  `{"id":"r","output":"x"}`,
		"not object":   `[1]`,
		"bad JSON":     `{"id":`,
		"content text": `{"output":[{"type":"message","content":"x"}]}`,
		"item number":  `{"output":[3]}`,
	} {
		dst := []byte("kept")
		out, err := SynthesizeResponse(dst, []byte(bad))
		if err == nil || string(out) != "kept" {
			t.Errorf("%s: SynthesizeResponse(%s) = %q, %v; want dst unchanged and an error", name, bad, out, err)
		}
	}
}

// upstreamStream writes events as OpenAI does (event: line, data line) with sequence numbers.
func upstreamStream(datas ...string) string {
	var b strings.Builder
	for i, d := range datas {
		typ := memberString([]byte(d), "type")
		fmt.Fprintf(&b, "event: %s\ndata: %s\n\n", typ, strings.Replace(d, `"type":"`+typ+`"`, fmt.Sprintf(`"type":%q,"sequence_number":%d`, typ, i), 1))
	}
	return b.String()
}

func TestResponseAssembler(t *testing.T) {
	const final = `{"id":"resp_9","object":"response","status":"completed","output":[{"id":"msg_9","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"hi","annotations":[]}]}],"usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}}`
	created := `{"type":"response.created","response":{"id":"resp_9","status":"in_progress","output":[]}}`
	item := `{"type":"response.output_item.done","output_index":0,"item":{"id":"msg_9","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"hi","annotations":[]}]}}`
	delta := `{"type":"response.output_text.delta","item_id":"msg_9","output_index":0,"content_index":0,"delta":"hi"}`

	cases := []struct {
		name   string
		stream string
		want   string // "" = not stored
		err    bool   // Event returns an error
	}{
		{"completed", upstreamStream(created, delta, item, `{"type":"response.completed","response":`+final+`}`), final, false},
		{"incomplete", upstreamStream(created, `{"type":"response.incomplete","response":{"id":"r","status":"incomplete","output":[]}}`),
			`{"id":"r","status":"incomplete","output":[]}`, false},
		{"failed", upstreamStream(created, `{"type":"response.failed","response":{"id":"r","status":"failed","error":{"code":"server_error","message":"boom"},"output":[]}}`), "", true},
		{"error event", upstreamStream(created, `{"type":"error","code":"server_error","message":"boom","param":null}`), "", true},
		{"event: error", "event: error\ndata: {\"error\":{\"message\":\"x\"}}\n\n", "", true},
		{"cut", upstreamStream(created, delta, item), "", false},
		{"not JSON", "event: response.created\ndata: {nope\n\n", "", true},
		{"completed status failed", upstreamStream(`{"type":"response.completed","response":{"id":"r","status":"failed","output":[]}}`), "", false},
		{"data after the end", upstreamStream(`{"type":"response.completed","response":`+final+`}`, delta), "", false},
		{"output rebuilt", upstreamStream(created, item, `{"type":"response.completed","response":{"id":"resp_9","status":"completed","output":null,"usage":null}}`),
			`{"id":"resp_9","status":"completed","output":[` + item[strings.Index(item, `{"id"`):len(item)-1] + `],"usage":null}`, false},
		{"output absent", upstreamStream(created, item, `{"type":"response.completed","response":{"id":"resp_9","status":"completed"}}`),
			`{"id":"resp_9","status":"completed","output":[` + item[strings.Index(item, `{"id"`):len(item)-1] + `]}`, false},
		// Compatible servers: data lines only, "type" not first, the data split over two lines, a [DONE] at the end, indented values.
		{"data only", "data: {\"response\":{\ndata: \"id\": \"r\",  \"status\": \"completed\",\ndata: \"output\": [ ]},\ndata: \"type\":\"response.completed\"}\n\ndata: [DONE]\n\n",
			`{"id":"r","status":"completed","output":[]}`, false},
	}
	for _, c := range cases {
		body, ok, reason, err := assembleResponse([]byte(c.stream))
		if (err != nil) != c.err {
			t.Errorf("%s: Event error %v, want error %v", c.name, err, c.err)
		}
		if c.want == "" {
			if ok {
				t.Errorf("%s: stored %s", c.name, body)
			} else if reason == "" {
				t.Errorf("%s: not stored without a reason", c.name)
			}
			continue
		}
		if !ok || string(body) != c.want {
			t.Errorf("%s: got %s (ok=%v, %q), want %s", c.name, body, ok, reason, c.want)
		}
	}
}

func TestResponseEventType(t *testing.T) {
	for ev, want := range map[string]string{
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n": ResponseCompleted,
		"data: {\"sequence_number\":3,\"type\":\"response.failed\"}\n\n":                         ResponseFailed,
		"event: response.incomplete\ndata: {\"response\":{}}\n\n":                                ResponseIncomplete,
		": keep-alive\n\n": "",
		"data: [DONE]\n\n": "",
		"event: error\n\n": "",
		"data: {\"ty\\u0070e\":\"response.completed\"}\n\n": ResponseCompleted,
	} {
		if got := ResponseEventType([]byte(ev)); got != want {
			t.Errorf("ResponseEventType(%q) = %q, want %q", ev, got, want)
		}
		if end := want == ResponseCompleted || want == ResponseFailed || want == ResponseIncomplete; IsResponseEnd([]byte(ev)) != end {
			t.Errorf("IsResponseEnd(%q) = %v", ev, !end)
		}
	}
}

// Any body SynthesizeResponse accepts replays as well-framed, numbered events whose deltas rebuild its
// output, and assembles back to its compact form; any other body leaves dst alone. Nothing panics.
func FuzzSynthesizeResponse(f *testing.F) {
	f.Add([]byte(indentedResponse))
	f.Add([]byte(`{"status":"incomplete","output":[{"type":"message","content":[{"type":"refusal","refusal":"no\u00e9"}]}]}`))
	f.Add([]byte(`{"output":[{"type":"reasoning","summary":[{"text":"a\"b"}],"content":null},{"type":"function_call","arguments":""}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		replay, err := SynthesizeResponse([]byte("x"), body)
		if err != nil {
			if string(replay) != "x" {
				t.Fatalf("a refused body changed dst: %q", replay)
			}
			return
		}
		replay = replay[1:]
		typedEvents(t, replay)
		var compact bytes.Buffer
		if json.Compact(&compact, body) != nil {
			t.Fatalf("accepted a body encoding/json refuses: %q", body)
		}
		got, ok, reason, aerr := assembleResponse(replay)
		if !ok || aerr != nil {
			t.Fatalf("the replay does not assemble: %q %v", reason, aerr)
		}
		if !bytes.Equal(got, compact.Bytes()) {
			t.Fatalf("round trip:\n got %s\nwant %s", got, compact.Bytes())
		}
	})
}
