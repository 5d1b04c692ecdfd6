package pipeline

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

func sketchKey(i int) Key { return Key(sha256.Sum256(fmt.Appendf(nil, "key %d", i))) }

// TestFrequencySketchCounts: estimates never fall below the true count between halvings, stay close to it
// with a sketch sized for the keys, and halve after resetAfter counts.
func TestFrequencySketchCounts(t *testing.T) {
	const items = 1000
	s := newFrequencySketch(items)
	keys := make([]Key, items)
	for i := range keys {
		keys[i] = sketchKey(i)
	}
	// Key i asked for i%5 times: 2,000 counts, under resetAfter (10,000).
	for i, k := range keys {
		for range i % 5 {
			s.add(&k)
		}
	}
	over := 0
	for i, k := range keys {
		got := s.estimate(&k)
		if got < i%5 {
			t.Fatalf("key %d: estimate %d below its %d counts", i, got, i%5)
		}
		if got > i%5 {
			over++
		}
	}
	if over > items/20 {
		t.Errorf("%d of %d estimates above the truth", over, items)
	}
	k := sketchKey(-1)
	for range 8 {
		s.add(&k)
	}
	for i := s.resetAfter - s.counted; i > 0; i-- { // up to the halving
		other := sketchKey(items + i)
		s.add(&other)
	}
	if got := s.estimate(&k); got < 3 || got > 5 {
		t.Errorf("after a halving, 8 counts estimate %d, want about 4", got)
	}
}
