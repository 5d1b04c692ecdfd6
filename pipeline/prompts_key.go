package pipeline

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"

	"llmcache/pipeline/canon"
)

// Batched legacy completions: lm-evaluation-harness sends many prompts in one /v1/completions request, and
// a run resumed, replayed with another batch size or in another order sends them grouped differently. A
// non-streamed request whose prompt is an array of strings or of token-id arrays (one prompt included) is
// therefore cached prompt by prompt, as embeddings are input by input: each prompt is an entry of its own,
// holding that prompt's n choices. A string prompt, one token-id list, a streamed request and anything the
// proxy cannot split keep their whole entry (KindCompletion), byte for byte.

// promptKeyKind is the kind framed in the key record of a prompt's entry and of a batched request as a
// whole (its X-Cache-Key and its flight), so that neither meets a whole completions entry of the same body.
// Route kinds stay below 0x80.
const promptKeyKind = 0x80 | byte(KindCompletion)

// PromptEntryKind is the kind recorded with the entry of one prompt of a batched completions request (its
// choices, a JSON object); export writes it and import takes it back.
const PromptEntryKind = "completions-prompt"

// maxBatchedPrompts bounds the prompts of a request cached prompt by prompt: each costs a lookup before the
// upstream is asked. A larger batch is cached as a whole; lm-evaluation-harness batches are far smaller.
const maxBatchedPrompts = 4096

// maxPromptChoices bounds n for a request cached prompt by prompt; a larger n goes whole (the upstream
// refuses it anyway: OpenAI allows 128).
const maxPromptChoices = 1 << 10

// skipPrompt leaves the prompt out of a prompt's base record besides the usual fields: each prompt is keyed
// on its own after it.
func (k *keyer) skipPrompt(key []byte) bool { return string(key) == "prompt" || k.skip(key) }

// batchPrompts decides whether the completions request r (its body parsed into members) is cached prompt
// by prompt, and if so keys each prompt into r.items (the framed record of the request without prompt,
// then the prompt's canonical form) and sets r.promptN. It reports false, changing nothing, for a request
// that keeps its whole entry.
func (k *keyer) batchPrompts(r *Request, members []canon.Member, thinking Thinking) bool {
	if r.Stream || r.Controls.Mode == ModeOff {
		// Mode off caches nothing: the upstream's answer goes to the client as it is, not reassembled.
		return false
	}
	var prompt *canon.Member
	n := 1
	for i := range members {
		m := &members[i]
		switch string(m.Key) {
		case "prompt":
			prompt = m
		case "n":
			if m.Type == canon.Null {
				continue
			}
			v, err := strconv.Atoi(string(r.Body[m.ValueStart:m.ValueEnd]))
			if m.Type != canon.Number || err != nil || v < 1 || v > maxPromptChoices {
				return false // the upstream says what is wrong with it
			}
			n = v
		}
	}
	if prompt == nil || prompt.Type != canon.Array {
		return false
	}
	spans := rawArrayElems(r.Body, prompt.ValueStart)
	if len(spans) == 0 || len(spans) > maxBatchedPrompts {
		return false
	}
	for _, sp := range spans {
		// One list of token ids is one prompt; an array mixing strings and token lists, which the upstream
		// refuses, goes whole for the upstream to say so.
		if v := r.Body[sp[0]:sp[1]]; !isPrompt(v) || v[0] != r.Body[spans[0][0]] {
			return false
		}
	}
	base := append(k.record[:0], KeyScheme...)
	base = append(base, 0, promptKeyKind)
	base = binary.AppendUvarint(base, uint64(len(r.Controls.Namespace)))
	base = append(base, r.Controls.Namespace...)
	base = binary.AppendUvarint(base, uint64(r.Controls.Sample))
	base = append(base, byte(thinking))
	base = k.parser.AppendCanonicalObject(base, r.Body, members, k.skipPrompt)
	base = append(base, 0)
	at := len(base)
	r.items = r.items[:0]
	for _, sp := range spans {
		rec := k.parser.AppendCanonical(base[:at], r.Body[sp[0]:sp[1]])
		r.items = append(r.items, embItem{key: sha256.Sum256(rec), start: sp[0], end: sp[1]})
		base = rec
	}
	k.record = base
	r.promptN = n
	return true
}

// isPrompt reports whether v, one element of a prompt array, is a prompt of its own: a string, or a
// non-empty array of integers (token ids).
func isPrompt(v []byte) bool {
	switch v[0] {
	case '"':
		return true
	case '[':
		ids := rawArrayElems(v, 0)
		if len(ids) == 0 {
			return false
		}
		for _, sp := range ids {
			if !isIntLiteral(v[sp[0]:sp[1]]) {
				return false
			}
		}
		return true
	}
	return false
}

// isIntLiteral reports whether a JSON number literal has no fraction and no exponent.
func isIntLiteral(lit []byte) bool {
	if len(lit) > 0 && lit[0] == '-' {
		lit = lit[1:]
	}
	if len(lit) == 0 {
		return false
	}
	for _, c := range lit {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
