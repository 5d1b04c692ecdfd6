package pipeline

import "testing"

// TestCheckResponse: what makes a Responses answer worth storing.
func TestCheckResponse(t *testing.T) {
	for _, c := range []struct {
		body          string
		valid, useful bool
		tokens        int64
	}{
		{`{"id":"r","status":"completed","output":[{"type":"message"}],"usage":{"total_tokens":7}}`, true, true, 7},
		{`{"id":"r","status":"incomplete","output":[{"type":"message"}]}`, true, true, 0},
		{` {"id":"r","output":[ {} ]}`, true, true, 0}, // a server that leaves status out
		{`{"id":"r","status":"completed","output":[ ]}`, true, false, 0},
		{`{"id":"r","status":"completed"}`, true, false, 0},
		{`{"id":"r","status":"failed","output":[{"type":"message"}]}`, true, false, 0},
		{`{"id":"r","status":"queued","output":[]}`, true, false, 0},
		{`{"id":"r","status":"cancelled","output":[{}]}`, true, false, 0},
		{`{"id":"r","status":"in_progress","output":[{}]}`, true, false, 0},
		{`[{"output":[{}]}]`, false, false, 0},
		{`not json`, false, false, 0},
	} {
		valid, useful, tokens := checkAnswer(KindResponses, []byte(c.body))
		if valid != c.valid || useful != c.useful || tokens != c.tokens {
			t.Errorf("%s: valid %v useful %v tokens %d, want %v %v %d", c.body, valid, useful, tokens, c.valid, c.useful, c.tokens)
		}
	}
	if id := responseID([]byte(`{"object":"response","id":"resp_1"}`)); id != "resp_1" {
		t.Errorf("responseID = %q", id)
	}
}

// TestStreamEnd: the event a stream ends with, held back until its answer is stored, by route.
func TestStreamEnd(t *testing.T) {
	for _, c := range []struct {
		k    Kind
		ev   string
		want bool
	}{
		{KindChat, "data: [DONE]\n\n", true},
		{KindChat, "data: {\"choices\":[]}\n\n", false},
		{KindResponses, "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n", true},
		{KindResponses, "event: response.incomplete\ndata: {\"type\":\"response.incomplete\",\"response\":{}}\n\n", true},
		{KindResponses, "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{}}\n\n", true},
		{KindResponses, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\"}\n\n", false},
		{KindResponses, "data: [DONE]\n\n", false},
	} {
		if got := isStreamEnd(c.k, []byte(c.ev)); got != c.want {
			t.Errorf("%v %q: %v, want %v", c.k, c.ev, got, c.want)
		}
	}
}
