package pipeline

import "testing"

// TestCheckAnswer: which 200 answers are valid JSON, which carry an answer worth storing, and the tokens
// they say they spent, for each shape an OpenAI-compatible server answers with.
func TestCheckAnswer(t *testing.T) {
	for _, c := range []struct {
		name          string
		kind          Kind
		body          string
		valid, useful bool
		tokens        int64
	}{
		{"content", KindChat, `{"choices":[{"message":{"role":"assistant","content":"Hi"}}],"usage":{"total_tokens":7}}`, true, true, 7},
		{"indented content", KindChat, "{\n  \"choices\": [\n    {\n      \"message\": {\n        \"content\": \"Hi\"\n      }\n    }\n  ]\n}", true, true, 0},
		{"empty content", KindChat, `{"choices":[{"message":{"content":""}}]}`, true, false, 0},
		{"null content", KindChat, `{"choices":[{"message":{"content":null}}]}`, true, false, 0},
		{"content parts", KindChat, `{"choices":[{"message":{"content":[{"type":"text","text":"x"}]}}]}`, true, true, 0},
		{"no content parts", KindChat, `{"choices":[{"message":{"content":[ ]}}]}`, true, false, 0},
		{"tool calls", KindChat, `{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c1"}]}}]}`, true, true, 0},
		{"no tool calls", KindChat, `{"choices":[{"message":{"content":null,"tool_calls":[]}}]}`, true, false, 0},
		{"refusal", KindChat, `{"choices":[{"message":{"content":null,"refusal":"no"}}]}`, true, true, 0},
		{"function call", KindChat, `{"choices":[{"message":{"function_call":{"name":"f"}}}]}`, true, true, 0},
		{"null function call", KindChat, `{"choices":[{"message":{"function_call":null}}]}`, true, false, 0},
		{"audio", KindChat, `{"choices":[{"message":{"audio":{"id":"a"}}}]}`, true, true, 0},
		{"second choice", KindChat, `{"choices":[{"message":{"content":""}},{"message":{"content":"b"}}]}`, true, true, 0},
		{"null message", KindChat, `{"choices":[{"message":null}]}`, true, false, 0},
		{"no choices", KindChat, `{"choices":[]}`, true, false, 0},
		{"completion text", KindCompletion, `{"choices":[{"text":" yes"}],"usage":{"total_tokens":3}}`, true, true, 3},
		{"empty completion", KindCompletion, `{"choices":[{"text":""}]}`, true, false, 0},
		{"logprobs only", KindCompletion, `{"choices":[{"text":"","logprobs":{"tokens":["a"]}}]}`, true, true, 0},
		{"null logprobs", KindCompletion, `{"choices":[{"text":"","logprobs":null}]}`, true, false, 0},
		{"embeddings", KindEmbedding, `{"data":[{"embedding":[0.1]}],"usage":{"total_tokens":2}}`, true, true, 2},
		{"no embeddings", KindEmbedding, `{"data":[]}`, true, false, 0},
		{"not JSON", KindChat, `{"choices":[`, false, false, 0},
		{"not an object", KindChat, `"text"`, false, false, 0},
	} {
		valid, useful, tokens := checkAnswer(c.kind, []byte(c.body))
		if valid != c.valid || useful != c.useful || tokens != c.tokens {
			t.Errorf("%s: valid %v useful %v tokens %d, want %v %v %d", c.name, valid, useful, tokens, c.valid, c.useful, c.tokens)
		}
	}
}
