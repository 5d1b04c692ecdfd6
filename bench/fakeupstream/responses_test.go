package fakeupstream

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

type response struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	Status            string `json:"status"`
	IncompleteDetails *struct {
		Reason string `json:"reason"`
	} `json:"incomplete_details"`
	Model              string  `json:"model"`
	PreviousResponseID *string `json:"previous_response_id"`
	Output             []struct {
		ID        string `json:"id"`
		Type      string `json:"type"`
		Status    string `json:"status"`
		Role      string `json:"role"`
		Name      string `json:"name"`
		CallID    string `json:"call_id"`
		Arguments string `json:"arguments"`
		Summary   []struct {
			Text string `json:"text"`
		} `json:"summary"`
		Content []struct {
			Type    string `json:"type"`
			Text    string `json:"text"`
			Refusal string `json:"refusal"`
		} `json:"content"`
	} `json:"output"`
	Usage *struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

func decodeResponse(t *testing.T, b []byte) response {
	t.Helper()
	var r response
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("not a response: %v: %s", err, b)
	}
	return r
}

func responsesBody(input string, extra string) string {
	b, _ := json.Marshal(input)
	return `{"model":"fake-model","input":` + string(b) + extra + `}`
}

// typed is one typed event: its event: name and data.
type typed struct {
	name string
	data map[string]any
	raw  string
}

// readTyped reads a Responses stream, checking that each event is "event: X" and one data line whose type
// is X and whose sequence_number counts from 0.
func readTyped(t *testing.T, body io.Reader) []typed {
	t.Helper()
	br := bufio.NewReader(body)
	var out []typed
	var lines []string
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF {
			if len(lines) > 0 {
				t.Fatalf("the stream ends inside an event: %q", lines)
			}
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line != "" {
			lines = append(lines, line)
			continue
		}
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "event: ") || !strings.HasPrefix(lines[1], "data: ") {
			t.Fatalf("event %q is not an event line and a data line", lines)
		}
		e := typed{name: strings.TrimPrefix(lines[0], "event: "), raw: strings.TrimPrefix(lines[1], "data: ")}
		if err := json.Unmarshal([]byte(e.raw), &e.data); err != nil {
			t.Fatalf("event data %q: %v", e.raw, err)
		}
		if e.data["type"] != e.name || e.data["sequence_number"] != float64(len(out)) {
			t.Fatalf("event %d: %s carries type %v, sequence_number %v", len(out), e.name, e.data["type"], e.data["sequence_number"])
		}
		out = append(out, e)
		lines = nil
	}
}

func streamResponses(t *testing.T, s *Server, body string, hdr map[string]string) (*http.Response, []typed) {
	t.Helper()
	resp := openStream(t, http.DefaultClient, s.URL()+"/v1/responses", body, hdr)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return resp, readTyped(t, resp.Body)
}

// deltaText joins the delta of every event of type typ.
func deltaText(evs []typed, typ string) string {
	var b strings.Builder
	for _, e := range evs {
		if e.name == typ {
			b.WriteString(e.data["delta"].(string))
		}
	}
	return b.String()
}

func TestResponsesNonStream(t *testing.T) {
	s := start(t, Options{Indent: true})
	r := post(t, s, "/v1/responses", responsesBody("hello there", `,"instructions":"be brief","metadata":{"a": "b"}`))
	if r.status != 200 || !strings.HasPrefix(string(r.body), "{\n  \"id\": \"resp_fake_") || !strings.HasSuffix(string(r.body), "}\n") {
		t.Fatalf("status %d, body not indented as OpenAI's: %s", r.status, r.body)
	}
	resp := decodeResponse(t, r.body)
	if resp.Object != "response" || resp.Status != "completed" || len(resp.Output) != 1 || resp.Output[0].Type != "message" ||
		!strings.HasPrefix(resp.Output[0].Content[0].Text, "echo: hello there ") || resp.Usage == nil || resp.Usage.TotalTokens == 0 {
		t.Fatalf("answer %+v", resp)
	}
	if s.CallsTo(RouteResponses) != 1 {
		t.Fatalf("CallsTo(responses) = %d", s.CallsTo(RouteResponses))
	}

	// Items: the last user text decides; a tool result last is answered.
	tool := decodeResponse(t, post(t, s, "/v1/responses", `{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"TOOL: weather"}]}]}`).body)
	if o := tool.Output; len(o) != 1 || o[0].Type != "function_call" || o[0].Name != "get_weather" || o[0].Arguments != toolArgs || o[0].CallID == "" {
		t.Fatalf("tool answer %+v", tool.Output)
	}
	after := decodeResponse(t, post(t, s, "/v1/responses", `{"model":"m","previous_response_id":"`+tool.ID+`","input":[{"type":"function_call_output","call_id":"`+
		tool.Output[0].CallID+`","output":"sunny"}]}`).body)
	if after.Output[0].Type != "message" || !strings.HasPrefix(after.Output[0].Content[0].Text, "echo: sunny") || *after.PreviousResponseID != tool.ID {
		t.Fatalf("answer to a tool result %+v", after)
	}
	think := decodeResponse(t, post(t, s, "/v1/responses", responsesBody("THINK: why", "")).body)
	if len(think.Output) != 2 || think.Output[0].Type != "reasoning" || think.Output[0].Summary[0].Text != reasoningText {
		t.Fatalf("think answer %+v", think.Output)
	}
	refuse := decodeResponse(t, post(t, s, "/v1/responses", responsesBody("REFUSE it", "")).body)
	if c := refuse.Output[0].Content; len(c) != 1 || c[0].Type != "refusal" || c[0].Refusal != refusalText {
		t.Fatalf("refusal %+v", refuse.Output)
	}
	if e := decodeResponse(t, post(t, s, "/v1/responses", responsesBody("EMPTY", "")).body); len(e.Output) != 0 || e.Status != "completed" {
		t.Fatalf("empty %+v", e)
	}
	if f := decodeResponse(t, post(t, s, "/v1/responses", responsesBody("FAIL", "")).body); f.Status != "failed" || len(f.Output) != 0 {
		t.Fatalf("fail %+v", f)
	}
	short := decodeResponse(t, post(t, s, "/v1/responses", responsesBody("a long answer please", `,"max_output_tokens":3`)).body)
	if short.Status != "incomplete" || short.IncompleteDetails == nil || short.IncompleteDetails.Reason != "max_output_tokens" ||
		short.Output[0].Content[0].Text != "echo: a long" || short.Usage.OutputTokens != 3 {
		t.Fatalf("max_output_tokens 3: %+v %q", short, short.Output[0].Content[0].Text)
	}

	// Errors: no input, an unknown previous response.
	compact := start(t, Options{})
	checkOpenAIError(t, post(t, compact, "/v1/responses", `{"model":"m"}`), 400)
	checkOpenAIError(t, post(t, compact, "/v1/responses", responsesBody("x", `,"previous_response_id":"resp_nope"`)), 404)
}

func TestResponsesByID(t *testing.T) {
	s := start(t, Options{})
	first := post(t, s, "/v1/responses", responsesBody("keep me", ""))
	id := decodeResponse(t, first.body).ID
	got := do(t, http.MethodGet, s.URL()+"/v1/responses/"+id, "", nil)
	if got.status != 200 || string(got.body) != string(first.body) {
		t.Fatalf("GET %s: %d %s", id, got.status, got.body)
	}
	if s.CallsTo(RouteResponseIDs) != 1 {
		t.Fatalf("CallsTo(responses_by_id) = %d", s.CallsTo(RouteResponseIDs))
	}
	del := do(t, http.MethodDelete, s.URL()+"/responses/"+id, "", nil)
	if del.status != 200 || string(del.body) != `{"id":"`+id+`","object":"response","deleted":true}` {
		t.Fatalf("DELETE: %d %s", del.status, del.body)
	}
	checkOpenAIError(t, do(t, http.MethodGet, s.URL()+"/v1/responses/"+id, "", nil), 404)
	checkOpenAIError(t, do(t, http.MethodDelete, s.URL()+"/v1/responses/"+id, "", nil), 404)
	checkOpenAIError(t, do(t, http.MethodPut, s.URL()+"/v1/responses/"+id, "", nil), 405)
	checkOpenAIError(t, do(t, http.MethodGet, s.URL()+"/v1/responses", "", nil), 405)

	notKept := decodeResponse(t, post(t, s, "/v1/responses", responsesBody("forget me", `,"store":false`)).body)
	checkOpenAIError(t, do(t, http.MethodGet, s.URL()+"/v1/responses/"+notKept.ID, "", nil), 404)
}

func TestResponsesStream(t *testing.T) {
	s := start(t, Options{Indent: true})
	for _, c := range []struct {
		input, extra, final string
	}{
		{"stream me please", "", "response.completed"},
		{"THINK: stream", "", "response.completed"},
		{"TOOL: weather", "", "response.completed"},
		{"REFUSE this", "", "response.completed"},
		{"cut me short", `,"max_output_tokens":2`, "response.incomplete"},
		{"FAIL", "", "response.failed"},
	} {
		body := responsesBody(c.input, `,"stream":true`+c.extra)
		_, evs := streamResponses(t, s, body, nil)
		if evs[0].name != "response.created" || evs[1].name != "response.in_progress" || evs[len(evs)-1].name != c.final {
			t.Fatalf("%s: events from %s to %s", c.input, evs[0].name, evs[len(evs)-1].name)
		}
		if strings.Contains(evs[len(evs)-1].raw, "\n") {
			t.Fatalf("%s: a data line holds a newline", c.input)
		}
		// The final response is what the request without "stream" gets, but for its id and time.
		final, _ := json.Marshal(evs[len(evs)-1].data["response"])
		fr := decodeResponse(t, final)
		whole := decodeResponse(t, post(t, s, "/v1/responses", responsesBody(c.input, c.extra)).body)
		fr.ID, whole.ID = "", ""
		for i := range fr.Output {
			fr.Output[i].ID, whole.Output[i].ID, fr.Output[i].CallID, whole.Output[i].CallID = "", "", "", ""
		}
		a, _ := json.Marshal(fr)
		b, _ := json.Marshal(whole)
		if string(a) != string(b) {
			t.Fatalf("%s: streamed final response\n%s\nnon-streamed\n%s", c.input, a, b)
		}
		for _, o := range fr.Output {
			var want, got string
			switch o.Type {
			case "message":
				want, got = o.Content[0].Text+o.Content[0].Refusal, deltaText(evs, "response.output_text.delta")+deltaText(evs, "response.refusal.delta")
			case "function_call":
				want, got = o.Arguments, deltaText(evs, "response.function_call_arguments.delta")
			case "reasoning":
				want, got = o.Summary[0].Text, deltaText(evs, "response.reasoning_summary_text.delta")
			}
			if want != got {
				t.Errorf("%s: %s deltas give %q, want %q", c.input, o.Type, got, want)
			}
		}
	}

	_, evs := streamResponses(t, s, responsesBody("ERROR", `,"stream":true`), nil)
	if last := evs[len(evs)-1]; last.name != "error" || last.data["message"] != "fake error" {
		t.Fatalf("ERROR ends with %s %v", last.name, last.data)
	}

	// Cut: never the final event.
	resp := openStream(t, http.DefaultClient, s.URL()+"/v1/responses", responsesBody("cut", `,"stream":true`), map[string]string{"X-Fake-Cut-After": "100"})
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || strings.Contains(string(b), "response.completed") || !strings.Contains(string(b), "response.output_text.delta") {
		t.Fatalf("a cut stream: err %v, body %s", err, b)
	}
}
