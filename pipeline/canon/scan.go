package canon

import (
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// Scanners for single tokens of untrusted input. Each takes the offset of the
// token's first byte and returns the offset just past it, or a *SyntaxError.

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipWS returns the offset of the first non-whitespace byte at or after i.
// Only the four RFC 8259 whitespace bytes count; anything else (a BOM, NBSP)
// is left for the caller to refuse.
func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specialMask flags the bytes of the little-endian word x that need a closer
// look inside a string: '"', '\\', control characters and non-ASCII bytes.
// Checking eight bytes per step keeps validation of long message contents
// cheap without assembly.
//
// v-lsb sets the high bit of a byte that was zero (or was >= 0x81, or
// received a borrow, which only comes from a zero byte below it); likewise
// x-0x20*lsb for a byte below 0x20. The stray cases all sit above a special
// byte or on a non-ASCII one, so the lowest flagged byte is always the first
// special one.
func specialMask(x uint64) uint64 {
	q := x ^ (lsb * '"')
	s := x ^ (lsb * '\\')
	return ((q - lsb) | (s - lsb) | (x - lsb*0x20) | x) & msb
}

// nextSpecial returns the offset of the first byte at or after i that is
// '"', '\\', a control character or non-ASCII, or len(b) if there is none.
func nextSpecial(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if m := specialMask(binary.LittleEndian.Uint64(b[i : i+8])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return i
		}
	}
	return i
}

// scanString validates the string literal whose opening quote is at b[i]. It
// returns the offset after the closing quote and whether the literal contains
// escapes (callers use it to skip decoding when the raw bytes already are the
// decoded content).
func scanString(b []byte, i int) (end int, escaped bool, err *SyntaxError) {
	start := i
	i++
	for {
		i = nextSpecial(b, i)
		if i >= len(b) {
			return 0, false, syntaxErr(start, "unterminated string")
		}
		c := b[i]
		switch {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i, err = scanEscape(b, i); err != nil {
				return 0, false, err
			}
		case c < 0x20:
			return 0, false, syntaxErr(i, "control character %U inside a string must be escaped", rune(c))
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return 0, false, syntaxErr(i, "invalid UTF-8 byte 0x%02X inside a string", c)
			}
			i += size
		}
	}
}

// scanEscape validates the escape sequence whose backslash is at b[i] and
// returns the offset after it. A \u escape for a UTF-16 high surrogate must be
// followed at once by one for a low surrogate: a lone surrogate has no UTF-8
// form, and parsers disagree on what to make of it.
func scanEscape(b []byte, i int) (int, *SyntaxError) {
	if i+1 >= len(b) {
		return 0, syntaxErr(i, "unterminated string")
	}
	switch b[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 2, nil
	case 'u':
		r, ok := hex4(b, i+2)
		if !ok {
			return 0, syntaxErr(i, "invalid \\u escape inside a string: want 4 hex digits")
		}
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if i+12 <= len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
				if lo, ok := hex4(b, i+8); ok && lo >= 0xDC00 && lo < 0xE000 {
					return i + 12, nil
				}
			}
			return 0, syntaxErr(i, "lone UTF-16 surrogate \\u%04x inside a string: a high surrogate must be followed by a low surrogate escape", r)
		case r >= 0xDC00 && r < 0xE000:
			return 0, syntaxErr(i, "lone UTF-16 surrogate \\u%04x inside a string: a low surrogate must follow a high surrogate escape", r)
		}
		return i + 6, nil
	default:
		if b[i+1] < 0x20 || b[i+1] >= 0x7f {
			return 0, syntaxErr(i, "invalid escape sequence inside a string")
		}
		return 0, syntaxErr(i, "invalid escape sequence \\%c inside a string", b[i+1])
	}
}

// hex4 decodes the four hex digits at b[i:i+4].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// scanNumber validates the number literal starting at b[i]. Numbers that need
// a float conversion (fraction or exponent) must fit a float64: the canonical
// form of 1e400 would otherwise be undefined.
func scanNumber(b []byte, i int) (int, *SyntaxError) {
	start := i
	if b[i] == '-' {
		i++
	}
	// intDigits counts the integer part's digits, so that 10^(intDigits+exp)
	// bounds the value from above.
	intDigits := 0
	switch {
	case i >= len(b) || !isDigit(b[i]):
		return 0, syntaxErr(i, "invalid number: expected a digit")
	case b[i] == '0':
		i++
		if i < len(b) && isDigit(b[i]) {
			return 0, syntaxErr(start, "invalid number: leading zeros are not allowed")
		}
	default:
		for i < len(b) && isDigit(b[i]) {
			i++
			intDigits++
		}
	}
	float := false
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return 0, syntaxErr(i, "invalid number: expected a digit after the decimal point")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		float = true
	}
	exp := 0
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		neg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			neg = b[i] == '-'
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return 0, syntaxErr(i, "invalid number: expected a digit in the exponent")
		}
		for i < len(b) && isDigit(b[i]) {
			if exp < 1e6 { // saturate; only the order of magnitude matters
				exp = exp*10 + int(b[i]-'0')
			}
			i++
		}
		if neg {
			exp = -exp
		}
		float = true
	}
	// Below 10^308 a float64 cannot overflow, so the (comparatively slow)
	// exact conversion is only needed near or beyond the limit.
	if float && intDigits+exp > 308 {
		// The literal is well-formed, so the only possible error is ErrRange;
		// underflow quietly rounds to zero and is fine.
		if f, _ := strconv.ParseFloat(bytesToString(b[start:i]), 64); math.IsInf(f, 0) {
			return 0, syntaxErr(start, "number %s is out of range for a 64-bit float", clip(b[start:i]))
		}
	}
	return i, nil
}

// scanLiteral checks that b[i:] starts with lit (true, false or null).
func scanLiteral(b []byte, i int, lit string) (int, *SyntaxError) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, syntaxErr(i, "invalid literal: expected %s", lit)
	}
	return i + len(lit), nil
}
