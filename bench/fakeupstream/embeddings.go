package fakeupstream

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
)

// DefaultDimensions is the embedding size when a request gives no dimensions.
const DefaultDimensions = 8

// maxDimensions bounds the dimensions a request may ask for.
const maxDimensions = 65536

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	Dimensions     *int            `json:"dimensions"`
	EncodingFormat string          `json:"encoding_format"`
}

// Vector returns the embedding the server answers for one input: the text,
// or for a token array its compact JSON text (for example "[1,2,3]"). Values
// are pseudo-random in [-1, 1), derived from an FNV-1a hash of input, and the
// same for the same (input, dims). dims <= 0 gives nil.
func Vector(input string, dims int) []float32 {
	if dims <= 0 {
		return nil
	}
	return appendVector(make([]float32, 0, dims), input, dims)
}

func appendVector(v []float32, input string, dims int) []float32 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(input); i++ {
		h ^= uint64(input[i])
		h *= 1099511628211
	}
	state := h
	for i := 0; i < dims; i++ {
		// splitmix64
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		// 24 random bits -> k/2^23 - 1, exact in float32, in [-1, 1).
		k := int32(z >> 40)
		v = append(v, float32(k-1<<23)/(1<<23))
	}
	return v
}

// tokenArrayText is the compact JSON text of a token array.
func tokenArrayText(ids []int64) string {
	b := make([]byte, 0, len(ids)*6+2)
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}

func (s *Server) handleEmbeddings(ctx *fasthttp.RequestCtx, rc reqControls) {
	var req embeddingRequest
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest,
			"We could not parse the JSON body of your request: "+err.Error(), "invalid_request_error", "", "")
		return
	}
	if req.Model == "" {
		writeError(ctx, fasthttp.StatusBadRequest, "you must provide a model parameter",
			"invalid_request_error", "model", "missing_required_parameter")
		return
	}
	dims := DefaultDimensions
	if req.Dimensions != nil {
		dims = *req.Dimensions
		if dims < 1 || dims > maxDimensions {
			writeError(ctx, fasthttp.StatusBadRequest, "Invalid 'dimensions': must be between 1 and "+strconv.Itoa(maxDimensions)+".",
				"invalid_request_error", "dimensions", "invalid_value")
			return
		}
	}
	b64 := false
	switch req.EncodingFormat {
	case "", "float":
	case "base64":
		b64 = true
	default:
		writeError(ctx, fasthttp.StatusBadRequest, "Invalid 'encoding_format': expected 'float' or 'base64'.",
			"invalid_request_error", "encoding_format", "invalid_value")
		return
	}
	items, err := decodeTextOrTokens(req.Input)
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
			"invalid_request_error", "input", "invalid_value")
		return
	}
	inputs := make([]string, len(items))
	promptTokens := 0
	for i, it := range items {
		if it.ids != nil {
			inputs[i] = tokenArrayText(it.ids)
			promptTokens += len(it.ids)
		} else {
			inputs[i] = it.text
			promptTokens += countWords(it.text)
		}
	}
	s.recordEmbeddingInputs(inputs)

	if !s.sleep(rc.delay) {
		closingAnswer(ctx)
		return
	}

	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	vec := make([]float32, 0, dims)
	var raw []byte
	b = append(b, `{"object":"list","data":[`...)
	for i, in := range inputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"embedding":`...)
		vec = appendVector(vec[:0], in, dims)
		if b64 {
			raw = raw[:0]
			for _, f := range vec {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, raw)
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for j, f := range vec {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	b = appendJSONString(b, req.Model)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(promptTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(promptTokens), 10)
	b = append(b, "}}"...)
	ctx.Response.Header.SetContentTypeBytes(ctJSON)
	ctx.SetBody(b)
	putBuf(bp, b)
}
