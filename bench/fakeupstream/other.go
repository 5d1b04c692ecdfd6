package fakeupstream

import (
	"io"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
)

// Routes that a caching proxy has no reason to know, so that its pass-through can be tested: moderations
// (JSON in, JSON out), audio transcriptions (multipart in) and speech (binary out).

type moderationRequest struct {
	Model string          `json:"model"`
	Input json.RawMessage `json:"input"`
}

// handleModerations serves POST /v1/moderations: one result per input, flagged when the input holds
// "FLAG".
func (s *Server) handleModerations(ctx *fasthttp.RequestCtx, rc reqControls) {
	var req moderationRequest
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest,
			"We could not parse the JSON body of your request: "+err.Error(), "invalid_request_error", "", "")
		return
	}
	items, err := decodeTextOrTokens(req.Input)
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "Invalid 'input': expected a string or an array of strings.",
			"invalid_request_error", "input", "invalid_value")
		return
	}
	model := req.Model
	if model == "" {
		model = "omni-moderation-latest"
	}
	if !s.sleep(rc.delay) {
		closingAnswer(ctx)
		return
	}
	b := []byte(`{"id":"modr-fake-`)
	b = strconv.AppendInt(b, s.seq.Add(1), 10)
	b = append(b, `","model":`...)
	b = appendJSONString(b, model)
	b = append(b, `,"results":[`...)
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		flagged := strings.Contains(it.text, "FLAG")
		score := "0.0001"
		if flagged {
			score = "0.9876"
		}
		b = append(b, `{"flagged":`...)
		b = strconv.AppendBool(b, flagged)
		b = append(b, `,"categories":{"violence":`...)
		b = strconv.AppendBool(b, flagged)
		b = append(b, `},"category_scores":{"violence":`...)
		b = append(b, score...)
		b = append(b, "}}"...)
	}
	b = append(b, "]}"...)
	ctx.Response.Header.SetContentTypeBytes(ctJSON)
	ctx.SetBody(b)
}

// Transcript is the text POST /v1/audio/transcriptions answers for an uploaded file: it names the file and
// sums up its bytes, so that a test can tell whether the upload arrived unchanged.
func Transcript(filename string, data []byte) string {
	return "fake transcript of " + filename + ": " + strconv.Itoa(len(data)) + " bytes, fnv " + strconv.FormatUint(fnv64(data), 16)
}

// handleTranscriptions serves POST /v1/audio/transcriptions, a multipart/form-data upload with a "file"
// and a "model": {"text": Transcript(...)}, or the bare text with response_format "text".
func (s *Server) handleTranscriptions(ctx *fasthttp.RequestCtx, rc reqControls) {
	form, err := ctx.MultipartForm()
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "Expected a multipart/form-data body: "+err.Error(),
			"invalid_request_error", "", "")
		return
	}
	files := form.File["file"]
	if len(files) != 1 {
		writeError(ctx, fasthttp.StatusBadRequest, "you must provide one file", "invalid_request_error", "file", "")
		return
	}
	if v := form.Value["model"]; len(v) != 1 || v[0] == "" {
		writeError(ctx, fasthttp.StatusBadRequest, "you must provide a model parameter",
			"invalid_request_error", "model", "missing_required_parameter")
		return
	}
	f, err := files[0].Open()
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "cannot read the file: "+err.Error(), "invalid_request_error", "file", "")
		return
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "cannot read the file: "+err.Error(), "invalid_request_error", "file", "")
		return
	}
	if !s.sleep(rc.delay) {
		closingAnswer(ctx)
		return
	}
	text := Transcript(files[0].Filename, data)
	if v := form.Value["response_format"]; len(v) == 1 && v[0] == "text" {
		ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString(text + "\n")
		return
	}
	ctx.Response.Header.SetContentTypeBytes(ctJSON)
	ctx.SetBody(append(appendJSONString([]byte(`{"text":`), text), '}'))
}

// SpeechAudio is the body POST /v1/audio/speech answers for input: binary bytes (every byte value, CR and
// LF among them), about 100 per input byte, the same for the same input.
func SpeechAudio(input string) []byte {
	n := 1024 + 97*len(input)
	out := make([]byte, n)
	state := fnv64([]byte(input))
	for i := range out {
		state = state*6364136223846793005 + 1442695040888963407
		out[i] = byte(state >> 56)
	}
	return out
}

// handleSpeech serves POST /v1/audio/speech: {"model","input","voice"} in, SpeechAudio(input) out as
// audio/mpeg.
func (s *Server) handleSpeech(ctx *fasthttp.RequestCtx, rc reqControls) {
	var req struct {
		Model string `json:"model"`
		Input string `json:"input"`
		Voice string `json:"voice"`
	}
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil || req.Input == "" || req.Voice == "" {
		writeError(ctx, fasthttp.StatusBadRequest, "you must provide input and voice", "invalid_request_error", "input", "")
		return
	}
	if !s.sleep(rc.delay) {
		closingAnswer(ctx)
		return
	}
	ctx.Response.Header.SetContentType("audio/mpeg")
	ctx.SetBody(SpeechAudio(req.Input))
}

// fnv64 is FNV-1a over b.
func fnv64(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}
