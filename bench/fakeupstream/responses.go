package fakeupstream

import (
	"bytes"
	stdjson "encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
)

// The Responses API: POST /v1/responses (whole or streamed as typed events), GET and DELETE
// /v1/responses/{id} for the responses this server issued and kept (store not false).
//
// The answer is a message whose text is "echo: " + the last input text, then filler words, as chat's. The
// last user text selects special answers: "TOOL:..." a get_weather function call, "THINK:..." a reasoning
// item (with a summary) before the message, "REFUSE..." a refusal part, "EMPTY" no output at all, "FAIL" a
// failed response (streamed: a response.failed event), "ERROR" (streamed only) an error event. With
// max_output_tokens below the answer's word count the text stops there and the response is "incomplete"
// (reason max_output_tokens). previous_response_id must name a response this server keeps (404 otherwise),
// as OpenAI's does.

type responsesRequest struct {
	Model              string          `json:"model"`
	Input              json.RawMessage `json:"input"`
	Instructions       *string         `json:"instructions"`
	Stream             bool            `json:"stream"`
	Store              *bool           `json:"store"`
	MaxOutputTokens    *int            `json:"max_output_tokens"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Tools              json.RawMessage `json:"tools"`
	Metadata           json.RawMessage `json:"metadata"`
}

// responseItem is the part of an input item the fake reads.
type responseItem struct {
	Type    string          `json:"type"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Output  json.RawMessage `json:"output"`
}

// itemText is an input item's text: a message's content (a string, or its text parts joined with "\n"),
// or a function_call_output's output.
func itemText(it *responseItem) string {
	if it.Type == "function_call_output" {
		s, _ := messageText(it.Output)
		return s
	}
	if len(it.Content) > 0 && it.Content[0] == '[' {
		var parts []contentPart
		if json.Unmarshal(it.Content, &parts) != nil {
			return ""
		}
		var sb strings.Builder
		for _, p := range parts {
			if p.Type != "input_text" && p.Type != "output_text" && p.Type != "text" {
				continue
			}
			if sb.Len() > 0 {
				sb.WriteByte('\n')
			}
			sb.WriteString(p.Text)
		}
		return sb.String()
	}
	s, _ := messageText(it.Content)
	return s
}

// keptResponses is what the server remembers of the responses it issued, for GET, DELETE and previous_response_id.
type keptResponses struct {
	mu    sync.Mutex
	byID  map[string][]byte
	order []string // oldest first, at most MaxRecorded
}

func (k *keptResponses) put(id string, body []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.byID == nil {
		k.byID = make(map[string][]byte)
	}
	k.byID[id] = body
	k.order = append(k.order, id)
	if len(k.order) > MaxRecorded {
		delete(k.byID, k.order[0])
		k.order = k.order[1:]
	}
}

func (k *keptResponses) get(id string) ([]byte, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	b, ok := k.byID[id]
	return b, ok
}

func (k *keptResponses) delete(id string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.byID[id]
	delete(k.byID, id)
	return ok
}

// responseAnswer is what a request is answered with, before it is written whole or as events.
type responseAnswer struct {
	id, model                  string
	created                    int64
	seq                        int64
	text, refusal, reasoning   string
	tool, empty, fail, errorEv bool
	incomplete                 bool
	inTokens, outTokens        int
	req                        *responsesRequest
}

// handleResponses serves POST /v1/responses. It reports whether a stream took over the in-flight accounting.
func (s *Server) handleResponses(ctx *fasthttp.RequestCtx, rc reqControls) bool {
	var req responsesRequest
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
	var items []responseItem
	switch in := trimSpace(req.Input); {
	case len(in) > 0 && in[0] == '"':
		items = []responseItem{{Type: "message", Role: "user", Content: in}}
	case len(in) > 0 && in[0] == '[':
		if json.Unmarshal(in, &items) != nil || len(items) == 0 {
			writeError(ctx, fasthttp.StatusBadRequest, "Invalid 'input': expected a string or a non-empty array of input items.",
				"invalid_request_error", "input", "invalid_type")
			return false
		}
	default:
		writeError(ctx, fasthttp.StatusBadRequest, "Missing required parameter: 'input'.", "invalid_request_error", "input", "missing_required_parameter")
		return false
	}
	if p := req.PreviousResponseID; p != nil {
		if _, ok := s.responses.get(*p); !ok {
			writeError(ctx, fasthttp.StatusNotFound, "Previous response with id '"+*p+"' not found.",
				"invalid_request_error", "previous_response_id", "previous_response_not_found")
			return false
		}
	}

	ans := responseAnswer{model: req.Model, req: &req}
	last, user := itemText(&items[len(items)-1]), ""
	for i := range items {
		ans.inTokens += countWords(itemText(&items[i])) + 3
		if it := &items[i]; it.Role == "user" {
			user = itemText(it)
		}
	}
	if req.Instructions != nil {
		ans.inTokens += countWords(*req.Instructions)
	}
	if items[len(items)-1].Role != "user" && items[len(items)-1].Type != "" {
		user = "" // a tool result (or another item) last: answer it, whatever the user asked before
	}
	switch {
	case strings.HasPrefix(user, "TOOL:"):
		ans.tool, ans.outTokens = true, 12
	case user == "EMPTY":
		ans.empty = true
	case user == "FAIL":
		ans.fail = true
	case user == "ERROR":
		ans.errorEv = true
	case strings.HasPrefix(user, "REFUSE"):
		ans.refusal, ans.outTokens = refusalText, countWords(refusalText)
	default:
		if strings.HasPrefix(user, "THINK:") {
			ans.reasoning = reasoningText
			ans.outTokens++
		}
		var words int
		ans.text, words = s.answerText(last)
		ans.outTokens += words
		if m := req.MaxOutputTokens; m != nil && *m < ans.outTokens {
			ans.text = firstWords(ans.text, max(*m-(ans.outTokens-words), 1))
			ans.outTokens, ans.incomplete = *m, true
		}
	}

	if !s.sleep(rc.delay) {
		closingAnswer(ctx)
		return false
	}
	ans.seq = s.seq.Add(1)
	ans.id = "resp_fake_" + strconv.FormatInt(ans.seq, 10)
	ans.created = time.Now().Unix()
	final := appendResponse(nil, &ans, "")
	if !ans.fail && (req.Store == nil || *req.Store) {
		s.responses.put(ans.id, final)
	}
	if req.Stream {
		ev := getEvents()
		buildResponseEvents(ev, &ans, final)
		s.stream(ctx, ev, rc)
		return true
	}
	ctx.Response.Header.SetContentTypeBytes(ctJSON)
	ctx.SetBody(final)
	return false
}

// firstWords is s up to its n-th word.
func firstWords(s string, n int) string {
	toks := tokens(s)
	if n >= len(toks) {
		return s
	}
	return strings.Join(toks[:n], "")
}

// handleResponseByID serves GET and DELETE /v1/responses/{id}.
func (s *Server) handleResponseByID(ctx *fasthttp.RequestCtx, rc reqControls) {
	id := string(ctx.Path())
	id = id[strings.LastIndexByte(id, '/')+1:]
	if !s.sleep(rc.delay) {
		closingAnswer(ctx)
		return
	}
	notFound := func() {
		writeError(ctx, fasthttp.StatusNotFound, "Response with id '"+id+"' not found.", "invalid_request_error", "", "")
	}
	if ctx.IsDelete() {
		if !s.responses.delete(id) {
			notFound()
			return
		}
		b := append([]byte(`{"id":`), appendJSONString(nil, id)...)
		ctx.Response.Header.SetContentTypeBytes(ctJSON)
		ctx.SetBody(append(b, `,"object":"response","deleted":true}`...))
		return
	}
	body, ok := s.responses.get(id)
	if !ok {
		notFound()
		return
	}
	ctx.Response.Header.SetContentTypeBytes(ctJSON)
	ctx.SetBody(body)
}

// appendResponse appends the response object of ans. status "" is the final status; "in_progress" writes
// the response as response.created carries it: no output, no usage.
func appendResponse(b []byte, ans *responseAnswer, status string) []byte {
	final := status == ""
	if final {
		status = "completed"
		switch {
		case ans.fail:
			status = "failed"
		case ans.incomplete:
			status = "incomplete"
		}
	}
	b = append(b, `{"id":"`...)
	b = append(b, ans.id...)
	b = append(b, `","object":"response","created_at":`...)
	b = strconv.AppendInt(b, ans.created, 10)
	b = append(b, `,"status":"`...)
	b = append(b, status...)
	b = append(b, `","background":false,"error":`...)
	if final && ans.fail {
		b = append(b, `{"code":"server_error","message":"fake failure"}`...)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"incomplete_details":`...)
	if final && ans.incomplete {
		b = append(b, `{"reason":"max_output_tokens"}`...)
	} else {
		b = append(b, "null"...)
	}
	r := ans.req
	b = append(b, `,"instructions":`...)
	if r.Instructions != nil {
		b = appendJSONString(b, *r.Instructions)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"max_output_tokens":`...)
	if r.MaxOutputTokens != nil {
		b = strconv.AppendInt(b, int64(*r.MaxOutputTokens), 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"model":`...)
	b = appendJSONString(b, ans.model)
	b = append(b, `,"output":[`...)
	if final {
		for i, it := range ans.items() {
			if i > 0 {
				b = append(b, ',')
			}
			b = it.appendDone(b, ans)
		}
	}
	b = append(b, `],"parallel_tool_calls":true,"previous_response_id":`...)
	if r.PreviousResponseID != nil {
		b = appendJSONString(b, *r.PreviousResponseID)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"reasoning":{"effort":null,"summary":null},"store":`...)
	b = strconv.AppendBool(b, r.Store == nil || *r.Store)
	b = append(b, `,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":`...)
	b = appendRawOr(b, r.Tools, "[]")
	b = append(b, `,"top_p":1.0,"truncation":"disabled","usage":`...)
	if final && !ans.fail {
		b = append(b, `{"input_tokens":`...)
		b = strconv.AppendInt(b, int64(ans.inTokens), 10)
		b = append(b, `,"input_tokens_details":{"cached_tokens":0},"output_tokens":`...)
		b = strconv.AppendInt(b, int64(ans.outTokens), 10)
		b = append(b, `,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":`...)
		b = strconv.AppendInt(b, int64(ans.inTokens+ans.outTokens), 10)
		b = append(b, '}')
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"user":null,"metadata":`...)
	b = appendRawOr(b, r.Metadata, "{}")
	return append(b, '}')
}

// appendRawOr appends raw compacted, or def when it is absent or null.
func appendRawOr(b []byte, raw json.RawMessage, def string) []byte {
	raw = trimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return append(b, def...)
	}
	var c bytes.Buffer
	if stdjson.Compact(&c, raw) != nil {
		return append(b, def...)
	}
	return append(b, c.Bytes()...)
}

// outItem is one output item of an answer.
type outItem struct {
	typ string // "reasoning", "message", "function_call"
	id  string
}

func (ans *responseAnswer) items() []outItem {
	seq := strconv.FormatInt(ans.seq, 10)
	var out []outItem
	switch {
	case ans.empty || ans.fail || ans.errorEv:
	case ans.tool:
		out = append(out, outItem{"function_call", "fc_fake_" + seq})
	default:
		if ans.reasoning != "" {
			out = append(out, outItem{"reasoning", "rs_fake_" + seq})
		}
		out = append(out, outItem{"message", "msg_fake_" + seq})
	}
	return out
}

// appendItem appends an item as response.output_item.added carries it (done false: in progress, without
// its text) or as it is finally (done true).
func (it outItem) appendItem(b []byte, ans *responseAnswer, done bool) []byte {
	status := "in_progress"
	if done {
		status = "completed"
		if ans.incomplete {
			status = "incomplete"
		}
	}
	b = append(b, `{"id":"`...)
	b = append(b, it.id...)
	switch it.typ {
	case "reasoning":
		b = append(b, `","type":"reasoning","summary":[`...)
		if done {
			b = append(b, `{"type":"summary_text","text":`...)
			b = appendJSONString(b, ans.reasoning)
			b = append(b, '}')
		}
		return append(b, "]}"...)
	case "function_call":
		b = append(b, `","type":"function_call","status":"`...)
		b = append(b, status...)
		b = append(b, `","arguments":`...)
		if done {
			b = append(b, toolArgsJSON...)
		} else {
			b = append(b, `""`...)
		}
		b = append(b, `,"call_id":"call_fake_`...)
		b = strconv.AppendInt(b, ans.seq, 10)
		return append(b, `","name":"`+toolName+`"}`...)
	}
	b = append(b, `","type":"message","status":"`...)
	b = append(b, status...)
	b = append(b, `","content":[`...)
	if done {
		b = ans.appendPart(b, true)
	}
	return append(b, `],"role":"assistant"}`...)
}

func (it outItem) appendDone(b []byte, ans *responseAnswer) []byte {
	return it.appendItem(b, ans, true)
}

// appendPart appends the message's content part: whole, or as response.content_part.added carries it.
func (ans *responseAnswer) appendPart(b []byte, done bool) []byte {
	if ans.refusal != "" {
		b = append(b, `{"type":"refusal","refusal":`...)
		if done {
			return append(appendJSONString(b, ans.refusal), '}')
		}
		return append(b, `""}`...)
	}
	b = append(b, `{"type":"output_text","annotations":[],"logprobs":[],"text":`...)
	if done {
		return append(appendJSONString(b, ans.text), '}')
	}
	return append(b, `""}`...)
}

// buildResponseEvents writes ans as the typed events of a streamed response, in OpenAI's order, ending with
// final as the response of response.completed (or .incomplete, or .failed).
func buildResponseEvents(ev *events, ans *responseAnswer, final []byte) {
	var seq int64
	open := func(typ string) {
		ev.buf = append(ev.buf, "event: "...)
		ev.buf = append(ev.buf, typ...)
		ev.buf = append(ev.buf, "\ndata: {\"type\":\""...)
		ev.buf = append(ev.buf, typ...)
		ev.buf = append(ev.buf, `","sequence_number":`...)
		ev.buf = strconv.AppendInt(ev.buf, seq, 10)
		seq++
	}
	end := func() {
		ev.buf = append(ev.buf, "}\n\n"...)
		ev.markContent()
	}
	at := func(id string, out int) {
		ev.buf = append(ev.buf, `,"item_id":"`...)
		ev.buf = append(ev.buf, id...)
		ev.buf = append(ev.buf, `","output_index":`...)
		ev.buf = strconv.AppendInt(ev.buf, int64(out), 10)
	}
	text := func(typ, id string, out int, indexName string, s string, key string) {
		for _, p := range splitPieces(s, streamPieces) {
			open(typ + ".delta")
			at(id, out)
			if indexName != "" {
				ev.buf = append(ev.buf, `,"`+indexName+`":0`...)
			}
			ev.buf = append(ev.buf, `,"delta":`...)
			ev.buf = appendJSONString(ev.buf, p)
			if typ == "response.output_text" {
				ev.buf = append(ev.buf, `,"logprobs":[]`...)
			}
			end()
		}
		open(typ + ".done")
		at(id, out)
		if indexName != "" {
			ev.buf = append(ev.buf, `,"`+indexName+`":0`...)
		}
		ev.buf = append(ev.buf, `,"`+key+`":`...)
		ev.buf = appendJSONString(ev.buf, s)
		if typ == "response.output_text" {
			ev.buf = append(ev.buf, `,"logprobs":[]`...)
		}
		end()
	}
	for _, typ := range []string{"response.created", "response.in_progress"} {
		open(typ)
		ev.buf = append(ev.buf, `,"response":`...)
		ev.buf = appendResponse(ev.buf, ans, "in_progress")
		end()
	}
	for out, it := range ans.items() {
		open("response.output_item.added")
		ev.buf = append(ev.buf, `,"output_index":`...)
		ev.buf = strconv.AppendInt(ev.buf, int64(out), 10)
		ev.buf = append(ev.buf, `,"item":`...)
		ev.buf = it.appendItem(ev.buf, ans, false)
		end()
		switch it.typ {
		case "reasoning":
			open("response.reasoning_summary_part.added")
			at(it.id, out)
			ev.buf = append(ev.buf, `,"summary_index":0,"part":{"type":"summary_text","text":""}`...)
			end()
			text("response.reasoning_summary_text", it.id, out, "summary_index", ans.reasoning, "text")
			open("response.reasoning_summary_part.done")
			at(it.id, out)
			ev.buf = append(ev.buf, `,"summary_index":0,"part":{"type":"summary_text","text":`...)
			ev.buf = append(appendJSONString(ev.buf, ans.reasoning), '}')
			end()
		case "function_call":
			for _, p := range splitPieces(toolArgs, 4) {
				open("response.function_call_arguments.delta")
				at(it.id, out)
				ev.buf = append(ev.buf, `,"delta":`...)
				ev.buf = appendJSONString(ev.buf, p)
				end()
			}
			open("response.function_call_arguments.done")
			at(it.id, out)
			ev.buf = append(ev.buf, `,"name":"`+toolName+`","arguments":`...)
			ev.buf = append(ev.buf, toolArgsJSON...)
			end()
		case "message":
			open("response.content_part.added")
			at(it.id, out)
			ev.buf = append(ev.buf, `,"content_index":0,"part":`...)
			ev.buf = ans.appendPart(ev.buf, false)
			end()
			if ans.refusal != "" {
				text("response.refusal", it.id, out, "content_index", ans.refusal, "refusal")
			} else {
				text("response.output_text", it.id, out, "content_index", ans.text, "text")
			}
			open("response.content_part.done")
			at(it.id, out)
			ev.buf = append(ev.buf, `,"content_index":0,"part":`...)
			ev.buf = ans.appendPart(ev.buf, true)
			end()
		}
		open("response.output_item.done")
		ev.buf = append(ev.buf, `,"output_index":`...)
		ev.buf = strconv.AppendInt(ev.buf, int64(out), 10)
		ev.buf = append(ev.buf, `,"item":`...)
		ev.buf = it.appendDone(ev.buf, ans)
		end()
	}
	switch {
	case ans.errorEv:
		open("error")
		ev.buf = append(ev.buf, `,"code":"server_error","message":"fake error","param":null}`+"\n\n"...)
		ev.mark()
		return
	case ans.fail:
		open("response.failed")
	case ans.incomplete:
		open("response.incomplete")
	default:
		open("response.completed")
	}
	ev.buf = append(ev.buf, `,"response":`...)
	ev.buf = append(ev.buf, final...)
	ev.buf = append(ev.buf, "}\n\n"...)
	ev.mark()
}
