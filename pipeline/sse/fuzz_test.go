package sse

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// Feeding any bytes in any pieces never panics and gives the events of feeding them whole (up to the '\n' of
// a "\r\n" split after its '\r', see Feed); fed whole, the events and the pending rest add up to the input.
func FuzzSplitter(f *testing.F) {
	f.Add([]byte(multiEventStream), []byte{3, 0, 17, 1, 1, 250})
	f.Add([]byte(openAIChatStream), []byte{100, 7})
	f.Add([]byte("data: a\r\n\r\ndata: b\r\r\n\n\r\n"), []byte{10, 1, 1, 1})
	f.Add([]byte("\r\n\r\n\n\r\r"), []byte{1, 1, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var whole Splitter
		var want []string
		whole.Feed(data, func(ev []byte) { want = append(want, string(ev)) })
		if got := strings.Join(want, "") + string(whole.buf); got != string(data) {
			t.Fatalf("events and rest %q do not add up to the input %q", got, data)
		}
		for _, ev := range want {
			Data([]byte(ev))
		}

		var s Splitter
		var got []string
		rest := data
		for _, c := range cuts {
			n := min(int(c), len(rest))
			s.Feed(rest[:n], func(ev []byte) { got = append(got, string(ev)) })
			rest = rest[n:]
		}
		s.Feed(rest, func(ev []byte) { got = append(got, string(ev)) })
		if err := sameEvents(got, want); err != nil {
			t.Fatalf("cuts %v: %v", cuts, err)
		}
		if s.Pending() != whole.Pending() || s.Buffered() != whole.Buffered() {
			t.Fatalf("cuts %v: pending %d bytes, fed whole %d", cuts, s.Buffered(), whole.Buffered())
		}
	})
}

// For any stream the Assembler accepts, its answer is JSON, and replaying it assembles to the same bytes.
func FuzzRoundTrip(f *testing.F) {
	for _, tc := range roundTripStreams() {
		f.Add([]byte(tc.stream), tc.kind == Completion)
	}
	f.Add([]byte(sseStream(chatChunk(`{"index":0,"delta":{"role":"assistant","content":"a","x":"y","tool_calls":[{"id":"1"}]},"logprobs":{"content":[ ]},"finish_reason":{}}`))), false)
	f.Fuzz(func(t *testing.T, stream []byte, completion bool) {
		kind := Chat
		if completion {
			kind = Completion
		}
		body, ok, _, _ := assemble(kind, stream)
		if !ok {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("assembled body is not JSON: %s", body)
		}
		replay, err := Synthesize(nil, kind, body, true)
		if err != nil {
			t.Fatalf("cannot replay %s: %v", body, err)
		}
		again, ok, reason, err := assemble(kind, replay)
		if !ok || err != nil {
			t.Fatalf("replay of %s does not assemble: %s %v\n%s", body, reason, err, replay)
		}
		if !bytes.Equal(again, body) {
			t.Fatalf("round trip\n got %s\nwant %s", again, body)
		}
	})
}

// Synthesize never panics; what it writes is a well-formed stream of JSON chunks.
func FuzzSynthesize(f *testing.F) {
	for _, tc := range roundTripStreams() {
		body, _, _, _ := assemble(tc.kind, []byte(tc.stream))
		f.Add(body, tc.kind == Completion)
	}
	f.Add([]byte(`{"choices":[{"message":{"content":"a\u0000\ud800","audio":{"x":1},"tool_calls":[{"function":{}}]}}]}`), false)
	f.Fuzz(func(t *testing.T, body []byte, completion bool) {
		kind := Chat
		if completion {
			kind = Completion
		}
		replay, err := Synthesize(nil, kind, body, true)
		if err != nil {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("replayed a body that is not JSON: %q", body)
		}
		a := NewAssembler(kind)
		var s Splitter
		s.Feed(replay, func(ev []byte) {
			if !bytes.HasPrefix(ev, []byte("data: ")) || !bytes.HasSuffix(ev, []byte("\n\n")) {
				t.Fatalf("bad event %q", ev)
			}
			if err := a.Event(ev); err != nil {
				t.Fatalf("event %q: %v", ev, err)
			}
		})
		if s.Pending() || !bytes.HasSuffix(replay, []byte("data: [DONE]\n\n")) {
			t.Fatalf("replay does not end with [DONE]: %q", replay)
		}
		checkReplayLines(t, replay, body, true)
		if replay, err = Synthesize(nil, kind, body, false); err != nil {
			t.Fatalf("replays with include_usage but not without: %v", err)
		}
		checkReplayLines(t, replay, body, false)
	})
}

// The layout of a stored answer does not matter: indented any way (spaces, tabs, CRLF, a prefix on every
// line), an answer replays to the bytes of its compact form, so no data line ever holds a line break.
func FuzzSynthesizeIndented(f *testing.F) {
	for _, tc := range roundTripStreams() {
		body, _, _, _ := assemble(tc.kind, []byte(tc.stream))
		f.Add(body, tc.kind == Completion, uint8(0))
	}
	f.Add([]byte(indentedChat), false, uint8(1))
	f.Add([]byte(indentedCompletion), true, uint8(2))
	f.Add([]byte(`{"choices":[{"message":{"content":"a","audio":{"x":[1,{"y":null}]},"tool_calls":[{"function":{"arguments":"{}"}}]},"logprobs":{"content":[]}}],"usage":{"a":{"b":[]}}}`), false, uint8(3))
	styles := []struct{ prefix, indent string }{{"", "  "}, {"", "\t"}, {" ", "    "}, {"\t", " \t"}}
	f.Fuzz(func(t *testing.T, body []byte, completion bool, style uint8) {
		kind := Chat
		if completion {
			kind = Completion
		}
		var compacted, indented bytes.Buffer
		if json.Compact(&compacted, body) != nil {
			return
		}
		st := styles[int(style)%len(styles)]
		if json.Indent(&indented, body, st.prefix, st.indent) != nil {
			return
		}
		// Raw line feeds can only be layout (a JSON string cannot hold one), so they can all become CRLF.
		loose := indented.Bytes()
		if style&4 != 0 {
			loose = bytes.ReplaceAll(loose, []byte("\n"), []byte("\r\n"))
		}
		for _, usage := range []bool{true, false} {
			want, wantErr := Synthesize(nil, kind, compacted.Bytes(), usage)
			got, err := Synthesize(nil, kind, loose, usage)
			if (err == nil) != (wantErr == nil) {
				t.Fatalf("indented: %v, compact: %v", err, wantErr)
			}
			if err != nil {
				continue
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("replay of\n%s\n%s\ndiffers from the replay of its compact form\n%s", loose, got, want)
			}
			checkReplayLines(t, got, loose, usage)
		}
	})
}
