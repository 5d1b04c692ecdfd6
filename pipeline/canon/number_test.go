package canon

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// TestRFC8785Numbers feeds the finite values of RFC 8785 Appendix B through
// the canonicalizer. Each value is written in exponent notation so that it
// takes the float path (plain integers keep their digits by project rule).
func TestRFC8785Numbers(t *testing.T) {
	tests := []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"},
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"},
		{0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
		{0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"},
		{0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"},
		{0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"},
		{0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
	}
	var p Parser
	for _, tt := range tests {
		f := math.Float64frombits(tt.bits)
		lit := strconv.FormatFloat(f, 'e', -1, 64)
		body := `{"n":` + lit + `}`
		members, err := p.ParseObject([]byte(body))
		if err != nil {
			t.Errorf("%016x (%s): %v", tt.bits, lit, err)
			continue
		}
		got := string(p.AppendCanonicalObject(nil, []byte(body), members, nil))
		if want := `{"n":` + tt.want + `}`; got != want {
			t.Errorf("%016x (%s): got %s, want %s", tt.bits, lit, got, want)
		}
	}
}

func TestECMAScriptNumberFormat(t *testing.T) {
	tests := []struct {
		f    float64
		want string
	}{
		{1, "1"}, {-1, "-1"}, {100, "100"}, {1.5, "1.5"}, {0.1, "0.1"}, {4.5, "4.5"},
		{0.000001, "0.000001"}, {1e-7, "1e-7"}, {1.5e-7, "1.5e-7"}, {1.2345e-6, "0.0000012345"},
		{1e21, "1e+21"}, {1e20, "100000000000000000000"}, {123456789012345680000, "123456789012345680000"},
		{1.5e21, "1.5e+21"}, {-1e300, "-1e+300"}, {math.MaxFloat64, "1.7976931348623157e+308"},
		{math.SmallestNonzeroFloat64, "5e-324"}, {12.34, "12.34"}, {1234.5678e10, "12345678000000"},
		{math.Copysign(0, -1), "0"},
	}
	for _, tt := range tests {
		if got := string(appendECMAScriptNumber(nil, tt.f)); got != tt.want {
			t.Errorf("%v: got %s, want %s", tt.f, got, tt.want)
		}
	}
}

// TestECMAScriptNumberRoundTrip checks on random doubles that the output
// parses back to the same value, uses plain notation exactly in the range
// ECMAScript does, and is no longer than needed.
func TestECMAScriptNumberRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		f := math.Float64frombits(r.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		s := string(appendECMAScriptNumber(nil, f))
		back, err := strconv.ParseFloat(s, 64)
		if err != nil || back != f {
			t.Fatalf("%v (%016x): %s parses back as %v, %v", f, math.Float64bits(f), s, back, err)
		}
		a := math.Abs(f)
		if exp := strings.ContainsRune(s, 'e'); exp != (a != 0 && (a < 1e-6 || a >= 1e21)) {
			t.Fatalf("%v: wrong notation %s", f, s)
		}
		digits := strings.TrimLeft(strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, strings.SplitN(s, "e", 2)[0]), "0")
		shortest := strings.SplitN(strings.TrimPrefix(strconv.FormatFloat(a, 'e', -1, 64), ""), "e", 2)[0]
		if want := strings.Replace(shortest, ".", "", 1); strings.TrimRight(digits, "0") != strings.TrimRight(want, "0") {
			t.Fatalf("%v: digits %s, shortest %s", f, s, shortest)
		}
	}
}

// TestShortDecimalFastPath checks that copying short decimals verbatim gives
// exactly what the float round trip would.
func TestShortDecimalFastPath(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	check := func(lit string) {
		t.Helper()
		f, err := strconv.ParseFloat(lit, 64)
		if err != nil {
			t.Fatal(err)
		}
		want := string(appendECMAScriptNumber(nil, f))
		if got := string(appendCanonicalNumber(nil, []byte(lit))); got != want {
			t.Fatalf("%s: got %s, want %s (fast path %v)", lit, got, want, isShortDecimal([]byte(lit)))
		}
	}
	for _, lit := range []string{"0.7", "-0.5", "0.000001", "0.0000001", "0.0000012345", "1.5", "1.50", "0.0", "-0.0",
		"123456789012345.1", "12345678901234.5", "0.123456789012345", "0.1234567890123456", "999999999999999.9", "100.25"} {
		check(lit)
	}
	for range 200000 {
		var sb strings.Builder
		if r.IntN(2) == 0 {
			sb.WriteByte('-')
		}
		if r.IntN(3) == 0 {
			sb.WriteByte('0')
		} else {
			sb.WriteByte(byte('1' + r.IntN(9)))
			for range r.IntN(16) {
				sb.WriteByte(byte('0' + r.IntN(10)))
			}
		}
		sb.WriteByte('.')
		for range r.IntN(8) {
			sb.WriteByte('0')
		}
		for range 1 + r.IntN(17) {
			sb.WriteByte(byte('0' + r.IntN(10)))
		}
		check(sb.String())
	}
}
