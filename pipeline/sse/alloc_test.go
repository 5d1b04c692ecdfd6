//go:build !race

package sse

import "testing"

// A streamed hit replays into a reused buffer without allocating, like the memory-hit path it sits on.
// Compacting an indented answer on the way costs nothing either.
func TestSynthesizeAllocs(t *testing.T) {
	dst := make([]byte, 0, 16<<10)
	for _, tc := range []struct {
		name string
		kind Kind
		body []byte
	}{
		{"compact", Chat, benchAnswer(t)},
		{"indented", Chat, []byte(indentedChat)},
		{"indented completion", Completion, []byte(indentedCompletion)},
	} {
		for _, usage := range []bool{false, true} {
			if n := testing.AllocsPerRun(100, func() {
				var err error
				if dst, err = Synthesize(dst[:0], tc.kind, tc.body, usage); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("Synthesize (%s, include_usage %v) allocates %v times per call", tc.name, usage, n)
			}
		}
	}
}

// Events that arrive whole are split without copying; a reused Splitter allocates nothing.
func TestSplitterAllocs(t *testing.T) {
	stream := []byte(openAIChatStream)
	var s Splitter
	n := 0
	emit := func([]byte) { n++ }
	if a := testing.AllocsPerRun(100, func() {
		s.Reset()
		s.Feed(stream[:100], emit)
		s.Feed(stream[100:], emit)
	}); a != 0 {
		t.Errorf("Splitter allocates %v times per stream", a)
	}
	if a := testing.AllocsPerRun(100, func() { Data([]byte("data: x\n\n")) }); a != 0 {
		t.Errorf("Data allocates %v times", a)
	}
}

// The lead's stream path calls IsUsageChunk on every event of every streamed miss.
func TestIsUsageChunkAllocs(t *testing.T) {
	for _, ev := range []string{
		`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}` + "\n\n",
		`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}` + "\n\n",
		"data: {\ndata: \"choices\": [],\ndata: \"usage\": {\"total_tokens\": 1}\ndata: }\n\n",
		"data: [DONE]\n\n",
	} {
		b := []byte(ev)
		if n := testing.AllocsPerRun(100, func() { IsUsageChunk(b) }); n != 0 {
			t.Errorf("IsUsageChunk(%q) allocates %v times", ev, n)
		}
	}
}
