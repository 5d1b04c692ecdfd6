//go:build !race

package canon

import "testing"

// TestSteadyStateAllocs proves the hot path allocates nothing once a Parser
// and the output buffer have warmed up. (The race detector allocates on its
// own, hence the build tag.)
func TestSteadyStateAllocs(t *testing.T) {
	skip := func(k []byte) bool { return string(k) == "stream" }
	for name, body := range map[string][]byte{"500B": []byte(chatBody500), "16KiB": chatBody(16 << 10)} {
		var p Parser
		dst := make([]byte, 0, 2*len(body))
		run := func() {
			members, err := p.ParseObject(body)
			if err != nil {
				t.Fatal(err)
			}
			dst = p.AppendCanonicalObject(dst[:0], body, members, skip)
			for _, m := range members {
				dst = p.AppendCanonical(dst, body[m.ValueStart:m.ValueEnd])
			}
		}
		run() // warm up the scratch buffers
		if n := testing.AllocsPerRun(100, run); n != 0 {
			t.Errorf("%s: %v allocations per parse+canonicalize, want 0", name, n)
		}
	}
}
