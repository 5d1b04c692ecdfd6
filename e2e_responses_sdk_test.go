package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"llmcache/bench/fakeupstream"
)

// The Responses API with the official Go SDK: Responses.New and Responses.NewStreaming (its events fed to
// the SDK's ResponseAccumulator), misses and hits, function calls with argument deltas, reasoning
// summaries, refusals, usage, a cut stream, and a conversation chained by previous_response_id replayed
// from the cache without an upstream call.

func respParams(input string) responses.ResponseNewParams {
	return responses.ResponseNewParams{Model: testModel, Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(input)}}
}

// sdkRespStream runs one streamed Responses request through the SDK and its accumulator. It returns the
// accumulator's response (the final event's), the accumulator's snapshot just before that final event (what
// the deltas and done events built), the deltas of each event type, the HTTP response and the stream's
// error.
func sdkRespStream(t *testing.T, client openai.Client, params responses.ResponseNewParams, opts ...option.RequestOption) (
	*responses.Response, responses.ResponseAccumulatorSnapshot, map[string]string, *http.Response, error) {
	t.Helper()
	var resp *http.Response
	opts = append(opts, option.WithResponseInto(&resp))
	stream := client.Responses.NewStreaming(context.Background(), params, opts...)
	defer stream.Close()
	var acc responses.ResponseAccumulator
	var before responses.ResponseAccumulatorSnapshot
	deltas := map[string]string{}
	var seq int64
	for stream.Next() {
		ev := stream.Current()
		if ev.SequenceNumber != seq {
			t.Fatalf("event %s has sequence_number %d, want %d", ev.Type, ev.SequenceNumber, seq)
		}
		seq++
		if ev.Delta != "" {
			deltas[ev.Type] += ev.Delta
		}
		var se responses.ResponsesServerEventUnion
		if err := json.Unmarshal([]byte(ev.RawJSON()), &se); err != nil {
			t.Fatalf("event %s does not decode as a server event: %v", ev.Type, err)
		}
		switch ev.Type {
		case "response.completed", "response.incomplete", "response.failed":
			before = acc.Snapshot()
		}
		if err := acc.AddEvent(se); err != nil {
			t.Fatalf("the accumulator refused %s: %v", ev.Type, err)
		}
	}
	if err := stream.Err(); err != nil {
		return nil, before, deltas, resp, err
	}
	final, err := acc.ReconstructedResponse()
	return final, before, deltas, resp, err
}

func TestE2EResponsesOpenAISDK(t *testing.T) {
	p := newTestProxy(t, nil)
	client := sdkClient(p)
	ctx := context.Background()

	// Non-streamed: a miss, then a hit with the same id and text.
	var hresp *http.Response
	miss, err := client.Responses.New(ctx, respParams("sdk whole"))
	if err != nil {
		t.Fatal(err)
	}
	hit, err := client.Responses.New(ctx, respParams("sdk whole"), option.WithResponseInto(&hresp))
	if err != nil {
		t.Fatal(err)
	}
	if hresp.Header.Get("X-Cache") != "HIT" || hit.ID != miss.ID || hit.OutputText() != miss.OutputText() ||
		!strings.HasPrefix(miss.OutputText(), "echo: sdk whole") || hit.Usage.TotalTokens == 0 {
		t.Fatalf("hit %s %q, miss %s %q", hit.ID, hit.OutputText(), miss.ID, miss.OutputText())
	}

	// Streamed: a streamed hit of that entry accumulates to the same response, its deltas to the same text.
	final, before, deltas, resp, err := sdkRespStream(t, client, respParams("sdk whole"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Cache") != "HIT" || final.ID != miss.ID || final.OutputText() != miss.OutputText() ||
		final.Usage.TotalTokens != miss.Usage.TotalTokens || final.Status != "completed" {
		t.Fatalf("streamed hit: %s %s %q", resp.Header.Get("X-Cache"), final.ID, final.OutputText())
	}
	if before.OutputText() != miss.OutputText() || deltas["response.output_text.delta"] != miss.OutputText() {
		t.Fatalf("the events before response.completed build %q (deltas %q), want %q", before.OutputText(),
			deltas["response.output_text.delta"], miss.OutputText())
	}
	if final.RawJSON() != string(compactJSON(t, []byte(miss.RawJSON()))) {
		t.Fatalf("the streamed hit's response is not the stored one:\n%s\n%s", final.RawJSON(), miss.RawJSON())
	}
	expectRespCalls(t, p, 1)

	// A streamed miss and its hit, for each kind of output.
	for _, c := range []struct {
		input string
		check func(r *responses.Response, before responses.ResponseAccumulatorSnapshot, deltas map[string]string) string
	}{
		{"TOOL: weather in Paris", func(r *responses.Response, before responses.ResponseAccumulatorSnapshot, deltas map[string]string) string {
			fc := r.Output[0].AsFunctionCall()
			if r.Output[0].Type != "function_call" || fc.Name != "get_weather" || fc.Arguments != `{"city":"Paris"}` || fc.CallID == "" {
				return "function call " + r.Output[0].RawJSON()
			}
			if before.Output[0].Arguments != fc.Arguments || deltas["response.function_call_arguments.delta"] != fc.Arguments || before.Output[0].CallID != fc.CallID {
				return "argument deltas give " + deltas["response.function_call_arguments.delta"]
			}
			return ""
		}},
		{"THINK: about it", func(r *responses.Response, _ responses.ResponseAccumulatorSnapshot, deltas map[string]string) string {
			rs := r.Output[0].AsReasoning()
			if r.Output[0].Type != "reasoning" || len(rs.Summary) != 1 || rs.Summary[0].Text == "" || r.Output[1].Type != "message" {
				return "reasoning " + r.Output[0].RawJSON()
			}
			if deltas["response.reasoning_summary_text.delta"] != rs.Summary[0].Text {
				return "summary deltas give " + deltas["response.reasoning_summary_text.delta"]
			}
			return ""
		}},
		{"REFUSE to answer", func(r *responses.Response, _ responses.ResponseAccumulatorSnapshot, deltas map[string]string) string {
			part := r.Output[0].AsMessage().Content[0]
			if part.Type != "refusal" || part.Refusal == "" || deltas["response.refusal.delta"] != part.Refusal {
				return "refusal " + r.Output[0].RawJSON() + " deltas " + deltas["response.refusal.delta"]
			}
			return ""
		}},
	} {
		var finals []*responses.Response
		for _, want := range []string{"MISS", "HIT"} {
			final, before, deltas, resp, err := sdkRespStream(t, client, respParams(c.input))
			if err != nil {
				t.Fatalf("%s %s: %v", c.input, want, err)
			}
			if resp.Header.Get("X-Cache") != want {
				t.Fatalf("%s: X-Cache %q, want %s", c.input, resp.Header.Get("X-Cache"), want)
			}
			if msg := c.check(final, before, deltas); msg != "" {
				t.Fatalf("%s (%s): %s", c.input, want, msg)
			}
			finals = append(finals, final)
		}
		if finals[0].RawJSON() != finals[1].RawJSON() {
			t.Fatalf("%s: the hit's response differs from the miss's:\n%s\n%s", c.input, finals[1].RawJSON(), finals[0].RawJSON())
		}
		whole, err := client.Responses.New(ctx, respParams(c.input))
		if err != nil || whole.RawJSON() != finals[0].RawJSON() {
			t.Fatalf("%s: the whole request is not the stored response (%v)", c.input, err)
		}
	}

	// A function call's result, sent back with previous_response_id.
	call, err := client.Responses.New(ctx, respParams("TOOL: weather again"))
	if err != nil {
		t.Fatal(err)
	}
	out := responses.ResponseInputItemParamOfFunctionCallOutput("sunny and 21C")
	out.OfFunctionCallOutput.CallID = openai.String(call.Output[0].AsFunctionCall().CallID)
	next := responses.ResponseNewParams{Model: testModel, PreviousResponseID: openai.String(call.ID),
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{out}}}
	answer, err := client.Responses.New(ctx, next)
	if err != nil || !strings.HasPrefix(answer.OutputText(), "echo: sunny and 21C") {
		t.Fatalf("the answer to the tool result: %v %q", err, answer.OutputText())
	}

	// A cut stream is an error, never a short response; it is not stored.
	_, _, _, _, err = sdkRespStream(t, client, respParams("cut for the sdk"), option.WithHeader("X-Fake-Cut-After", "4"))
	if err == nil || !strings.Contains(err.Error(), "upstream_stream_cut") {
		t.Fatalf("a cut stream: %v", err)
	}
}

// TestE2EResponsesChainReplay: a three-turn conversation chained with previous_response_id is replayed from
// the cache turn by turn, with the same ids and no upstream call: from memory, then after a restart from
// SQLite in read_only mode.
func TestE2EResponsesChainReplay(t *testing.T) {
	p := newTestProxy(t, nil)
	client := sdkClient(p)
	ctx := context.Background()
	turns := []string{"turn one", "turn two", "turn three"}
	run := func(opts ...option.RequestOption) []*responses.Response {
		t.Helper()
		var out []*responses.Response
		prev := ""
		for i, in := range turns {
			params := respParams(in)
			if prev != "" {
				params.PreviousResponseID = openai.String(prev)
			}
			var r *responses.Response
			var err error
			if i == 1 { // one turn streamed: both forms share the chain
				r, _, _, _, err = sdkRespStream(t, client, params, opts...)
			} else {
				r, err = client.Responses.New(ctx, params, opts...)
			}
			if err != nil {
				t.Fatalf("turn %d: %v", i+1, err)
			}
			if r.PreviousResponseID != prev || !strings.HasPrefix(r.OutputText(), "echo: "+in) {
				t.Fatalf("turn %d: previous %q, text %q", i+1, r.PreviousResponseID, r.OutputText())
			}
			out = append(out, r)
			prev = r.ID
		}
		return out
	}
	first := run()
	expectRespCalls(t, p, 3)

	same := func(what string, again []*responses.Response) {
		t.Helper()
		for i := range first {
			if again[i].ID != first[i].ID || again[i].OutputText() != first[i].OutputText() {
				t.Fatalf("%s, turn %d: %s %q, first run %s %q", what, i+1, again[i].ID, again[i].OutputText(), first[i].ID, first[i].OutputText())
			}
		}
	}
	p.Fake.ResetCounters()
	same("replay from memory", run())
	expectRespCalls(t, p, 0)

	p.Restart()
	client = sdkClient(p)
	same("replay after a restart, read_only", run(option.WithHeader("X-Cache-Mode", "read_only")))
	expectRespCalls(t, p, 0)
	if n := p.Fake.CallsTo(fakeupstream.RouteResponseIDs); n != 0 {
		t.Fatalf("%d upstream GETs", n)
	}
}
