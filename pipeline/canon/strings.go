package canon

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeString appends the decoded content of a JSON string literal (raw
// includes the quotes) to dst. raw is validated first, with the same rules as
// ParseObject (UTF-8, escapes, no lone surrogates); on error dst is returned
// unchanged together with a *SyntaxError whose offset is relative to raw.
func DecodeString(dst, raw []byte) ([]byte, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return dst, syntaxErr(0, "expected a string in double quotes")
	}
	end, escaped, err := scanString(raw, 0)
	if err != nil {
		return dst, err
	}
	if end != len(raw) {
		return dst, syntaxErr(end, "unexpected data after the string")
	}
	content := raw[1 : end-1]
	if !escaped {
		return append(dst, content...), nil
	}
	return appendUnescaped(dst, content), nil
}

// appendUnescaped appends the decoded form of string content s (the bytes
// between the quotes, already validated) to dst.
func appendUnescaped(dst, s []byte) []byte {
	for {
		k := bytes.IndexByte(s, '\\')
		if k < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:k]...)
		r, n := decodeEscape(s[k:])
		dst = utf8.AppendRune(dst, r)
		s = s[k+n:]
	}
}

// decodeEscape decodes the escape sequence at the start of s (s[0] is a
// backslash) and returns the rune and the number of bytes it took. Input is
// expected to be validated; for anything malformed it returns U+FFFD and a
// length that still makes progress, so that callers never panic or loop.
func decodeEscape(s []byte) (rune, int) {
	if len(s) < 2 {
		return utf8.RuneError, len(s)
	}
	switch s[1] {
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		r, ok := hex4(s, 2)
		if !ok {
			return utf8.RuneError, 2
		}
		if utf16.IsSurrogate(r) {
			if len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
				if lo, ok := hex4(s, 8); ok {
					if pair := utf16.DecodeRune(r, lo); pair != utf8.RuneError {
						return pair, 12
					}
				}
			}
			return utf8.RuneError, 6
		}
		return r, 6
	default: // '"', '\\', '/'
		return rune(s[1]), 2
	}
}

// stringEnd returns the offset just past the closing quote of the validated
// string literal whose opening quote is at b[i], or len(b) if there is none.
// A quote is the closing one when it is preceded by an even number of
// backslashes; IndexByte makes this far faster than a byte loop on long
// message contents.
func stringEnd(b []byte, i int) int {
	j := i + 1
	for j < len(b) {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			break
		}
		j += k
		n := 0
		for m := j - 1; m > i && b[m] == '\\'; m-- {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
		j++
	}
	return len(b)
}

// quoteOrBackslash flags the bytes of the little-endian word x that are '"'
// or '\\'. The lowest flagged byte is exact: a zero byte (after the XOR) only
// disturbs the bytes above it, and &^ clears non-ASCII bytes.
func quoteOrBackslash(x uint64) uint64 {
	q := x ^ (lsb * '"')
	s := x ^ (lsb * '\\')
	return ((q-lsb)&^q | (s-lsb)&^s) & msb
}

// indexQuoteOrBackslash returns the index of the first '"' or '\\' in s, or
// len(s). Escapes in chat text are often only a few bytes apart (newlines,
// tabs in code), where a word-at-a-time scan wins over bytes.IndexByte's
// setup cost; long plain runs are left to IndexByte's vector loop.
func indexQuoteOrBackslash(s []byte) int {
	i := 0
	for ; i+8 <= len(s) && i < 32; i += 8 {
		if m := quoteOrBackslash(binary.LittleEndian.Uint64(s[i : i+8])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	rest := s[i:]
	if len(rest) < 8 {
		for j, c := range rest {
			if c == '"' || c == '\\' {
				return i + j
			}
		}
		return len(s)
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		end = len(rest)
	}
	if k := bytes.IndexByte(rest[:end], '\\'); k >= 0 {
		end = k
	}
	return i + end
}

// appendCanonicalString appends the JCS form of the validated string literal
// whose opening quote is at b[i], and returns the offset after its closing
// quote.
//
// Most of a validated literal already is canonical: it holds no control
// characters and no bare quotes or backslashes (the only bytes JCS escapes),
// and the escapes \", \\, \b, \f, \n, \r and \t are the ones JCS writes.
// So the literal is copied in runs, and only \/ and \uXXXX escapes are
// rewritten.
func appendCanonicalString(dst, b []byte, i int) ([]byte, int) {
	run := i // start of the bytes not yet copied
	k := i + 1
	for {
		k += indexQuoteOrBackslash(b[k:])
		if k >= len(b) {
			dst = append(dst, b[run:]...)
			return append(dst, '"'), len(b) // unterminated: only with unvalidated input
		}
		if b[k] == '"' {
			return append(dst, b[run:k+1]...), k + 1
		}
		if k+1 < len(b) && b[k+1] != 'u' && b[k+1] != '/' {
			k += 2 // already canonical
			continue
		}
		dst = append(dst, b[run:k]...)
		r, n := decodeEscape(b[k:])
		dst = appendEscapedRune(dst, r)
		k += n
		run = k
	}
}

// appendQuoted appends decoded string content s as a JCS string literal.
func appendQuoted(dst, s []byte) []byte {
	dst = append(dst, '"')
	last := 0
	for i, c := range s {
		if c < 0x20 || c == '"' || c == '\\' {
			dst = append(dst, s[last:i]...)
			dst = appendEscapedRune(dst, rune(c))
			last = i + 1
		}
	}
	dst = append(dst, s[last:]...)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// appendEscapedRune writes r the way JCS (ECMAScript JSON.stringify) does:
// the two-character escapes where they exist, \u00xx with lower-case hex for
// other control characters, and every other character as literal UTF-8.
func appendEscapedRune(dst []byte, r rune) []byte {
	switch r {
	case '"':
		return append(dst, '\\', '"')
	case '\\':
		return append(dst, '\\', '\\')
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	if r < 0x20 {
		return append(dst, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xF])
	}
	return utf8.AppendRune(dst, r)
}
