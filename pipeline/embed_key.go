package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"

	json "github.com/goccy/go-json"

	"llmcache/pipeline/canon"
)

// Embeddings are cached per input item: a request for 100 inputs of which 97 are cached sends one upstream
// request for the other 3 and answers all 100 in their order.

// embItem is one input of an embeddings request.
type embItem struct {
	key        Key
	start, end int // the item's raw JSON in the request body
}

// embeddingFields are left out of an item's key besides the usual ones: the input itself (keyed item by
// item) and encoding_format (vectors are stored as float32 and converted on the way out).
func (k *keyer) skipEmbedding(key []byte) bool {
	switch string(key) {
	case "input", "encoding_format":
		return true
	}
	return k.skip(key)
}

// keyItems validates the input of an embeddings request and keys each item: the framed record of the
// request without input and encoding_format, then the item's canonical form.
func (k *keyer) keyItems(r *Request, members []canon.Member, input *canon.Member, thinking Thinking) *Error {
	raw := r.Body[input.ValueStart:input.ValueEnd]
	var spans [][2]int
	switch input.Type {
	case canon.String:
		spans = append(spans, [2]int{input.ValueStart, input.ValueEnd})
	case canon.Array:
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return invalidRequest("input", "input must be a string, an array of strings, an array of token ids or an array of token-id arrays")
		}
		if len(elems) == 0 {
			return invalidRequest("input", "input must not be empty")
		}
		if len(elems) > k.maxInputs {
			return invalidRequest("input", fmt.Sprintf("input has %d items; at most %d are allowed (max_embedding_inputs)", len(elems), k.maxInputs))
		}
		first := firstByte(elems[0])
		if first == '-' || (first >= '0' && first <= '9') {
			// One list of token ids is one input.
			for _, e := range elems {
				if !isInteger(e) {
					return invalidRequest("input", "input token ids must be integers")
				}
			}
			spans = append(spans, [2]int{input.ValueStart, input.ValueEnd})
			break
		}
		at := input.ValueStart + 1
		for _, e := range elems {
			// Unmarshal keeps each element's bytes; find them in the body to key them canonically.
			off := bytes.Index(r.Body[at:input.ValueEnd], e)
			if off < 0 {
				return invalidRequest("input", "input could not be read")
			}
			start := at + off
			switch firstByte(e) {
			case '"':
			case '[':
				var ids []json.RawMessage
				if json.Unmarshal(e, &ids) != nil || len(ids) == 0 {
					return invalidRequest("input", "each token-id list in input must be a non-empty array of integers")
				}
				for _, id := range ids {
					if !isInteger(id) {
						return invalidRequest("input", "input token ids must be integers")
					}
				}
			default:
				return invalidRequest("input", "input items must all be strings or all be token-id arrays")
			}
			if firstByte(e) != first {
				return invalidRequest("input", "input items must all be strings or all be token-id arrays")
			}
			spans = append(spans, [2]int{start, start + len(e)})
			at = start + len(e)
		}
	default:
		return invalidRequest("input", "input must be a string, an array of strings, an array of token ids or an array of token-id arrays")
	}
	base := append(k.record[:0], KeyScheme...)
	base = append(base, 0, byte(r.Kind))
	base = binary.AppendUvarint(base, uint64(len(r.Controls.Namespace)))
	base = append(base, r.Controls.Namespace...)
	base = binary.AppendUvarint(base, uint64(r.Controls.Sample))
	base = append(base, byte(thinking))
	base = k.parser.AppendCanonicalObject(base, r.Body, members, k.skipEmbedding)
	base = append(base, 0)
	n := len(base)
	r.items = r.items[:0]
	for _, sp := range spans {
		rec := k.parser.AppendCanonical(base[:n], r.Body[sp[0]:sp[1]])
		r.items = append(r.items, embItem{key: sha256.Sum256(rec), start: sp[0], end: sp[1]})
		base = rec
	}
	k.record = base
	return nil
}

func firstByte(b []byte) byte {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

func isInteger(b []byte) bool {
	_, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	return err == nil
}
