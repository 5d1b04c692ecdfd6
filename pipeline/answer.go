package pipeline

import (
	"bytes"

	json "github.com/goccy/go-json"
)

// answerShape is the part of an upstream answer that decides whether it is worth storing.
type answerShape struct {
	Choices []struct {
		Message *struct {
			Content      valueFacts `json:"content"`
			ToolCalls    valueFacts `json:"tool_calls"`
			FunctionCall valueFacts `json:"function_call"`
			Refusal      valueFacts `json:"refusal"`
			Audio        valueFacts `json:"audio"`
		} `json:"message"`
		Text     valueFacts `json:"text"`
		Logprobs valueFacts `json:"logprobs"`
	} `json:"choices"`
	Data  valueFacts   `json:"data"`
	Usage *answerUsage `json:"usage"`
}

// valueFacts is what checkAnswer asks of a JSON value, noted as it is decoded. A json.RawMessage field
// would copy the value instead: the whole text of every answer, on every miss.
type valueFacts struct {
	present, nonEmptyString, nonEmptyArray bool
}

func (f *valueFacts) UnmarshalJSON(raw []byte) error {
	f.present, f.nonEmptyString, f.nonEmptyArray = present(raw), nonEmptyString(raw), nonEmptyArray(raw)
	return nil
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
		return true, a.Data.nonEmptyArray, tokens
	}
	for _, c := range a.Choices {
		if c.Logprobs.present || c.Text.nonEmptyString {
			return true, true, tokens
		}
		if m := c.Message; m != nil {
			// Content given as an array of parts counts when it has any part.
			if m.Content.nonEmptyString || m.Content.nonEmptyArray || m.Refusal.nonEmptyString || m.FunctionCall.present ||
				m.Audio.present || m.ToolCalls.nonEmptyArray {
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
