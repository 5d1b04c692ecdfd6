package canon

import (
	"bytes"
	"cmp"
	"slices"
)

// linearKeys is the object size up to which duplicate keys are found by
// comparing each new key with the earlier ones. Request objects are small, and
// for them this beats sorting; larger objects are checked by sorting once
// when they close, so a hostile object with many keys costs O(n log n), not
// O(n²).
const linearKeys = 16

// keyRef is one decoded key of an object that is still open.
type keyRef struct {
	key []byte
	off int // offset of the key's opening quote, for the error message
}

// addKey records key for the innermost open object, whose keys start at
// p.keys[base]. Small objects are checked for duplicates right away.
func (p *Parser) addKey(base int, key []byte, off int) *SyntaxError {
	if seen := p.keys[base:]; len(seen) < linearKeys {
		for _, k := range seen {
			if bytes.Equal(k.key, key) {
				return dupErr(off, key)
			}
		}
	}
	p.keys = append(p.keys, keyRef{key: key, off: off})
	return nil
}

// closeObject finishes the duplicate check of the innermost object (keys
// from p.keys[base]) and drops its keys.
func (p *Parser) closeObject(base int) *SyntaxError {
	keys := p.keys[base:]
	p.keys = p.keys[:base]
	if len(keys) <= linearKeys {
		return nil // addKey already compared every pair
	}
	sorted := append(p.dupScratch[:0], keys...)
	p.dupScratch = sorted
	slices.SortFunc(sorted, func(a, b keyRef) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		return cmp.Compare(a.off, b.off)
	})
	// Report the duplicate that comes first in the document, so the error
	// does not depend on the sort.
	var dup *keyRef
	for i := 1; i < len(sorted); i++ {
		if bytes.Equal(sorted[i-1].key, sorted[i].key) && (dup == nil || sorted[i].off < dup.off) {
			dup = &sorted[i]
		}
	}
	if dup != nil {
		return dupErr(dup.off, dup.key)
	}
	return nil
}

func dupErr(off int, key []byte) *SyntaxError {
	return syntaxErr(off, "duplicate object key %s", quoteForMsg(key))
}

// compareUTF16 orders two UTF-8 strings by their UTF-16 code units, as RFC
// 8785 requires for member names. UTF-8 byte order equals code point order,
// which differs from UTF-16 order in one case only: characters U+E000–U+FFFF
// (lead bytes 0xEE, 0xEF) sort after supplementary characters (lead bytes
// 0xF0–0xF4, surrogates 0xD800–0xDFFF in UTF-16). So compare bytes and fix
// up that case at the first difference. Both strings must be valid UTF-8, so
// at the first differing byte either both runes start there or both share
// the same lead byte (and then byte order is right).
func compareUTF16(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	if i == n {
		return cmp.Compare(len(a), len(b))
	}
	x, y := a[i], b[i]
	switch {
	case x >= 0xF0 && (y == 0xEE || y == 0xEF):
		return -1
	case y >= 0xF0 && (x == 0xEE || x == 0xEF):
		return 1
	case x < y:
		return -1
	default:
		return 1
	}
}
