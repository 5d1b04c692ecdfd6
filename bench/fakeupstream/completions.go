package fakeupstream

import (
	"errors"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
)

type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	N             *int            `json:"n"`
	Echo          bool            `json:"echo"`
	Logprobs      *int            `json:"logprobs"`
	MaxTokens     *int            `json:"max_tokens"` // pseudo tokens generated at most; 0 with echo: the prompt alone
}

// prompt is one decoded prompt: its text and its token count.
type prompt struct {
	text   string
	tokens int
}

var errBadInput = errors.New("bad input")

// decodePrompts accepts a string, a list of strings, a list of token ids or a
// list of token id lists. Token ids become their decimal values separated by
// spaces, so that each id is one pseudo token.
func decodePrompts(raw json.RawMessage) ([]prompt, error) {
	items, err := decodeTextOrTokens(raw)
	if err != nil {
		return nil, err
	}
	out := make([]prompt, len(items))
	for i, it := range items {
		if it.ids != nil {
			var sb strings.Builder
			for j, id := range it.ids {
				if j > 0 {
					sb.WriteByte(' ')
				}
				sb.WriteString(strconv.FormatInt(id, 10))
			}
			out[i] = prompt{text: sb.String(), tokens: len(it.ids)}
		} else {
			out[i] = prompt{text: it.text, tokens: countWords(it.text)}
		}
	}
	return out, nil
}

// textOrTokens is one item of an input that may be text or token ids.
type textOrTokens struct {
	text string
	ids  []int64 // non-nil for token arrays
}

// decodeTextOrTokens decodes string | []string | []int | [][]int. Empty
// strings, empty lists and other types are errors.
func decodeTextOrTokens(raw json.RawMessage) ([]textOrTokens, error) {
	raw = trimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errBadInput
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || s == "" {
			return nil, errBadInput
		}
		return []textOrTokens{{text: s}}, nil
	case '[':
	default:
		return nil, errBadInput
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil || len(elems) == 0 {
		return nil, errBadInput
	}
	first := trimSpace(elems[0])
	if len(first) == 0 {
		return nil, errBadInput
	}
	switch first[0] {
	case '"':
		var ss []string
		if err := json.Unmarshal(raw, &ss); err != nil {
			return nil, errBadInput
		}
		out := make([]textOrTokens, len(ss))
		for i, s := range ss {
			if s == "" {
				return nil, errBadInput
			}
			out[i].text = s
		}
		return out, nil
	case '[':
		var lists [][]int64
		if err := json.Unmarshal(raw, &lists); err != nil {
			return nil, errBadInput
		}
		out := make([]textOrTokens, len(lists))
		for i, l := range lists {
			if len(l) == 0 {
				return nil, errBadInput
			}
			out[i].ids = l
		}
		return out, nil
	default:
		var ids []int64
		if err := json.Unmarshal(raw, &ids); err != nil {
			return nil, errBadInput
		}
		return []textOrTokens{{ids: ids}}, nil
	}
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

type completionChoice struct {
	text   string // full text of the choice (prompt included when echo)
	gen    int    // completion tokens
	index  int
	finish string // "stop", or "length" when max_tokens cut the generated text
}

// firstTokens is the first k pseudo tokens of s (see tokens).
func firstTokens(s string, k int) string {
	if k <= 0 {
		return ""
	}
	for i := 1; i < len(s); i++ {
		if s[i] == ' ' && s[i-1] != ' ' {
			if k--; k == 0 {
				return s[:i]
			}
		}
	}
	return s
}

// handleCompletions serves the legacy POST /v1/completions. It reports
// whether a stream took over the in-flight accounting.
func (s *Server) handleCompletions(ctx *fasthttp.RequestCtx, rc reqControls) bool {
	var req completionRequest
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
	prompts, err := decodePrompts(req.Prompt)
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "Invalid 'prompt': expected a non-empty string, array of strings, array of tokens, or array of token arrays.",
			"invalid_request_error", "prompt", "invalid_value")
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
	logprobs := -1
	if req.Logprobs != nil {
		logprobs = *req.Logprobs
		if logprobs < 0 || logprobs > 5 {
			writeError(ctx, fasthttp.StatusBadRequest, "Invalid 'logprobs': must be between 0 and 5.",
				"invalid_request_error", "logprobs", "invalid_value")
			return false
		}
	}
	maxTokens := -1 // no limit
	if req.MaxTokens != nil {
		if maxTokens = *req.MaxTokens; maxTokens < 0 {
			writeError(ctx, fasthttp.StatusBadRequest, "Invalid 'max_tokens': must be 0 or more.",
				"invalid_request_error", "max_tokens", "invalid_value")
			return false
		}
	}

	// Choices are prompt-major: prompt i's n choices have indexes i*n to i*n+n-1.
	choices := make([]completionChoice, 0, len(prompts)*n)
	promptTokens, genTokens := 0, 0
	for _, p := range prompts {
		promptTokens += p.tokens
		gen, g := s.answerText(p.text)
		finish := "stop"
		if maxTokens >= 0 && g > maxTokens {
			gen, g, finish = firstTokens(gen, maxTokens), maxTokens, "length"
		}
		text := gen
		if req.Echo {
			// The generated part starts a pseudo token of its own, so that an echoed answer has one logprob
			// per prompt token and one per generated token, as lm-evaluation-harness counts them.
			text = p.text
			if gen != "" {
				text += " " + gen
			}
		}
		for j := 0; j < n; j++ {
			choices = append(choices, completionChoice{text: text, gen: g, index: len(choices), finish: finish})
			genTokens += g
		}
	}

	if !s.sleep(rc.delay) {
		closingAnswer(ctx)
		return false
	}
	seq := s.seq.Add(1)
	created := time.Now().Unix()
	lp := completionLogprobs{k: logprobs, echo: req.Echo}

	if req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		ev := getEvents()
		buildCompletionEvents(ev, choices, lp, req.Model, seq, created, promptTokens, genTokens, includeUsage)
		s.stream(ctx, ev, rc)
		return true
	}

	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"id":"cmpl-fake-`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `","object":"text_completion","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, req.Model)
	b = append(b, `,"choices":[`...)
	for i := range choices {
		if i > 0 {
			b = append(b, ',')
		}
		c := &choices[i]
		b = appendCompletionChoice(b, c.text, c.index, lp.k, lp.echo, 0, c.finish)
	}
	b = append(b, `],"usage":`...)
	b = appendUsage(b, promptTokens, genTokens)
	b = append(b, '}')
	ctx.Response.Header.SetContentTypeBytes(ctJSON)
	ctx.SetBody(b)
	putBuf(bp, b)
	return false
}

// completionLogprobs says whether and how logprobs are returned.
type completionLogprobs struct {
	k    int // -1: none; else number of top_logprobs entries (0..5)
	echo bool
}

// appendCompletionChoice appends one choice. k < 0 gives "logprobs":null;
// nullFirst and off are passed to appendLogprobs.
func appendCompletionChoice(b []byte, text string, index int, k int, nullFirst bool, off int, finish string) []byte {
	b = append(b, `{"text":`...)
	b = appendJSONString(b, text)
	b = append(b, `,"index":`...)
	b = strconv.AppendInt(b, int64(index), 10)
	b = append(b, `,"logprobs":`...)
	if k < 0 {
		b = append(b, "null"...)
	} else {
		b = appendLogprobs(b, text, k, nullFirst, off)
	}
	b = append(b, `,"finish_reason":`...)
	if finish == "" {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = append(b, finish...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// appendLogprobs appends a legacy logprobs object for text split into
// pseudo tokens. With nullFirst the first token has null logprobs, as OpenAI
// reports for the first echoed prompt token. Text offsets start at off.
func appendLogprobs(b []byte, text string, k int, nullFirst bool, off int) []byte {
	toks := tokens(text)
	b = append(b, `{"tokens":[`...)
	for i, t := range toks {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, t)
	}
	b = append(b, `],"token_logprobs":[`...)
	for i, t := range toks {
		if i > 0 {
			b = append(b, ',')
		}
		if i == 0 && nullFirst {
			b = append(b, "null"...)
			continue
		}
		b = appendMilli(b, tokenLogprobMilli(t))
	}
	b = append(b, `],"top_logprobs":[`...)
	for i, t := range toks {
		if i > 0 {
			b = append(b, ',')
		}
		if i == 0 && nullFirst {
			b = append(b, "null"...)
			continue
		}
		b = append(b, '{')
		lpv := tokenLogprobMilli(t)
		for j := 0; j < k; j++ {
			if j > 0 {
				b = append(b, ',')
			}
			if j == 0 {
				b = appendJSONString(b, t)
			} else {
				b = appendJSONString(b, t+"~"+strconv.Itoa(j))
			}
			b = append(b, ':')
			b = appendMilli(b, lpv-1000*int64(j))
		}
		b = append(b, '}')
	}
	b = append(b, `],"text_offset":[`...)
	for i, t := range toks {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(off), 10)
		off += len(t)
	}
	return append(b, "]}"...)
}

func buildCompletionEvents(ev *events, choices []completionChoice, lp completionLogprobs, model string, seq, created int64, promptTokens, genTokens int, includeUsage bool) {
	var head []byte
	head = append(head, `data: {"id":"cmpl-fake-`...)
	head = strconv.AppendInt(head, seq, 10)
	head = append(head, `","object":"text_completion","created":`...)
	head = strconv.AppendInt(head, created, 10)
	head = append(head, `,"model":`...)
	head = appendJSONString(head, model)
	head = append(head, `,"choices":[`...)
	tail := "]}\n\n"
	if includeUsage {
		tail = `],"usage":null}` + "\n\n"
	}

	pieces := make([][]string, len(choices))
	most := 0
	for i := range choices {
		pieces[i] = splitPieces(choices[i].text, streamPieces)
		most = max(most, len(pieces[i]))
	}
	offs := make([]int, len(choices))
	for j := 0; j < most; j++ {
		for i := range choices {
			if j >= len(pieces[i]) {
				continue
			}
			p := pieces[i][j]
			ev.buf = append(ev.buf, head...)
			ev.buf = appendCompletionChoice(ev.buf, p, choices[i].index, lp.k, lp.echo && j == 0, offs[i], "")
			ev.buf = append(ev.buf, tail...)
			ev.markContent()
			offs[i] += len(p)
		}
	}
	for i := range choices {
		ev.buf = append(ev.buf, head...)
		ev.buf = appendCompletionChoice(ev.buf, "", choices[i].index, -1, false, 0, choices[i].finish)
		ev.buf = append(ev.buf, tail...)
		ev.mark()
	}
	if includeUsage {
		ev.buf = append(ev.buf, head[:len(head)-1]...)
		ev.buf = append(ev.buf, `[],"usage":`...)
		ev.buf = appendUsage(ev.buf, promptTokens, genTokens)
		ev.buf = append(ev.buf, "}\n\n"...)
		ev.mark()
	}
	ev.addDone()
}
