//go:build !race

package sse

import "testing"

// A streamed hit replays into a reused buffer without allocating, like the memory-hit path it sits on.
func TestSynthesizeAllocs(t *testing.T) {
	body := benchAnswer(t)
	dst := make([]byte, 0, 16<<10)
	for _, usage := range []bool{false, true} {
		if n := testing.AllocsPerRun(100, func() {
			var err error
			if dst, err = Synthesize(dst[:0], Chat, body, usage); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Synthesize (include_usage %v) allocates %v times per call", usage, n)
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
