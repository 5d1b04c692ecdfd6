package trim

import (
	"unicode"
	"unicode/utf8"
)

// The pre-tokenizers cut text into the pieces that tiktoken's regular expression of each encoding
// matches (the patterns are quoted from tiktoken-go v0.1.8, encoding.go); BPE then runs inside each
// piece. They are written by hand because tiktoken-go's backtracking regexp2 engine runs at
// 1.5-3 MB/s, which made counting a 50k-token chat take ~150 ms. Each function tries the pattern's
// alternatives in order at text[i] and returns the end of the first one that matches, as a
// backtracking engine does. FuzzCount checks them against the same patterns run by Go's regexp
// (reference_test.go).

// Character classes used by the patterns. Categories come from Go's unicode tables, which are
// the tables regexp2 uses, and \s is unicode.IsSpace, as in regexp2.
const (
	cL   uint8 = 1 << iota // \p{L}
	cN                     // \p{N}
	cS                     // \s
	cNL                    // [\r\n]
	cUp                    // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
	cLow                   // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
)

// bmpClass caches unicodeClass for the Basic Multilingual Plane (64 KiB, ~2 ms at init): CJK text
// spent a third of its counting time in the unicode package's table searches.
var bmpClass = func() *[1 << 16]uint8 {
	var c [1 << 16]uint8
	for r := range rune(len(c)) {
		c[r] = unicodeClass(r)
	}
	return &c
}()

func unicodeClass(r rune) uint8 {
	switch {
	case unicode.IsLetter(r):
		switch {
		case unicode.IsUpper(r), unicode.IsTitle(r):
			return cL | cUp
		case unicode.IsLower(r):
			return cL | cLow
		}
		return cL | cUp | cLow // Lm or Lo: in both o200k_base letter classes
	case unicode.IsMark(r):
		return cUp | cLow
	case unicode.IsNumber(r):
		return cN
	case r == '\r' || r == '\n':
		return cS | cNL
	case unicode.IsSpace(r):
		return cS
	}
	return 0
}

// classAt returns the class and byte length of the rune at text[i]; length 0 at the end.
func classAt(text string, i int) (uint8, int) {
	if i >= len(text) {
		return 0, 0
	}
	if c := text[i]; c < utf8.RuneSelf {
		return bmpClass[c], 1
	}
	r, n := utf8.DecodeRuneInString(text[i:])
	if r < 1<<16 {
		return bmpClass[r], n
	}
	return unicodeClass(r), n
}

// run returns the end of the longest run of runes at text[i] whose class shares a bit with mask.
func run(text string, i int, mask uint8) int {
	for {
		c, n := classAt(text, i)
		if c&mask == 0 {
			return i
		}
		i += n
	}
}

// nextCL100K splits like cl100k_base's pattern:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func nextCL100K(text string, i int) int {
	if k := contraction(text, i); k > 0 {
		return i + k
	}
	c0, n0 := classAt(text, i)
	if c0&cL != 0 {
		return run(text, i, cL)
	}
	if c0&(cN|cNL) == 0 { // text[i] can be the optional [^\r\n\p{L}\p{N}]
		if c1, _ := classAt(text, i+n0); c1&cL != 0 {
			return run(text, i+n0, cL)
		}
	}
	if c0&cN != 0 {
		return numbers(text, i)
	}
	if end := punct(text, i, false); end > i {
		return end
	}
	return spaces(text, i)
}

// nextO200K splits like o200k_base's pattern:
//
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
func nextO200K(text string, i int) int {
	c0, n0 := classAt(text, i)
	// The optional leading character is tried taken first, then not, within each alternative.
	lead := c0&(cL|cN|cNL) == 0
	if lead {
		if end := lowerWord(text, i+n0); end >= 0 {
			return end
		}
	}
	if end := lowerWord(text, i); end >= 0 {
		return end
	}
	if lead {
		if end := upperWord(text, i+n0); end >= 0 {
			return end
		}
	}
	if end := upperWord(text, i); end >= 0 {
		return end
	}
	if c0&cN != 0 {
		return numbers(text, i)
	}
	if end := punct(text, i, true); end > i {
		return end
	}
	return spaces(text, i)
}

// lowerWord matches Up* Low+ contraction? at text[j] and returns its end, or -1. Up* is greedy
// and gives back runes until Low+ can start: so Low+ starts either right after the Up run (if an
// Ll rune follows it) or at the run's last rune that is also Low (Lm, Lo, M), where it is one rune
// long, since the runes after it in the run are Lu or Lt.
func lowerWord(text string, j int) int {
	lastLowEnd := -1
	for k := j; ; {
		c, n := classAt(text, k)
		if c&cUp == 0 {
			if c&cLow != 0 {
				end := run(text, k, cLow)
				return end + contraction(text, end)
			}
			break
		}
		k += n
		if c&cLow != 0 {
			lastLowEnd = k
		}
	}
	if lastLowEnd < 0 {
		return -1
	}
	return lastLowEnd + contraction(text, lastLowEnd)
}

// upperWord matches Up+ Low* contraction? at text[j] and returns its end, or -1.
func upperWord(text string, j int) int {
	end := run(text, j, cUp)
	if end == j {
		return -1
	}
	end = run(text, end, cLow)
	return end + contraction(text, end)
}

// contraction returns the length of (?i:'s|'t|'re|'ve|'m|'ll|'d) at text[i], or 0.
func contraction(text string, i int) int {
	if i+1 >= len(text) || text[i] != '\'' {
		return 0
	}
	switch text[i+1] | 0x20 { // ASCII lower case; no other byte maps onto these letters
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v':
		if i+2 < len(text) && text[i+2]|0x20 == 'e' {
			return 3
		}
	case 'l':
		if i+2 < len(text) && text[i+2]|0x20 == 'l' {
			return 3
		}
	}
	return 0
}

// numbers matches \p{N}{1,3} at text[i], which is a number.
func numbers(text string, i int) int {
	for range 3 {
		c, n := classAt(text, i)
		if c&cN == 0 {
			break
		}
		i += n
	}
	return i
}

// punct matches ` ?[^\s\p{L}\p{N}]+[\r\n]*` (with slash, `[\r\n/]*`) at text[i] and returns its end,
// or i when it does not match.
func punct(text string, i int, slash bool) int {
	j := i
	if text[j] == ' ' {
		j++
	}
	k := j
	for {
		c, n := classAt(text, k)
		if n == 0 || c&(cS|cL|cN) != 0 {
			break
		}
		k += n
	}
	if k == j {
		return i // without the space, [^\s...] cannot match a space either
	}
	for k < len(text) && (text[k] == '\r' || text[k] == '\n' || slash && text[k] == '/') {
		k++
	}
	return k
}

// spaces matches \s*[\r\n]+|\s+(?!\S)|\s+ at text[i], which is white space.
func spaces(text string, i int) int {
	lastNL, last, j := -1, i, i // last: start of the run's last rune
	for {
		c, n := classAt(text, j)
		if c&cS == 0 {
			break
		}
		if c&cNL != 0 {
			lastNL = j
		}
		last = j
		j += n
	}
	switch {
	case lastNL >= 0:
		return lastNL + 1 // \s* gives back runes until [\r\n]+ matches the run's last newline
	case j == len(text) || last == i:
		return j // \s+(?!\S) at the end of text, or \s+ of one rune
	}
	return last // \s+(?!\S): the last space goes with the next piece
}
