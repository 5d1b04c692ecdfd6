package canon

import "slices"

// Member order for the canonical form: UTF-16 order of the decoded keys (see
// compareUTF16). Keys are unique (validation refuses duplicates), so the sorts
// need not be stable.

// sortMembers puts members in UTF-16 key order. Request objects have a
// handful of members, for which a direct insertion sort is several times
// faster than the generic sort with its indirect comparisons.
func sortMembers(ms []Member) {
	if len(ms) > 12 {
		slicesSortMembers(ms)
		return
	}
	for i := 1; i < len(ms); i++ {
		if compareUTF16(ms[i-1].Key, ms[i].Key) <= 0 {
			continue
		}
		m := ms[i]
		j := i
		for ; j > 0 && compareUTF16(ms[j-1].Key, m.Key) > 0; j-- {
			ms[j] = ms[j-1]
		}
		ms[j] = m
	}
}

// sortEntries puts entries in UTF-16 key order (see sortMembers).
func sortEntries(es []entry) {
	if len(es) > 12 {
		slicesSortEntries(es)
		return
	}
	for i := 1; i < len(es); i++ {
		e := es[i]
		j := i
		for ; j > 0 && compareUTF16(es[j-1].key, e.key) > 0; j-- {
			es[j] = es[j-1]
		}
		es[j] = e
	}
}

// The generic sorts serve objects with many members. Their comparison funcs
// capture nothing, so sorting allocates nothing.

func slicesSortMembers(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int { return compareUTF16(a.Key, b.Key) })
}

func slicesSortEntries(es []entry) {
	slices.SortFunc(es, func(a, b entry) int { return compareUTF16(a.key, b.key) })
}
