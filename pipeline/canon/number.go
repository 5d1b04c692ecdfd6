package canon

import (
	"bytes"
	"strconv"
	"unsafe"
)

// bytesToString views b as a string without copying. It is only passed to
// strconv.ParseFloat, which does not keep its argument (errors carry a
// clone), so the view never outlives b and b is never written meanwhile.
func bytesToString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// appendCanonicalNumber appends the canonical form of the validated number
// literal lit.
//
// Project rule: a plain integer literal keeps its exact digits (only -0 is
// folded to 0), so that IDs and seeds beyond 2^53 do not collide. Any literal
// with a fraction or exponent is read as a float64 and printed as ECMAScript
// Number.prototype.toString does, as RFC 8785 requires: 1.0, 1e0 and 10E-1
// all become 1.
func appendCanonicalNumber(dst, lit []byte) []byte {
	if isPlainInt(lit) {
		if len(lit) == 2 && lit[0] == '-' && lit[1] == '0' {
			return append(dst, '0')
		}
		return append(dst, lit...)
	}
	if isShortDecimal(lit) {
		return append(dst, lit...)
	}
	f, err := strconv.ParseFloat(bytesToString(lit), 64)
	if err != nil {
		// Unreachable for validated input; keep the bytes rather than invent a value.
		return append(dst, lit...)
	}
	return appendECMAScriptNumber(dst, f)
}

// isPlainInt reports whether the number literal has neither fraction nor
// exponent.
func isPlainInt(lit []byte) bool {
	for _, c := range lit {
		if c == '.' || c == 'e' || c == 'E' {
			return false
		}
	}
	return true
}

// isShortDecimal reports whether the decimal literal lit (no exponent) is
// already its own ECMAScript form, which saves a float round trip for the
// typical temperature or top_p value. That holds when it has at most 15
// significant digits (two such decimals never share a float64, so the
// shortest round-trip digits are the literal's own), no trailing zero in the
// fraction, and a magnitude of at least 1e-6 (below that ECMAScript switches
// to exponent notation; at most 15 integer digits keeps it below 1e21).
func isShortDecimal(lit []byte) bool {
	if lit[0] == '-' {
		lit = lit[1:]
	}
	dot := bytes.IndexByte(lit, '.')
	if dot < 0 {
		return false
	}
	intPart, frac := lit[:dot], lit[dot+1:]
	if len(frac) == 0 || frac[len(frac)-1] == '0' {
		return false
	}
	for _, c := range frac {
		if !isDigit(c) {
			return false // an exponent follows
		}
	}
	sig := len(intPart) + len(frac)
	if len(intPart) == 1 && intPart[0] == '0' {
		zeros := 0
		for zeros < len(frac) && frac[zeros] == '0' {
			zeros++
		}
		if zeros > 5 {
			return false
		}
		sig = len(frac) - zeros
	}
	return sig <= 15
}

// appendECMAScriptNumber formats a finite f like ECMAScript's
// Number.prototype.toString (ECMA-262 Number::toString, radix 10): the
// shortest digits that round-trip, in plain decimal notation when the decimal
// exponent n (value = 0.d1d2...dk × 10^n) satisfies -6 < n <= 21, and in
// exponent notation (1e+21, 1.5e-7) otherwise. -0 prints as 0.
func appendECMAScriptNumber(dst []byte, f float64) []byte {
	if f == 0 {
		return append(dst, '0')
	}
	// strconv's shortest 'e' output has exactly the digits ECMAScript
	// wants, as d[.ddd]e±XX; only the layout needs changing.
	var buf [32]byte
	s := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	if s[0] == '-' {
		dst = append(dst, '-')
		s = s[1:]
	}
	e := bytes.IndexByte(s, 'e')
	var digBuf [24]byte
	digits := append(digBuf[:0], s[0])
	if e > 2 {
		digits = append(digits, s[2:e]...)
	}
	exp := 0
	for _, c := range s[e+2:] {
		exp = exp*10 + int(c-'0')
	}
	if s[e+1] == '-' {
		exp = -exp
	}
	k, n := len(digits), exp+1
	switch {
	case k <= n && n <= 21: // integer: digits then zeros
		dst = append(dst, digits...)
		for range n - k {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21: // decimal point inside the digits
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:]...)
	case -6 < n && n <= 0: // small: 0.000ddd
		dst = append(dst, '0', '.')
		for range -n {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	default: // exponent notation
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst
}
