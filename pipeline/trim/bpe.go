package trim

import "math"

// noRank marks a pair of parts whose joined bytes are not a token.
const noRank = math.MaxInt

// shortPiece is the longest piece merged with the quadratic scan on the stack; longer ones (CJK runs,
// base64, long punctuation) use a heap so that a hostile 1 MB word costs O(n log n), not O(n²).
const shortPiece = 64

// pieceTokens returns the number of tokens of one pre-tokenizer piece. Like tiktoken's byte-pair
// merge, it starts from single bytes and repeatedly joins the adjacent pair whose joined bytes have
// the lowest rank, the leftmost on ties, until no joined pair is a token.
func (t *Tokenizer) pieceTokens(piece string) int {
	if len(piece) == 1 {
		return 1 // every byte is a token
	}
	if _, ok := t.ranks[piece]; ok {
		return 1
	}
	if len(piece) <= shortPiece {
		return t.mergeShort(piece)
	}
	return t.mergeLong(piece)
}

func (t *Tokenizer) rank(b string) int {
	var r int
	var ok bool
	switch {
	case len(b) == 2:
		return t.pairs[int(b[0])<<8|int(b[1])]
	case len(b) <= 7:
		r, ok = t.short[packKey(b)]
	default:
		r, ok = t.ranks[b]
	}
	if ok {
		return r
	}
	return noRank
}

// packKey packs a string of at most 7 bytes and its length into a uint64.
func packKey(b string) uint64 {
	k := uint64(len(b)) << 56
	for i := range len(b) {
		k |= uint64(b[i]) << (8 * i)
	}
	return k
}

// mergeShort is tiktoken's own algorithm: a linear scan for the lowest rank per merge.
func (t *Tokenizer) mergeShort(piece string) int {
	var startBuf, rankBuf [shortPiece + 1]int
	parts := len(piece)
	start := startBuf[:parts+1] // part k is piece[start[k]:start[k+1]]
	rank := rankBuf[:parts]     // rank[k]: rank of joining parts k and k+1
	for k := range start {
		start[k] = k
	}
	for k := 0; k+1 < parts; k++ {
		rank[k] = t.rank(piece[k : k+2])
	}
	for parts > 1 {
		best, at := noRank, -1
		for k, r := range rank[:parts-1] {
			if r < best {
				best, at = r, k
			}
		}
		if at < 0 {
			break
		}
		// Join parts at and at+1: boundary at+1 goes, later pairs shift down by one.
		copy(start[at+1:], start[at+2:parts+1])
		if at+2 < parts {
			copy(rank[at+1:], rank[at+2:parts-1])
		}
		parts--
		rank[at] = noRank
		if at+1 < parts {
			rank[at] = t.rank(piece[start[at]:start[at+2]])
		}
		if at > 0 {
			rank[at-1] = t.rank(piece[start[at-1]:start[at+1]])
		}
	}
	return parts
}

// mergeLong gives mergeShort's result with the parts in a linked list and the candidate pairs in
// a min-heap keyed by (rank, offset), so the leftmost lowest pair still wins. A heap entry is stale
// when its part's current rank differs: a part only grows, and no two tokens share a rank, so a
// part's rank never returns to an earlier value.
func (t *Tokenizer) mergeLong(piece string) int {
	n := len(piece)
	next := make([]int, n) // next[k]: offset of the part after the part at offset k, n for the last
	prev := make([]int, n)
	rank := make([]int, n) // rank[k]: rank of joining the part at k with the next; noRank if dead
	h := make(minHeap, 0, n)
	for k := range n {
		next[k], prev[k], rank[k] = k+1, k-1, noRank
		if k+1 < n {
			rank[k] = t.rank(piece[k : k+2])
			h.push(rank[k], k)
		}
	}
	parts := n
	for len(h) > 0 {
		r, k := h.pop()
		if r == noRank || rank[k] != r {
			continue
		}
		j := next[k]
		next[k], rank[j] = next[j], noRank
		if next[k] < n {
			prev[next[k]] = k
		}
		parts--
		rank[k] = noRank
		if nk := next[k]; nk < n {
			rank[k] = t.rank(piece[k:next[nk]])
			h.push(rank[k], k)
		}
		if p := prev[k]; p >= 0 {
			rank[p] = t.rank(piece[p:next[k]])
			h.push(rank[p], p)
		}
	}
	return parts
}

// minHeap holds rank<<32 | offset; ranks are below 2^18 and offsets below 2^32 for any real piece.
type minHeap []uint64

func (h *minHeap) push(rank, offset int) {
	if rank == noRank {
		return
	}
	s := append(*h, uint64(rank)<<32|uint64(offset))
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p] <= s[i] {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
	*h = s
}

func (h *minHeap) pop() (rank, offset int) {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(s) && s[l] < s[m] {
			m = l
		}
		if l+1 < len(s) && s[l+1] < s[m] {
			m = l + 1
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return int(top >> 32), int(top & (1<<32 - 1))
}
