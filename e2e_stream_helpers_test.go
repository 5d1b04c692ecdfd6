package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Helpers of the streaming end-to-end tests (e2e_stream_*_test.go): a strict SSE reader, the assembly of a
// streamed answer from its chunks as an SDK would do it, and the decoding of a whole answer to compare with.

// chatStreamBody is chatBody with "stream": true and, when usage, stream_options.include_usage.
func chatStreamBody(content string, usage bool) string {
	opts := ""
	if usage {
		opts = `,"stream_options":{"include_usage":true}`
	}
	return `{"model":"` + testModel + `","stream":true` + opts + `,"messages":[{"role":"user","content":` + jsonString(content) + `}]}`
}

// completionBody is a legacy completions request for prompt; stream adds "stream": true.
func completionBody(prompt string, stream, usage bool) string {
	s := ""
	if stream {
		s = `,"stream":true`
	}
	if usage {
		s += `,"stream_options":{"include_usage":true}`
	}
	return `{"model":"` + testModel + `","prompt":` + jsonString(prompt) + s + `,"max_tokens":64}`
}

// sseEvent is one server-sent event.
type sseEvent struct {
	Event string        // the "event:" field; "" for plain data events
	Data  string        // the "data:" lines joined with "\n"
	At    time.Duration // when it was read, since the request was sent
}

// sseReader reads events one at a time from a response body.
type sseReader struct {
	br    *bufio.Reader
	start time.Time
}

func newSSEReader(r io.Reader, start time.Time) *sseReader {
	return &sseReader{br: bufio.NewReader(r), start: start}
}

// next returns the next event; io.EOF when the body ended cleanly between events, another error when it
// broke off or ended in the middle of an event.
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	var data []string
	seen := false
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" && !seen {
				return ev, io.EOF
			}
			if err == io.EOF {
				return ev, fmt.Errorf("stream ended inside an event (%q)", line)
			}
			return ev, err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if !seen {
				continue // blank lines between events
			}
			ev.Data = strings.Join(data, "\n")
			ev.At = time.Since(s.start)
			return ev, nil
		}
		seen = true
		if strings.HasPrefix(line, ":") {
			continue // a comment
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "data":
			data = append(data, value)
		case "event":
			ev.Event = value
		}
	}
}

// readAllSSE reads every event up to the end of the body. A body that broke off returns the events read
// so far with the error.
func readAllSSE(r io.Reader, start time.Time) ([]sseEvent, error) {
	rd := newSSEReader(r, start)
	var out []sseEvent
	for {
		ev, err := rd.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

// streamToolCall is one tool call assembled from its deltas.
type streamToolCall struct {
	ID, Type, Name, Arguments string
}

// assembled is a streamed answer put together the way SDKs do it, with what a user would notice about the
// stream itself.
type assembled struct {
	Events    []sseEvent
	Done      bool     // the last event is data: [DONE]
	ErrorData string   // the data of an "event: error", if any
	IDs       []string // the distinct chunk ids, in order
	Objects   []string // the distinct chunk "object" values
	Model     string
	Role      string
	Content   string // chat: concatenated content deltas
	Reasoning string // chat: concatenated reasoning_content deltas
	Refusal   string // chat: concatenated refusal deltas
	Text      string // completions: concatenated text
	ToolCalls []streamToolCall
	Finish    string          // the finish_reason of choice 0
	Usage     json.RawMessage // from the usage chunk (choices: []), nil when there is none
	UsageN    int             // how many usage chunks came
}

type chunkJSON struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices *[]struct {
		Index int `json:"index"`
		Delta *struct {
			Role             *string `json:"role"`
			Content          *string `json:"content"`
			Refusal          *string `json:"refusal"`
			ReasoningContent *string `json:"reasoning_content"`
			ToolCalls        []struct {
				Index    int    `json:"index"`
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		Text         *string `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

// assemble checks the shape of a stream and puts its answer together. It returns an error for anything an
// SDK would choke on: a data event that is not JSON, events after [DONE], an unknown event type, a chunk
// without choices that is not a usage chunk.
func assemble(events []sseEvent) (*assembled, error) {
	a := &assembled{Events: events}
	toolIdx := map[int]int{}
	for i, ev := range events {
		if a.Done {
			return a, fmt.Errorf("event %d comes after data: [DONE]: %+v", i, ev)
		}
		switch ev.Event {
		case "":
		case "error":
			if a.ErrorData != "" {
				return a, fmt.Errorf("two error events")
			}
			a.ErrorData = ev.Data
			continue
		default:
			return a, fmt.Errorf("event %d has an unexpected type %q", i, ev.Event)
		}
		if a.ErrorData != "" {
			return a, fmt.Errorf("event %d comes after the error event", i)
		}
		if ev.Data == "[DONE]" {
			a.Done = true
			continue
		}
		var c chunkJSON
		if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
			return a, fmt.Errorf("event %d is not JSON: %v: %q", i, err, ev.Data)
		}
		if len(a.IDs) == 0 || a.IDs[len(a.IDs)-1] != c.ID {
			a.IDs = append(a.IDs, c.ID)
		}
		if len(a.Objects) == 0 || a.Objects[len(a.Objects)-1] != c.Object {
			a.Objects = append(a.Objects, c.Object)
		}
		a.Model = c.Model
		if c.Choices == nil {
			return a, fmt.Errorf("event %d has no choices: %s", i, ev.Data)
		}
		if len(*c.Choices) == 0 {
			if len(c.Usage) == 0 || string(c.Usage) == "null" {
				return a, fmt.Errorf("event %d has empty choices and no usage: %s", i, ev.Data)
			}
			a.Usage = c.Usage
			a.UsageN++
			continue
		}
		for _, ch := range *c.Choices {
			if ch.Index != 0 {
				return a, fmt.Errorf("event %d: choice index %d; these tests ask for one choice", i, ch.Index)
			}
			if ch.Text != nil {
				a.Text += *ch.Text
			}
			if ch.FinishReason != nil {
				a.Finish = *ch.FinishReason
			}
			d := ch.Delta
			if d == nil {
				continue
			}
			if d.Role != nil {
				a.Role = *d.Role
			}
			if d.Content != nil {
				a.Content += *d.Content
			}
			if d.Refusal != nil {
				a.Refusal += *d.Refusal
			}
			if d.ReasoningContent != nil {
				a.Reasoning += *d.ReasoningContent
			}
			for _, tc := range d.ToolCalls {
				j, ok := toolIdx[tc.Index]
				if !ok {
					j = len(a.ToolCalls)
					toolIdx[tc.Index] = j
					a.ToolCalls = append(a.ToolCalls, streamToolCall{})
				}
				t := &a.ToolCalls[j]
				if tc.ID != "" {
					t.ID = tc.ID
				}
				if tc.Type != "" {
					t.Type = tc.Type
				}
				t.Name += tc.Function.Name
				t.Arguments += tc.Function.Arguments
			}
		}
	}
	return a, nil
}

// wholeAnswer is a non-streamed chat.completion or text_completion object.
type wholeAnswer struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message *struct {
			Role             string  `json:"role"`
			Content          *string `json:"content"`
			Refusal          *string `json:"refusal"`
			ReasoningContent *string `json:"reasoning_content"`
			ToolCalls        []struct {
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"message"`
		Text         *string `json:"text"`
		FinishReason string  `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// decodeWhole decodes a whole answer and checks it is the object of its route with one choice.
func decodeWhole(body []byte, object string) (*wholeAnswer, error) {
	var w wholeAnswer
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("answer is not JSON: %v: %s", err, body)
	}
	if w.Object != object {
		return nil, fmt.Errorf("answer object %q, want %q: %s", w.Object, object, body)
	}
	if w.ID == "" || w.Model == "" {
		return nil, fmt.Errorf("answer lacks id or model: %s", body)
	}
	if len(w.Choices) != 1 {
		return nil, fmt.Errorf("answer has %d choices, want 1: %s", len(w.Choices), body)
	}
	if object == "chat.completion" && (w.Choices[0].Message == nil || w.Choices[0].Message.Role != "assistant") {
		return nil, fmt.Errorf("answer has no assistant message: %s", body)
	}
	if object == "text_completion" && w.Choices[0].Text == nil {
		return nil, fmt.Errorf("answer has no text: %s", body)
	}
	if w.Choices[0].FinishReason == "" {
		return nil, fmt.Errorf("answer has no finish_reason: %s", body)
	}
	return &w, nil
}

// sameAnswer reports how a streamed answer differs from a whole one ("" when it does not): text, refusal,
// reasoning, tool calls, finish reason, id and model.
func sameAnswer(s *assembled, w *wholeAnswer) string {
	var diffs []string
	add := func(what string, got, want any) {
		diffs = append(diffs, fmt.Sprintf("%s: stream %q, whole %q", what, got, want))
	}
	if len(s.IDs) != 1 || s.IDs[0] != w.ID {
		add("id", s.IDs, w.ID)
	}
	if s.Model != w.Model {
		add("model", s.Model, w.Model)
	}
	c := w.Choices[0]
	if s.Finish != c.FinishReason {
		add("finish_reason", s.Finish, c.FinishReason)
	}
	if c.Text != nil {
		if s.Text != *c.Text {
			add("text", s.Text, *c.Text)
		}
		return strings.Join(diffs, "; ")
	}
	m := c.Message
	if s.Role != m.Role {
		add("role", s.Role, m.Role)
	}
	if s.Content != deref(m.Content) {
		add("content", s.Content, deref(m.Content))
	}
	if s.Refusal != deref(m.Refusal) {
		add("refusal", s.Refusal, deref(m.Refusal))
	}
	if s.Reasoning != deref(m.ReasoningContent) {
		add("reasoning_content", s.Reasoning, deref(m.ReasoningContent))
	}
	var tcs []streamToolCall
	for _, tc := range m.ToolCalls {
		tcs = append(tcs, streamToolCall{ID: tc.ID, Type: tc.Type, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
	}
	if fmt.Sprint(s.ToolCalls) != fmt.Sprint(tcs) {
		add("tool_calls", fmt.Sprint(s.ToolCalls), fmt.Sprint(tcs))
	}
	return strings.Join(diffs, "; ")
}

// streamResult is a streamed answer read whole: the response, its events and the assembly.
type streamResult struct {
	resp    *http.Response
	events  []sseEvent
	readErr error // the body broke off (a cut stream may)
	a       *assembled
	aErr    error
}

// postStream sends a streaming request and reads its whole body as SSE when the answer is an event stream.
// A non-SSE answer (an error) is returned with its body in body.
func (p *testProxy) postStream(path, body string, header ...string) (sr streamResult, raw []byte) {
	p.t.Helper()
	req, err := http.NewRequest("POST", p.URL+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	start := time.Now()
	resp, err := testClient.Do(req)
	if err != nil {
		p.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	sr.resp = resp
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		raw, err = io.ReadAll(resp.Body)
		if err != nil {
			p.t.Fatalf("POST %s: reading body: %v", path, err)
		}
		return sr, raw
	}
	var buf bytes.Buffer
	sr.events, sr.readErr = readAllSSE(io.TeeReader(resp.Body, &buf), start)
	sr.a, sr.aErr = assemble(sr.events)
	return sr, buf.Bytes()
}

// expectStream checks that a streamed answer is a complete, well-formed event stream with the given X-Cache
// and returns its assembly.
func expectStream(t *testing.T, what string, sr streamResult, raw []byte, xcache string) *assembled {
	t.Helper()
	if sr.resp.StatusCode != 200 {
		t.Fatalf("%s: status %d, want 200; body %s", what, sr.resp.StatusCode, raw)
	}
	if ct := sr.resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("%s: Content-Type %q, want text/event-stream; body %s", what, ct, raw)
	}
	if got := sr.resp.Header.Get("X-Cache"); got != xcache {
		t.Fatalf("%s: X-Cache = %q, want %q (X-Cache-Source %q)", what, got, xcache, sr.resp.Header.Get("X-Cache-Source"))
	}
	if sr.readErr != nil {
		t.Fatalf("%s: the stream broke off: %v; read so far %s", what, sr.readErr, raw)
	}
	if sr.aErr != nil {
		t.Fatalf("%s: malformed stream: %v", what, sr.aErr)
	}
	if !sr.a.Done || sr.a.ErrorData != "" {
		t.Fatalf("%s: stream does not end with data: [DONE] (error event %q): %s", what, sr.a.ErrorData, raw)
	}
	if !bytes.HasSuffix(raw, []byte("data: [DONE]\n\n")) {
		t.Fatalf("%s: the body does not end with \"data: [DONE]\\n\\n\": %q", what, raw[max(0, len(raw)-80):])
	}
	return sr.a
}

// usageTotals decodes the token counts of a usage object.
func usageTotals(raw json.RawMessage) (prompt, completion, total int, err error) {
	var u struct {
		Prompt     *int `json:"prompt_tokens"`
		Completion *int `json:"completion_tokens"`
		Total      *int `json:"total_tokens"`
	}
	if err := json.Unmarshal(raw, &u); err != nil {
		return 0, 0, 0, err
	}
	if u.Prompt == nil || u.Completion == nil || u.Total == nil {
		return 0, 0, 0, fmt.Errorf("usage lacks a count: %s", raw)
	}
	return *u.Prompt, *u.Completion, *u.Total, nil
}

// openStream sends a streaming request with ctx and returns the response with its body unread.
func openStream(ctx context.Context, client *http.Client, url, body string, header ...string) (*http.Response, time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		return nil, time.Time{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	start := time.Now()
	resp, err := client.Do(req)
	return resp, start, err
}

// errorEvent decodes the data of an "event: error" in OpenAI's error shape.
func errorEvent(data string) (apiError, error) {
	var e apiError
	if err := json.Unmarshal([]byte(data), &e); err != nil {
		return e, fmt.Errorf("error event data is not JSON: %v: %q", err, data)
	}
	if e.Error.Message == "" || e.Error.Type == "" {
		return e, errors.New("error event lacks error.message or error.type: " + data)
	}
	return e, nil
}
