package trim

import (
	"math"
	"regexp"
	"slices"
	"unicode/utf8"
)

// The reference tokenizer is a direct transcription of tiktoken: each encoding's pattern run by
// Go's regexp, whose leftmost-first matching picks the alternative a backtracking engine picks,
// and tiktoken's quadratic byte-pair merge on strings. Count must agree with it everywhere.
//
// Three edits make the patterns RE2: \s becomes [\t\n\v\f\r\x{85}\p{Z}], the set unicode.IsSpace
// (and so regexp2, tiktoken-go's engine) accepts, where Go's \s is ASCII only; (?i:'s|...) is
// spelled out in ASCII because Go's (?i) also folds 'ſ' onto 's' and regexp2 does not; and the
// lookahead \s+(?!\S) becomes the last group, adjusted in refPieces.
const (
	refSpace       = `\t\n\v\f\r\x{85}\p{Z}`
	refContraction = `'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]`
	refUp          = `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`
	refLow         = `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`
)

var refPatterns = map[string]*regexp.Regexp{
	"cl100k_base": regexp.MustCompile(`\A(?:` + refContraction +
		`|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^` + refSpace + `\p{L}\p{N}]+[\r\n]*` +
		`|[` + refSpace + `]*[\r\n]+|([` + refSpace + `]+))`),
	"o200k_base": regexp.MustCompile(`\A(?:` +
		`[^\r\n\p{L}\p{N}]?` + refUp + `*` + refLow + `+(?:` + refContraction + `)?` +
		`|[^\r\n\p{L}\p{N}]?` + refUp + `+` + refLow + `*(?:` + refContraction + `)?` +
		`|\p{N}{1,3}| ?[^` + refSpace + `\p{L}\p{N}]+[\r\n/]*` +
		`|[` + refSpace + `]*[\r\n]+|([` + refSpace + `]+))`),
}

// refPieces splits text as the encoding's pattern does.
func refPieces(name, text string) []string {
	re := refPatterns[name]
	var pieces []string
	for len(text) > 0 {
		m := re.FindStringSubmatchIndex(text)
		end := m[1]
		if m[2] >= 0 && end < len(text) && utf8.RuneCountInString(text[:end]) > 1 {
			// \s+(?!\S) before a non-space: the run without its last rune.
			_, size := utf8.DecodeLastRuneInString(text[:end])
			end -= size
		}
		pieces = append(pieces, text[:end])
		text = text[end:]
	}
	return pieces
}

// refBPE is tiktoken's byte-pair merge: join the adjacent pair with the lowest rank, the leftmost
// on ties, until no joined pair is a token.
func refBPE(ranks map[string]int, piece string) []string {
	if _, ok := ranks[piece]; ok {
		return []string{piece}
	}
	parts := make([]string, len(piece))
	for i := range parts {
		parts[i] = piece[i : i+1]
	}
	for {
		best, at := math.MaxInt, -1
		for i := 0; i+1 < len(parts); i++ {
			if r, ok := ranks[parts[i]+parts[i+1]]; ok && r < best {
				best, at = r, i
			}
		}
		if at < 0 {
			return parts
		}
		parts[at] += parts[at+1]
		parts = slices.Delete(parts, at+1, at+2)
	}
}

// refEncode returns the tokens of text, as byte strings.
func refEncode(tok *Tokenizer, text string) []string {
	if !utf8.ValidString(text) {
		text = string([]rune(text)) // as tiktoken-go: each bad byte becomes U+FFFD
	}
	var tokens []string
	for _, piece := range refPieces(tok.name, text) {
		tokens = append(tokens, refBPE(tok.ranks, piece)...)
	}
	return tokens
}
