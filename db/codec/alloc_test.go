//go:build !race

package codec

import (
	"bytes"
	"testing"
)

// The race detector makes sync.Pool drop what it holds, so allocations are counted without it (.ci/run has
// a pass without -race).
func TestEncodeDecodeAllocateNothing(t *testing.T) {
	c := New(Options{})
	c.Add(trained(t, 1, 1, nil).Dict, true)
	body := answers(5, 1, 1300)[0]
	frame := make([]byte, 0, 2048)
	out := make([]byte, 0, 2048)
	var enc uint32
	enc, frame = c.Encode(frame, body)
	out, _ = c.Decode(enc, frame, out)
	allocs := testing.AllocsPerRun(100, func() {
		enc, frame = c.Encode(frame, body)
		out, _ = c.Decode(enc, frame, out)
	})
	if allocs != 0 || !bytes.Equal(out, body) {
		t.Fatalf("%.1f allocations per encode and decode", allocs)
	}
}
