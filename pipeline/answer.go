package pipeline

import (
	"bytes"

	json "github.com/goccy/go-json"
)

// answerShape is the part of an upstream answer that decides whether it is worth storing.
type answerShape struct {
	Choices []struct {
		Message *struct {
			Content      json.RawMessage `json:"content"`
			ToolCalls    json.RawMessage `json:"tool_calls"`
			FunctionCall json.RawMessage `json:"function_call"`
			Refusal      json.RawMessage `json:"refusal"`
			Audio        json.RawMessage `json:"audio"`
		} `json:"message"`
		Text     json.RawMessage `json:"text"`
		Logprobs json.RawMessage `json:"logprobs"`
	} `json:"choices"`
	Data  json.RawMessage `json:"data"`
	Usage *answerUsage    `json:"usage"`
}

type answerUsage struct {
	TotalTokens int64 `json:"total_tokens"`
}

// usageTokens reads usage.total_tokens from a stored answer (0 when it has none), for tokens saved.
func usageTokens(body []byte) int64 {
	var a struct {
		Usage answerUsage `json:"usage"`
	}
	if json.Unmarshal(body, &a) != nil {
		return 0
	}
	return a.Usage.TotalTokens
}

// checkAnswer reports whether a 200 body is JSON at all (valid), whether it carries an answer (useful), and
// the tokens the upstream says it spent (usage.total_tokens; 0 when absent).
// An "empty" answer is never stored: no choices, or choices with no content, no tool calls,
// no refusal and no logprobs. An echo + max_tokens:0 loglikelihood answer has logprobs, so it is kept.
func checkAnswer(kind Kind, body []byte) (valid, useful bool, tokens int64) {
	if kind == KindResponses {
		return checkResponse(body)
	}
	var a answerShape
	if err := json.Unmarshal(body, &a); err != nil {
		return false, false, 0
	}
	if a.Usage != nil {
		tokens = a.Usage.TotalTokens
	}
	if kind == KindEmbedding {
		return true, nonEmptyArray(a.Data), tokens
	}
	for _, c := range a.Choices {
		if present(c.Logprobs) || nonEmptyString(c.Text) {
			return true, true, tokens
		}
		if m := c.Message; m != nil {
			if nonEmptyString(m.Content) || nonEmptyString(m.Refusal) || present(m.FunctionCall) || present(m.Audio) {
				return true, true, tokens
			}
			if nonEmptyArray(m.ToolCalls) {
				return true, true, tokens
			}
			// Content given as an array of parts counts when it has any part.
			if nonEmptyArray(m.Content) {
				return true, true, tokens
			}
		}
	}
	return true, false, tokens
}

func present(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && !bytes.Equal(t, []byte("null"))
}

func nonEmptyString(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 2 && t[0] == '"'
}

// nonEmptyArray reports whether raw is a JSON array with at least one element, however it is spaced.
func nonEmptyArray(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '[' && !isEmptyArray(t)
}
