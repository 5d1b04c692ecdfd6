package fakeupstream

import (
	"strconv"
	"strings"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
)

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatRequest struct {
	Model         string         `json:"model"`
	Messages      []chatMessage  `json:"messages"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options"`
	N             *int           `json:"n"`
}

type contentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// messageText decodes a message content: a string, an array of content parts
// (text parts joined with "\n") or null.
func messageText(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", true
	}
	switch raw[0] {
	case 'n':
		return "", string(raw) == "null"
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, true
	case '[':
		var parts []contentPart
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", false
		}
		var sb strings.Builder
		for _, p := range parts {
			if p.Type != "text" && p.Type != "" {
				continue
			}
			if sb.Len() > 0 {
				sb.WriteByte('\n')
			}
			sb.WriteString(p.Text)
		}
		return sb.String(), true
	}
	return "", false
}

type answerKind int

const (
	kindText answerKind = iota
	kindTool
	kindEmpty
	kindRefuse
)

const (
	refusalText   = "I can't help with that"
	reasoningText = "thinking..."
	toolName      = "get_weather"
	toolArgs      = `{"city":"Paris"}`
)

type chatAnswer struct {
	kind    answerKind
	text    string // content (kindText), refusal (kindRefuse)
	think   bool
	prompt  int // prompt tokens
	perComp int // completion tokens per choice
	// openaiID: the answer is shaped like api.openai.com's today: its id (29 letters and digits that differ
	// from answer to answer, see appendChatID) rather than "chatcmpl-fake-<seq>", the message's
	// annotations, the usage's details and the service tier; set with Options.Text.
	openaiID bool
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// handleChat serves POST /v1/chat/completions. It reports whether a stream
// took over the in-flight accounting.
func (s *Server) handleChat(ctx *fasthttp.RequestCtx, rc reqControls) bool {
	var req chatRequest
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest,
			"We could not parse the JSON body of your request: "+err.Error(), "invalid_request_error", "", "")
		return false
	}
	if req.Model == "" {
		writeError(ctx, fasthttp.StatusBadRequest, "you must provide a model parameter",
			"invalid_request_error", "model", "missing_required_parameter")
		return false
	}
	if len(req.Messages) == 0 {
		msg := "Missing required parameter: 'messages'."
		if req.Messages != nil {
			msg = "[] is too short - 'messages'"
		}
		writeError(ctx, fasthttp.StatusBadRequest, msg, "invalid_request_error", "messages", "missing_required_parameter")
		return false
	}
	n := 1
	if req.N != nil {
		n = *req.N
		if n < 1 || n > 128 {
			writeError(ctx, fasthttp.StatusBadRequest, "Invalid 'n': must be between 1 and 128.",
				"invalid_request_error", "n", "invalid_value")
			return false
		}
	}

	prompt := 0
	lastUser := -1
	for i := range req.Messages {
		m := &req.Messages[i]
		if m.Role == "" {
			writeError(ctx, fasthttp.StatusBadRequest, "Missing required parameter: 'messages["+strconv.Itoa(i)+"].role'.",
				"invalid_request_error", "messages["+strconv.Itoa(i)+"].role", "missing_required_parameter")
			return false
		}
		if len(m.Content) > 0 {
			switch m.Content[0] {
			case '"', 'n', '[':
			default:
				writeError(ctx, fasthttp.StatusBadRequest, "Invalid type for 'messages["+strconv.Itoa(i)+"].content'.",
					"invalid_request_error", "messages["+strconv.Itoa(i)+"].content", "invalid_type")
				return false
			}
		}
		prompt += countWords(m.Content) + 3
		if m.Role == "user" {
			lastUser = i
		}
	}
	prompt += 3

	last, ok := messageText(req.Messages[len(req.Messages)-1].Content)
	if !ok {
		writeError(ctx, fasthttp.StatusBadRequest, "Invalid 'messages' content.", "invalid_request_error", "messages", "invalid_type")
		return false
	}
	user := last
	if lastUser >= 0 && lastUser != len(req.Messages)-1 {
		user, _ = messageText(req.Messages[lastUser].Content)
	}

	ans := chatAnswer{prompt: prompt}
	switch {
	case strings.HasPrefix(user, "TOOL:"):
		ans.kind = kindTool
		ans.perComp = 12
	case user == "EMPTY":
		ans.kind = kindEmpty
	case strings.HasPrefix(user, "REFUSE"):
		ans.kind = kindRefuse
		ans.text = refusalText
		ans.perComp = countWords(refusalText)
	default:
		ans.kind = kindText
		ans.think = strings.HasPrefix(user, "THINK:")
		ans.text, ans.perComp = s.answerText(last)
		ans.openaiID = s.paragraphs != nil
		if ans.think {
			ans.perComp++
		}
	}

	if !s.sleep(rc.delay) {
		closingAnswer(ctx)
		return false
	}
	seq := s.seq.Add(1)
	created := time.Now().Unix()

	if req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		ev := getEvents()
		buildChatEvents(ev, &ans, req.Model, seq, created, n, includeUsage)
		s.stream(ctx, ev, rc)
		return true
	}

	bp := bufPool.Get().(*[]byte)
	b := appendChatResponse((*bp)[:0], &ans, req.Model, seq, created, n)
	ctx.Response.Header.SetContentTypeBytes(ctJSON)
	ctx.SetBody(b)
	putBuf(bp, b)
	return false
}

func appendToolCall(b []byte, seq int64, i int) []byte {
	b = append(b, `{"id":"call_`...)
	b = strconv.AppendInt(b, seq, 10)
	if i > 0 {
		b = append(b, '_')
		b = strconv.AppendInt(b, int64(i), 10)
	}
	return append(b, `","type":"function","function":{"name":"`+toolName+`","arguments":`...)
}

var toolArgsJSON = appendJSONString(nil, toolArgs)

func appendChatResponse(b []byte, ans *chatAnswer, model string, seq, created int64, n int) []byte {
	b = append(b, `{"id":"`...)
	b = appendChatID(b, seq, ans.openaiID)
	b = append(b, `","object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, model)
	b = append(b, `,"system_fingerprint":"fp_fake","choices":[`...)
	finish := "stop"
	if ans.kind == kindTool {
		finish = "tool_calls"
	}
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"message":{"role":"assistant","content":`...)
		switch ans.kind {
		case kindText:
			b = appendJSONString(b, ans.text)
			if ans.think {
				b = append(b, `,"reasoning_content":"`+reasoningText+`"`...)
			}
			b = append(b, `,"refusal":null`...)
			if ans.openaiID {
				b = append(b, `,"annotations":[]`...)
			}
		case kindEmpty:
			b = append(b, `"","refusal":null`...)
		case kindTool:
			b = append(b, `null,"tool_calls":[`...)
			b = appendToolCall(b, seq, i)
			b = append(b, toolArgsJSON...)
			b = append(b, `}}],"refusal":null`...)
		case kindRefuse:
			b = append(b, `null,"refusal":`...)
			b = appendJSONString(b, ans.text)
		}
		b = append(b, `},"logprobs":null,"finish_reason":"`...)
		b = append(b, finish...)
		b = append(b, `"}`...)
	}
	b = append(b, `],"usage":`...)
	b = appendUsage(b, ans.prompt, ans.perComp*n)
	if ans.openaiID {
		// The rest of what api.openai.com sends today.
		b = b[:len(b)-1]
		b = append(b, `,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":`+
			`{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default"`...)
	}
	return append(b, '}')
}

// streamPieces is about how many content deltas a streamed answer has.
const streamPieces = 8

func buildChatEvents(ev *events, ans *chatAnswer, model string, seq, created int64, n int, includeUsage bool) {
	var head []byte
	head = append(head, `data: {"id":"`...)
	head = appendChatID(head, seq, ans.openaiID)
	head = append(head, `","object":"chat.completion.chunk","created":`...)
	head = strconv.AppendInt(head, created, 10)
	head = append(head, `,"model":`...)
	head = appendJSONString(head, model)
	head = append(head, `,"system_fingerprint":"fp_fake","choices":[`...)
	tail := "]}\n\n"
	if includeUsage {
		tail = `],"usage":null}` + "\n\n"
	}

	// chunk appends one chunk for choice i with the given delta JSON.
	chunk := func(i int, delta func([]byte) []byte, finish string) {
		ev.buf = append(ev.buf, head...)
		ev.buf = append(ev.buf, `{"index":`...)
		ev.buf = strconv.AppendInt(ev.buf, int64(i), 10)
		ev.buf = append(ev.buf, `,"delta":`...)
		ev.buf = delta(ev.buf)
		ev.buf = append(ev.buf, `,"logprobs":null,"finish_reason":`...)
		if finish == "" {
			ev.buf = append(ev.buf, "null"...)
		} else {
			ev.buf = append(ev.buf, '"')
			ev.buf = append(ev.buf, finish...)
			ev.buf = append(ev.buf, '"')
		}
		ev.buf = append(ev.buf, '}')
		ev.buf = append(ev.buf, tail...)
	}
	lit := func(s string) func([]byte) []byte {
		return func(b []byte) []byte { return append(b, s...) }
	}
	strDelta := func(key, v string) func([]byte) []byte {
		return func(b []byte) []byte {
			b = append(b, `{"`...)
			b = append(b, key...)
			b = append(b, `":`...)
			b = appendJSONString(b, v)
			return append(b, '}')
		}
	}

	roleDelta := `{"role":"assistant","content":""}`
	if ans.kind == kindTool || ans.kind == kindRefuse {
		roleDelta = `{"role":"assistant","content":null}`
	}
	for i := 0; i < n; i++ {
		chunk(i, lit(roleDelta), "")
		ev.markContent()
	}

	finish := "stop"
	switch ans.kind {
	case kindText:
		if ans.think {
			for i := 0; i < n; i++ {
				chunk(i, strDelta("reasoning_content", reasoningText), "")
				ev.markContent()
			}
		}
		for _, p := range splitPieces(ans.text, streamPieces) {
			for i := 0; i < n; i++ {
				chunk(i, strDelta("content", p), "")
				ev.markContent()
			}
		}
	case kindRefuse:
		for _, p := range splitPieces(ans.text, streamPieces) {
			for i := 0; i < n; i++ {
				chunk(i, strDelta("refusal", p), "")
				ev.markContent()
			}
		}
	case kindTool:
		finish = "tool_calls"
		for i := 0; i < n; i++ {
			chunk(i, func(b []byte) []byte {
				b = append(b, `{"tool_calls":[{"index":0,"id":"call_`...)
				b = strconv.AppendInt(b, seq, 10)
				if i > 0 {
					b = append(b, '_')
					b = strconv.AppendInt(b, int64(i), 10)
				}
				return append(b, `","type":"function","function":{"name":"`+toolName+`","arguments":""}}]}`...)
			}, "")
			ev.markContent()
		}
		for _, p := range splitPieces(toolArgs, 4) {
			for i := 0; i < n; i++ {
				chunk(i, func(b []byte) []byte {
					b = append(b, `{"tool_calls":[{"index":0,"function":{"arguments":`...)
					b = appendJSONString(b, p)
					return append(b, "}}]}"...)
				}, "")
				ev.markContent()
			}
		}
	}
	for i := 0; i < n; i++ {
		chunk(i, lit("{}"), finish)
		ev.mark()
	}
	if includeUsage {
		ev.buf = append(ev.buf, head[:len(head)-len(`[`)]...)
		ev.buf = append(ev.buf, `[],"usage":`...)
		ev.buf = appendUsage(ev.buf, ans.prompt, ans.perComp*n)
		ev.buf = append(ev.buf, "}\n\n"...)
		ev.mark()
	}
	ev.addDone()
}

func putBuf(bp *[]byte, b []byte) {
	if cap(b) > 1<<20 {
		return
	}
	*bp = b
	bufPool.Put(bp)
}
