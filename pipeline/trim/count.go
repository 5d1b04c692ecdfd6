package trim

import (
	"fmt"

	json "github.com/goccy/go-json"
)

// Counting constants; see the package comment for how they combine.
const (
	// tokensPerMessage frames every message (<|start|>, <|message|>, <|end|>), tokensPerName is
	// the extra token a name costs and replyPriming is <|start|>assistant<|message|>, added once:
	// the OpenAI cookbook's figures for gpt-4, gpt-3.5-turbo and gpt-4o.
	tokensPerMessage = 3
	tokensPerName    = 1
	replyPriming     = 3

	// tokensPerCall frames one tool or function call in an assistant message (its recipient and
	// format markers). OpenAI publishes no figure for calls; 8 is an estimate chosen high (a whole
	// message's framing is 3) so that a trimmed prompt errs toward fitting.
	tokensPerCall = 8

	// nonTextPartTokens is what an image, audio or file part counts: 85, the cost of an image at
	// "detail": "low". High-detail images (170 per 512 px tile) and audio cost more; they are not
	// estimated because the size is unknown without decoding the media.
	nonTextPartTokens = 85
)

// message holds the fields of a chat message that count or decide what must be kept together.
type message struct {
	Role             string          `json:"role"`
	Name             *string         `json:"name"`
	Content          json.RawMessage `json:"content"`
	ToolCalls        []toolCall      `json:"tool_calls"`
	FunctionCall     *call           `json:"function_call"`
	ToolCallID       string          `json:"tool_call_id"`
	Refusal          string          `json:"refusal"`
	ReasoningContent string          `json:"reasoning_content"`
}

type toolCall struct {
	ID       string `json:"id"`
	Function call   `json:"function"`
	Custom   call   `json:"custom"` // custom tools carry free text in input
}

type call struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	Input     string `json:"input"`
}

// part is one element of an array content.
type part struct {
	Type    string `json:"type"`
	Text    string `json:"text"`
	Refusal string `json:"refusal"`
}

// pinned reports whether the message is kept wherever it stands.
func (m *message) pinned() bool { return m.Role == "system" || m.Role == "developer" }

// countMessage returns the tokens one message adds to the prompt.
func (t *Tokenizer) countMessage(m *message) (int, error) {
	n := tokensPerMessage + t.Count(m.Role)
	if m.Name != nil {
		n += tokensPerName + t.Count(*m.Name)
	}
	c, err := t.countContent(m.Content)
	if err != nil {
		return 0, err
	}
	n += c
	for _, tc := range m.ToolCalls {
		n += tokensPerCall + t.countCall(&tc.Function) + t.countCall(&tc.Custom)
	}
	if m.FunctionCall != nil {
		n += tokensPerCall + t.countCall(m.FunctionCall)
	}
	return n + t.Count(m.ToolCallID) + t.Count(m.Refusal) + t.Count(m.ReasoningContent), nil
}

// countCall counts the text of a call; a tool call fills either function or custom, not both.
func (t *Tokenizer) countCall(c *call) int {
	return t.Count(c.Name) + t.Count(c.Arguments) + t.Count(c.Input)
}

func (t *Tokenizer) countContent(raw json.RawMessage) (int, error) {
	if len(raw) == 0 {
		return 0, nil
	}
	switch raw[0] {
	case 'n': // null: an assistant message that only calls tools
		return 0, nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("cannot read content: %w", err)
		}
		return t.Count(s), nil
	case '[':
		var parts []part
		if err := json.Unmarshal(raw, &parts); err != nil {
			return 0, fmt.Errorf("cannot read content parts: %w", err)
		}
		n := 0
		for _, p := range parts {
			switch p.Type {
			case "text", "input_text":
				n += t.Count(p.Text)
			case "refusal":
				n += t.Count(p.Refusal)
			default:
				n += nonTextPartTokens
			}
		}
		return n, nil
	}
	return 0, fmt.Errorf("content is neither a string, an array nor null")
}
