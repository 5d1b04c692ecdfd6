package fakeupstream

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// echoMax is how many bytes of the prompt an answer echoes.
const echoMax = 200

var fillerWords = strings.Fields(`the quick brown fox jumps over a lazy dog while
cached answers return faster than fresh ones and every proxy keeps a careful
record of requests responses tokens latency throughput streams models vectors
prompts completions so that repeated questions cost nothing at all`)

// makeFiller returns filler words separated by single spaces, at least n
// bytes long.
func makeFiller(n int) string {
	var sb strings.Builder
	sb.Grow(n + 16)
	for i := 0; sb.Len() < n; i++ {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(fillerWords[i%len(fillerWords)])
	}
	return sb.String()
}

// truncUTF8 cuts s to at most n bytes without splitting a rune.
func truncUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// answerText is the deterministic generated text for a prompt: "echo: " plus
// up to echoMax bytes of the prompt, then filler words up to about
// s.answerBytes bytes; with Options.Text, paragraphs of that text instead
// (textAnswer). It also returns the text's word count.
func (s *Server) answerText(prompt string) (string, int) {
	if s.paragraphs != nil {
		return s.textAnswer(prompt)
	}
	echo := truncUTF8(prompt, echoMax)
	prefixLen := len("echo: ") + len(echo)
	need := s.answerBytes - prefixLen - 1
	var fill string
	if need > 0 {
		fill = s.filler[:need]
		if i := strings.LastIndexByte(fill, ' '); i > 0 {
			fill = fill[:i]
		}
	}
	var sb strings.Builder
	sb.Grow(prefixLen + 1 + len(fill))
	sb.WriteString("echo: ")
	sb.WriteString(echo)
	words := 1 + countWords(echo)
	if fill != "" {
		sb.WriteByte(' ')
		sb.WriteString(fill)
		// The filler is words separated by single spaces.
		words += strings.Count(fill, " ") + 1
	}
	return sb.String(), words
}

// countWords counts runs of non-space bytes (space, tab, CR, LF separate).
func countWords[T ~string | ~[]byte](s T) int {
	n := 0
	in := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			in = false
		default:
			if !in {
				n++
				in = true
			}
		}
	}
	return n
}

// splitPieces splits s into about n consecutive pieces whose concatenation is
// s. Cuts are placed before a space when one follows the even cut point,
// otherwise on a rune boundary.
func splitPieces(s string, n int) []string {
	if s == "" {
		return nil
	}
	if n <= 1 || len(s) < 2 {
		return []string{s}
	}
	out := make([]string, 0, n)
	prev := 0
	for k := 1; k < n; k++ {
		p := k * len(s) / n
		if p <= prev {
			continue
		}
		if i := strings.IndexByte(s[p:], ' '); i >= 0 && p+i < (k+1)*len(s)/n {
			p += i
		} else {
			for p > prev && !utf8.RuneStart(s[p]) {
				p--
			}
		}
		if p <= prev || p >= len(s) {
			continue
		}
		out = append(out, s[prev:p])
		prev = p
	}
	return append(out, s[prev:])
}

// tokens splits s into pseudo tokens: the first word, then each following
// word with the spaces before it (" word"). Their concatenation is s.
func tokens(s string) []string {
	if s == "" {
		return nil
	}
	out := make([]string, 0, countWords(s)+1)
	start := 0
	for i := 1; i < len(s); i++ {
		if s[i] == ' ' && s[i-1] != ' ' {
			out = append(out, s[start:i])
			start = i
		}
	}
	return append(out, s[start:])
}

// tokenLogprobMilli is a deterministic pseudo log-probability of tok in
// thousandths, in [-5000, -1].
func tokenLogprobMilli(tok string) int64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(tok); i++ {
		h ^= uint64(tok[i])
		h *= 1099511628211
	}
	return -int64(h%5000 + 1)
}

// appendMilli appends m/1000 as a JSON number.
func appendMilli(b []byte, m int64) []byte {
	return strconv.AppendFloat(b, float64(m)/1000, 'g', -1, 64)
}
