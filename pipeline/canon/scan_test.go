package canon

import (
	"math/rand/v2"
	"testing"
)

// firstSpecialRef is the byte-by-byte definition nextSpecial must agree with.
func firstSpecialRef(b []byte) int {
	for i, c := range b {
		if c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
			return i
		}
	}
	return len(b)
}

func TestNextSpecial(t *testing.T) {
	check := func(w []byte) {
		t.Helper()
		if got, want := nextSpecial(w, 0), firstSpecialRef(w); got != want {
			t.Fatalf("nextSpecial(% x) = %d, want %d", w, got, want)
		}
	}
	// Every byte value at every position of a word, in a plain ASCII
	// background and next to every value of its upper neighbour (borrows
	// travel upwards).
	w := []byte("abcdefgh")
	for pos := range 8 {
		for c := range 256 {
			copy(w, "abcdefgh")
			w[pos] = byte(c)
			check(w)
			if pos < 7 {
				for d := range 256 {
					w[pos+1] = byte(d)
					check(w)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	long := make([]byte, 37)
	for range 200_000 {
		for i := range long {
			c := byte(r.IntN(0x60) + 0x20)
			if r.IntN(40) == 0 {
				c = byte(r.IntN(256))
			}
			long[i] = c
		}
		check(long)
		check(long[r.IntN(len(long)):])
	}
	// Tails shorter than a word.
	for n := range 8 {
		for pos := 0; pos <= n; pos++ {
			b := []byte("xxxxxxxx")[:n]
			if pos < n {
				b[pos] = 0x1f
			}
			check(b)
		}
	}
}
