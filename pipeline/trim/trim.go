// Package trim drops the oldest turns of an OpenAI chat-completions request so that its prompt fits
// a model's context window, with the output reserve left free.
//
// # Counting
//
// Tokens are counted with the model family's BPE vocabulary (o200k_base or cl100k_base, embedded in
// the binary by tiktoken-go-loader), and messages as the OpenAI cookbook "How to count tokens with
// tiktoken" counts them: every message costs 3 tokens of framing plus the tokens of its role and
// content, a name costs 1 more plus its own tokens, and the reply priming costs 3 once per request.
// That reproduces the API's figures for plain text messages (129 prompt tokens for the cookbook's
// example with cl100k_base, 124 with o200k_base). The rest is an approximation:
//   - content parts: "text" and "input_text" parts count their text, "refusal" parts their refusal,
//     any other part (image, audio, file) a flat 85 tokens, a low-detail image's cost, which errs
//     low for high-detail images, audio and files;
//   - each tool call and legacy function_call counts its name and arguments (or a custom tool's
//     input) plus 8 tokens of framing, an estimate chosen high; tool_call_id, refusal and
//     reasoning_content count as text;
//   - tools and legacy functions definitions count once per request as the tokens of their raw
//     JSON text: more than the API's compact rendering of the same schemas.
//
// The pre-tokenizer is a hand-written transcription of tiktoken's regular expressions (see
// pretoken.go), which makes counting ~35x faster than tiktoken-go on English and ~3x on CJK text;
// counts agree with tiktoken-go v0.1.8 token for token, invalid UTF-8 included (each bad byte
// counts as U+FFFD, as in tiktoken-go).
//
// # Trimming
//
// Messages are only cut at message boundaries, so no character is ever split. Kept always: every
// system and developer message where it stands, the last message, and, when the last message is a
// tool result, the assistant message that called it with all of that call's results. Then turns
// are taken from the newest backwards while they fit, stopping at the first that does not, so the
// kept history is contiguous. A turn is one message, or an assistant message with tool_calls
// together with every tool result answering it: they are kept or dropped as a whole.
package trim

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	json "github.com/goccy/go-json"
)

// ErrOverflow is returned, wrapped with the figures, when the messages that must be kept do not
// fit: no trimming can make the request fit the model.
var ErrOverflow = errors.New("prompt does not fit the context window")

// Options configure one Trim call.
type Options struct {
	// MaxContextTokens is the model's context window in tokens; it must be positive.
	MaxContextTokens int
	// ReserveOutputTokens is kept free for the answer. 0 takes the request's
	// max_completion_tokens, else its max_tokens, else reserves nothing.
	ReserveOutputTokens int
	// Tokenizer counts tokens; nil means o200k_base.
	Tokenizer *Tokenizer
}

// Result is what Trim decided.
type Result struct {
	// Body is the request to send upstream: the input slice itself when nothing was dropped,
	// else a new slice in which only the messages array differs.
	Body []byte
	// Dropped is the number of messages removed.
	Dropped int
	// PromptTokens is the counted size of the kept prompt, tool definitions and priming included.
	PromptTokens int
	// Budget is MaxContextTokens minus the output reserve.
	Budget int
}

// Trim returns body with the oldest turns removed until its prompt fits opt's budget. It reads
// body and never changes it; it is safe to call from many goroutines at once. A malformed body
// (or one whose messages field is not an array of objects) is an error but not ErrOverflow.
func Trim(body []byte, opt Options) (Result, error) {
	if opt.MaxContextTokens <= 0 || opt.ReserveOutputTokens < 0 {
		return Result{}, fmt.Errorf("cannot trim: MaxContextTokens %d and ReserveOutputTokens %d, want > 0 and >= 0",
			opt.MaxContextTokens, opt.ReserveOutputTokens)
	}
	tok := opt.Tokenizer
	if tok == nil {
		var err error
		if tok, err = NewTokenizer(""); err != nil {
			return Result{}, err
		}
	}
	f, err := scanTop(body)
	if err != nil {
		return Result{}, fmt.Errorf("cannot trim: %w", err)
	}
	if !f.messages.present() {
		return Result{}, errors.New("cannot trim: the request has no messages")
	}
	reserve := opt.ReserveOutputTokens
	if reserve == 0 {
		if reserve, err = requestReserve(body, f, opt.MaxContextTokens); err != nil {
			return Result{}, err
		}
	}
	budget := opt.MaxContextTokens - reserve

	spans, msgs, err := decodeMessages(body, f.messages)
	if err != nil {
		return Result{}, err
	}

	// Everything that must be kept is counted first; the history is counted lazily below, newest
	// first, so that a long chat trimmed to a small window only tokenizes what it keeps.
	cost := replyPriming
	for _, s := range []span{f.tools, f.functions} {
		if s.present() && body[s.start] != 'n' { // null
			cost += tok.Count(string(body[s.start:s.end]))
		}
	}
	ts := newTurns(msgs)
	count := func(i int) (int, error) {
		k := tok.memo.key(body[spans[i].start:spans[i].end])
		if n, ok := tok.memo.get(k); ok {
			return n, nil
		}
		n, err := tok.countMessage(&msgs[i])
		if err != nil {
			return 0, fmt.Errorf("cannot trim: message %d: %w", i, err)
		}
		tok.memo.put(k, n)
		return n, nil
	}
	for i := range msgs {
		if msgs[i].pinned() || i >= ts.tail {
			n, err := count(i)
			if err != nil {
				return Result{}, err
			}
			cost += n
		}
	}
	if cost > budget {
		return Result{}, fmt.Errorf("%w: %d tokens of system and developer messages, last turn and tool definitions; budget %d (%d window - %d output reserve)",
			ErrOverflow, cost, budget, opt.MaxContextTokens, reserve)
	}

	// Walk the history down from the tail; cut is the lowest boundary reached with whole turns.
	cut, kept := ts.tail, cost
	for i := ts.tail - 1; i >= 0; i-- {
		if !msgs[i].pinned() {
			n, err := count(i)
			if err != nil {
				return Result{}, err
			}
			if cost+n > budget {
				break
			}
			cost += n
		}
		if ts.boundary(i) {
			cut, kept = i, cost
		}
	}

	dropped := 0
	for i := range cut {
		if !msgs[i].pinned() {
			dropped++
		}
	}
	res := Result{Body: body, Dropped: dropped, PromptTokens: kept, Budget: budget}
	if dropped > 0 {
		res.Body = splice(body, f.messages, spans, func(i int) bool { return i >= cut || msgs[i].pinned() })
	}
	return res, nil
}

// decodeMessages returns the spans of the messages array at s and the messages decoded.
func decodeMessages(body []byte, s span) ([]span, []message, error) {
	spans, err := elements(body, s)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot trim: %w", err)
	}
	msgs := make([]message, len(spans))
	for i, s := range spans {
		if body[s.start] != '{' {
			return nil, nil, fmt.Errorf("cannot trim: message %d is not an object", i)
		}
		if err := json.Unmarshal(body[s.start:s.end], &msgs[i]); err != nil {
			return nil, nil, fmt.Errorf("cannot trim: message %d: %w", i, err)
		}
	}
	return spans, msgs, nil
}

// splice returns a copy of body whose array at s holds only the kept elements, each with its
// bytes unchanged; every byte outside the array is copied as it is.
func splice(body []byte, s span, elems []span, keep func(int) bool) []byte {
	out := make([]byte, 0, len(body))
	out = append(out, body[:s.start]...)
	out = append(out, '[')
	first := true
	for i, e := range elems {
		if !keep(i) {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		out = append(out, body[e.start:e.end]...)
		first = false
	}
	out = append(out, ']')
	return append(out, body[s.end:]...)
}

// turns knows which message boundaries a cut may fall on.
type turns struct {
	// straddled[p] > 0 when some turn has messages on both sides of boundary p (between messages
	// p-1 and p): cutting there would separate a tool call from one of its results.
	straddled []int
	// tail is the lowest boundary above which everything is kept: the last message's turn, moved
	// down until no turn straddles it.
	tail int
}

func newTurns(msgs []message) turns {
	n := len(msgs)
	// first[i] is the first message of i's turn: the calling assistant message for a tool result
	// whose tool_call_id one of the preceding assistant messages issued (the nearest one), else i.
	first := make([]int, n)
	last := make([]int, n) // last[j]: the last message of the turn starting at j
	callers := make(map[string]int)
	for i := range msgs {
		m := &msgs[i]
		first[i], last[i] = i, i
		switch m.Role {
		case "tool":
			if j, ok := callers[m.ToolCallID]; ok && m.ToolCallID != "" {
				first[i], last[j] = j, i
			}
		case "assistant":
			for _, c := range m.ToolCalls {
				callers[c.ID] = i
			}
		}
	}
	// Prefix sums over +1 at first+1 and -1 at last+1 give, at each boundary, the number of turns
	// it cuts through.
	straddled := make([]int, n+2)
	for j := range n {
		if last[j] > j {
			straddled[j+1]++
			straddled[last[j]+1]--
		}
	}
	for p := 1; p <= n; p++ {
		straddled[p] += straddled[p-1]
	}
	t := turns{straddled: straddled, tail: n}
	if n > 0 && !msgs[n-1].pinned() {
		t.tail = first[n-1]
		for !t.boundary(t.tail) {
			t.tail--
		}
	}
	return t
}

// boundary reports whether the history may start at message p: no turn is split there.
func (t turns) boundary(p int) bool { return t.straddled[p] == 0 }

// requestReserve reads the output reserve from the request: max_completion_tokens, else
// max_tokens, capped at window (beyond it nothing fits anyway).
func requestReserve(body []byte, f fields, window int) (int, error) {
	for _, s := range []span{f.maxCompletionTokens, f.maxTokens} {
		if !s.present() || body[s.start] == 'n' { // absent or null
			continue
		}
		v, err := strconv.ParseFloat(string(body[s.start:s.end]), 64)
		if err != nil {
			return 0, fmt.Errorf("cannot trim: output token limit %s is not a number", body[s.start:s.end])
		}
		if v > 0 {
			return int(math.Ceil(min(v, float64(window)))), nil
		}
	}
	return 0, nil
}
