package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
)

// Batches (/v1/batches) through the official Go SDK, as an evaluation tool submits a run: a JSONL file
// through Files.New, Batches.New, polling Batches.Get, then Files.Content of the output and error files.
// Each line runs through the pipeline as a live request would.

// batchLine is one line of an output or error file.
type batchLine struct {
	ID       string `json:"id"`
	CustomID string `json:"custom_id"`
	Response *struct {
		StatusCode int             `json:"status_code"`
		RequestID  string          `json:"request_id"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error json.RawMessage `json:"error"`
}

// jsonlLine is one request line of a batch input file.
func jsonlLine(customID, url, body string) string {
	return fmt.Sprintf(`{"custom_id":%q,"method":"POST","url":%q,"body":%s}`+"\n", customID, url, body)
}

// startBatch uploads content and creates a batch on it.
func startBatch(t *testing.T, client openai.Client, content string, endpoint openai.BatchNewParamsEndpoint) *openai.Batch {
	t.Helper()
	f := uploadBatchFile(t, client, "batch.jsonl", content)
	b, err := client.Batches.New(context.Background(), openai.BatchNewParams{InputFileID: f.ID, Endpoint: endpoint,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatalf("Batches.New: %v", err)
	}
	if !strings.HasPrefix(b.ID, "batch_") || b.Object != "batch" || b.InputFileID != f.ID || b.Endpoint != string(endpoint) || b.CompletionWindow != "24h" {
		t.Fatalf("batch object: %s", b.RawJSON())
	}
	return b
}

// waitBatch polls the batch until it reaches a final status, as clients do.
func waitBatch(t *testing.T, client openai.Client, id string) *openai.Batch {
	t.Helper()
	var b *openai.Batch
	waitFor(t, "batch "+id+" to end", func() bool {
		var err error
		if b, err = client.Batches.Get(context.Background(), id); err != nil {
			t.Fatalf("Batches.Get: %v", err)
		}
		switch b.Status {
		case openai.BatchStatusCompleted, openai.BatchStatusFailed, openai.BatchStatusCancelled, openai.BatchStatusExpired:
			return true
		}
		return false
	})
	return b
}

// fileLines downloads a file of the Batch API and parses its lines; none for an empty id.
func fileLines(t *testing.T, client openai.Client, id string) []batchLine {
	t.Helper()
	if id == "" {
		return nil
	}
	resp, err := client.Files.Content(context.Background(), id)
	if err != nil {
		t.Fatalf("Files.Content(%s): %v", id, err)
	}
	defer resp.Body.Close()
	var out []batchLine
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var l batchLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("a line of %s is not JSON: %v: %s", id, err, sc.Bytes())
		}
		if !strings.HasPrefix(l.ID, "batch_req_") || l.Response == nil || l.Response.RequestID == "" || string(l.Error) != "null" {
			t.Fatalf("a line of %s is not OpenAI's shape: %s", id, sc.Bytes())
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// byCustomID indexes lines by custom_id, failing on a custom_id seen twice.
func byCustomID(t *testing.T, lines ...[]batchLine) map[string]batchLine {
	t.Helper()
	m := map[string]batchLine{}
	for _, ls := range lines {
		for _, l := range ls {
			if _, dup := m[l.CustomID]; dup {
				t.Fatalf("custom_id %q answered twice", l.CustomID)
			}
			m[l.CustomID] = l
		}
	}
	return m
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// TestE2EBatchRun: a 1,000-line chat batch with duplicate bodies, some bodies cached before, and a few lines
// whose body has no messages. Every good line is answered once, with a result equal as JSON to what a live
// request with its body gets; the bad ones are a 400 in the error file; the upstream is asked once per
// distinct body the cache lacked. The same batch again asks the upstream nothing.
func TestE2EBatchRun(t *testing.T) {
	p := newTestProxy(t, nil)
	client := sdkClient(p)
	const lines, distinct, cachedBefore = 1000, 300, 40
	prompt := func(i int) string { return chatBody(fmt.Sprintf("batch question %d", i%distinct)) }
	for i := range cachedBefore {
		resp, b := p.Post("/v1/chat/completions", prompt(i))
		expectCache(t, "warming", resp, b, 200, "MISS")
	}
	bad := map[string]bool{}
	var in strings.Builder
	for i := range lines {
		id := fmt.Sprintf("req-%04d", i)
		body := prompt(i)
		if i%199 == 7 {
			body, bad[id] = `{"model":"`+testModel+`"}`, true
		}
		in.WriteString(jsonlLine(id, "/v1/chat/completions", body))
	}
	before := p.Fake.CallsTo("chat")
	b := startBatch(t, client, in.String(), openai.BatchNewParamsEndpointV1ChatCompletions)
	b = waitBatch(t, client, b.ID)
	if b.Status != openai.BatchStatusCompleted {
		t.Fatalf("batch ended %s: %s", b.Status, b.RawJSON())
	}
	if got := p.Fake.CallsTo("chat") - before; got != distinct-cachedBefore {
		t.Errorf("upstream calls %d, want %d (the distinct bodies the cache lacked)", got, distinct-cachedBefore)
	}
	if rc := b.RequestCounts; rc.Total != lines || rc.Completed != int64(lines-len(bad)) || rc.Failed != int64(len(bad)) {
		t.Errorf("request_counts %+v, want %d total, %d completed, %d failed", rc, lines, lines-len(bad), len(bad))
	}
	if b.InProgressAt == 0 || b.FinalizingAt == 0 || b.CompletedAt == 0 || b.OutputFileID == "" || b.ErrorFileID == "" {
		t.Errorf("batch object: %s", b.RawJSON())
	}
	out, errs := fileLines(t, client, b.OutputFileID), fileLines(t, client, b.ErrorFileID)
	all := byCustomID(t, out, errs)
	if len(out) != lines-len(bad) || len(errs) != len(bad) || len(all) != lines {
		t.Fatalf("%d output lines and %d error lines for %d lines (%d bad)", len(out), len(errs), lines, len(bad))
	}
	live := map[string][]byte{} // a live request's answer, by body
	for i := range lines {
		id := fmt.Sprintf("req-%04d", i)
		l := all[id]
		if bad[id] {
			if l.Response.StatusCode != 400 || !bytes.Contains(l.Response.Body, []byte(`"invalid_request_error"`)) {
				t.Fatalf("bad line %s: %d %s", id, l.Response.StatusCode, l.Response.Body)
			}
			continue
		}
		if l.Response.StatusCode != 200 {
			t.Fatalf("line %s: status %d: %s", id, l.Response.StatusCode, l.Response.Body)
		}
		body := prompt(i)
		if live[body] == nil {
			resp, lb := p.Post("/v1/chat/completions", body)
			expectCache(t, "the live request of a batch line", resp, lb, 200, "HIT")
			live[body] = lb
		}
		if !jsonEqual(l.Response.Body, live[body]) {
			t.Fatalf("line %s: result %s, a live request gets %s", id, l.Response.Body, live[body])
		}
		if bytes.ContainsAny(l.Response.Body, "\n") {
			t.Fatalf("line %s: body is not one line of compact JSON", id)
		}
	}

	// The same batch again, on the same input file: every line from the cache.
	before = p.Fake.CallsTo("chat")
	again, err := client.Batches.New(context.Background(), openai.BatchNewParams{InputFileID: b.InputFileID,
		Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatal(err)
	}
	again = waitBatch(t, client, again.ID)
	if again.Status != openai.BatchStatusCompleted || again.RequestCounts.Completed != int64(lines-len(bad)) {
		t.Fatalf("second batch: %s", again.RawJSON())
	}
	if got := p.Fake.CallsTo("chat") - before; got != 0 {
		t.Errorf("the same batch again made %d upstream calls, want 0", got)
	}
	second := byCustomID(t, fileLines(t, client, again.OutputFileID), fileLines(t, client, again.ErrorFileID))
	for id, l := range all {
		if !jsonEqual(second[id].Response.Body, l.Response.Body) {
			t.Fatalf("line %s differs on replay: %s vs %s", id, second[id].Response.Body, l.Response.Body)
		}
	}
}

// TestE2EBatchValidation: as on OpenAI, a file with a line that is not JSON, a url that is not the batch's
// endpoint, a method other than POST and a duplicate custom_id ends the batch failed, errors.data naming each
// bad line, and runs no line.
func TestE2EBatchValidation(t *testing.T) {
	p := newTestProxy(t, nil)
	client := sdkClient(p)
	content := jsonlLine("a", "/v1/chat/completions", chatBody("v1")) + // 1: fine
		`{"custom_id":"b","method":"POST",` + "\n" + // 2: not JSON
		jsonlLine("c", "/v1/embeddings", chatBody("v3")) + // 3: another endpoint
		"\n" + // 4: blank, skipped
		jsonlLine("a", "/v1/chat/completions", chatBody("v5")) + // 5: custom_id of line 1
		`{"custom_id":"d","method":"GET","url":"/v1/chat/completions","body":{}}` + "\n" // 6: GET
	b := startBatch(t, client, content, openai.BatchNewParamsEndpointV1ChatCompletions)
	b = waitBatch(t, client, b.ID)
	if b.Status != openai.BatchStatusFailed || b.FailedAt == 0 || b.OutputFileID != "" || b.ErrorFileID != "" {
		t.Fatalf("batch: %s", b.RawJSON())
	}
	want := map[int64]string{2: "invalid_json_line", 3: "invalid_url", 5: "duplicate_custom_id", 6: "invalid_method"}
	if len(b.Errors.Data) != len(want) {
		t.Fatalf("errors.data: %s", b.Errors.RawJSON())
	}
	for _, e := range b.Errors.Data {
		if want[e.Line] != e.Code || e.Message == "" {
			t.Errorf("errors.data entry for line %d: %s (want code %s)", e.Line, e.RawJSON(), want[e.Line])
		}
	}
	if n := p.Fake.CallsTo("chat"); n != 0 {
		t.Errorf("a batch that failed validation made %d upstream calls", n)
	}

	// Refused at creation: a file that does not exist, an endpoint batches do not run, another window.
	f := uploadBatchFile(t, client, "ok.jsonl", jsonlLine("a", "/v1/chat/completions", chatBody("x")))
	for _, c := range []struct {
		what   string
		params openai.BatchNewParams
		status int
	}{
		{"no such file", openai.BatchNewParams{InputFileID: "file-nope", Endpoint: "/v1/chat/completions", CompletionWindow: "24h"}, 404},
		{"moderations", openai.BatchNewParams{InputFileID: f.ID, Endpoint: "/v1/moderations", CompletionWindow: "24h"}, 400},
		{"window 1h", openai.BatchNewParams{InputFileID: f.ID, Endpoint: "/v1/chat/completions", CompletionWindow: "1h"}, 400},
	} {
		if _, err := client.Batches.New(context.Background(), c.params); sdkStatus(err) != c.status {
			t.Errorf("%s: %v, want a %d", c.what, err, c.status)
		}
	}
	if _, err := client.Batches.Get(context.Background(), "batch_nope"); sdkStatus(err) != 404 {
		t.Errorf("Batches.Get of an unknown id: %v, want a 404", err)
	}
}

// TestE2EBatchRoutes: completions and embeddings batches answer as their live routes do; a streamed line is
// a 400 of its own without an upstream call; Batches.List pages newest first; per-line cache controls in the
// body are honoured (no-cache fetches again).
func TestE2EBatchRoutes(t *testing.T) {
	p := newTestProxy(t, nil)
	client := sdkClient(p)
	comp := `{"model":"` + testModel + `","prompt":"once upon a time","max_tokens":5}`
	emb := `{"model":"` + testModel + `","input":["alpha","beta"]}`
	resp := respBody("a batch of responses", "")
	for _, c := range []struct {
		endpoint openai.BatchNewParamsEndpoint
		path     string
		body     string
	}{{openai.BatchNewParamsEndpointV1Completions, "/v1/completions", comp}, {openai.BatchNewParamsEndpointV1Embeddings, "/v1/embeddings", emb},
		{openai.BatchNewParamsEndpointV1Responses, "/v1/responses", resp}} {
		var last, lastLive []byte
		// Run twice: the second time every line is a hit, as the live request after it is. (An embeddings
		// answer's usage counts what was fetched, so a first run's answers differ from a hit's in that.)
		for run := range 2 {
			b := startBatch(t, client, jsonlLine("x", c.path, c.body)+jsonlLine("y", c.path, c.body), c.endpoint)
			b = waitBatch(t, client, b.ID)
			if b.Status != openai.BatchStatusCompleted || b.RequestCounts.Completed != 2 {
				t.Fatalf("%s batch: %s", c.path, b.RawJSON())
			}
			lines := byCustomID(t, fileLines(t, client, b.OutputFileID))
			resp, live := p.Post(c.path, c.body)
			expectCache(t, c.path+" live", resp, live, 200, "HIT")
			if run == 1 && !jsonEqual(lines["x"].Response.Body, lines["y"].Response.Body) {
				t.Fatalf("%s: the two lines differ: %s / %s", c.path, lines["x"].Response.Body, lines["y"].Response.Body)
			}
			if c.path != "/v1/embeddings" && !jsonEqual(lines["x"].Response.Body, live) {
				t.Fatalf("%s: batch %s, live %s", c.path, lines["x"].Response.Body, live)
			}
			last, lastLive = lines["x"].Response.Body, live
		}
		if !jsonEqual(last, lastLive) {
			t.Fatalf("%s: cached batch line %s, live hit %s", c.path, last, lastLive)
		}
	}

	before := p.Fake.CallsTo("chat")
	streamed := `{"model":"` + testModel + `","stream":true,"messages":[{"role":"user","content":"s"}]}`
	fresh := `{"model":"` + testModel + `","cache":{"no-cache":true},"messages":[{"role":"user","content":"f"}]}`
	b := startBatch(t, client, jsonlLine("s", "/v1/chat/completions", streamed)+jsonlLine("f", "/v1/chat/completions", fresh),
		openai.BatchNewParamsEndpointV1ChatCompletions)
	b = waitBatch(t, client, b.ID)
	errLines := byCustomID(t, fileLines(t, client, b.ErrorFileID))
	if l := errLines["s"]; l.Response == nil || l.Response.StatusCode != 400 {
		t.Fatalf("streamed line: %+v", l)
	}
	if got := p.Fake.CallsTo("chat") - before; got != 1 {
		t.Fatalf("%d upstream calls, want 1 (the no-cache line; none for the streamed one)", got)
	}
	b2 := startBatch(t, client, jsonlLine("f", "/v1/chat/completions", fresh), openai.BatchNewParamsEndpointV1ChatCompletions)
	waitBatch(t, client, b2.ID)
	if got := p.Fake.CallsTo("chat") - before; got != 2 {
		t.Fatalf("%d upstream calls, want 2: a no-cache line is fetched every time", got)
	}

	page, err := client.Batches.List(context.Background(), openai.BatchListParams{Limit: openai.Int(2)})
	if err != nil || len(page.Data) != 2 || page.Data[0].ID != b2.ID || page.Data[1].ID != b.ID || !page.HasMore {
		t.Fatalf("Batches.List: %v %s", err, page.RawJSON())
	}
	var ids []string
	for it := client.Batches.ListAutoPaging(context.Background(), openai.BatchListParams{Limit: openai.Int(1)}); it.Next(); {
		ids = append(ids, it.Current().ID)
	}
	if len(ids) != 8 { // two per route, and the two above
		t.Fatalf("auto-paging listed %v, want the 8 batches", ids)
	}
}

// TestE2EBatchLineOverMaxBody: a line whose body is over max_body_bytes gets the 413 a live request with
// that body gets, as its entry in the error file, and reaches no upstream; the file itself may be larger
// (its route has its own limit).
func TestE2EBatchLineOverMaxBody(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.MaxBodyBytes = 4096 })
	client := sdkClient(p)
	big := chatBody(strings.Repeat("x", 5000))
	b := waitBatch(t, client, startBatch(t, client, jsonlLine("big", "/v1/chat/completions", big)+jsonlLine("ok", "/v1/chat/completions", chatBody("small")),
		openai.BatchNewParamsEndpointV1ChatCompletions).ID)
	lines := byCustomID(t, fileLines(t, client, b.ErrorFileID))
	resp, live := p.Post("/v1/chat/completions", big)
	expectError(t, "the live request", resp, live, 413)
	if l := lines["big"]; l.Response == nil || l.Response.StatusCode != 413 || !jsonEqual(l.Response.Body, live) {
		t.Fatalf("line over max_body_bytes: %+v, live %s", l.Response, live)
	}
	if b.RequestCounts.Completed != 1 || p.Fake.CallsTo("chat") != 1 {
		t.Fatalf("batch %s, %d upstream calls", b.RawJSON(), p.Fake.CallsTo("chat"))
	}
}

// TestE2EBatchUpstreamError: an upstream's error answer (here a 503, relayed with retries off) is that
// line's entry in the error file, with the upstream's status and body, never a lost line and never taken
// for the proxy's own overload (which would be asked again).
func TestE2EBatchUpstreamError(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { noRetries(c); c.BatchConcurrency = 1 })
	client := sdkClient(p)
	const upstreamBody = `{"error":{"message":"the model is loading","type":"server_error","param":null,"code":"loading"}}`
	p.Fake.FailNext(1, 503, upstreamBody, nil)
	b := waitBatch(t, client, startBatch(t, client, jsonlLine("first", "/v1/chat/completions", chatBody("e1"))+
		jsonlLine("second", "/v1/chat/completions", chatBody("e2")), openai.BatchNewParamsEndpointV1ChatCompletions).ID)
	if b.Status != openai.BatchStatusCompleted || b.RequestCounts.Completed != 1 || b.RequestCounts.Failed != 1 {
		t.Fatalf("batch: %s", b.RawJSON())
	}
	l := byCustomID(t, fileLines(t, client, b.ErrorFileID))["first"]
	if l.Response == nil || l.Response.StatusCode != 503 || !jsonEqual(l.Response.Body, []byte(upstreamBody)) {
		t.Fatalf("the failed line: %+v", l.Response)
	}
	if n := p.Fake.CallsTo("chat"); n != 2 {
		t.Fatalf("%d upstream calls, want 2 (the failed line is not asked again)", n)
	}
}
