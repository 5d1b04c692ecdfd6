package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"llmcache/bench/fakeupstream"
)

// The Responses API through the proxy over raw HTTP: bytes, SSE framing, event order and sequence numbers,
// what is stored and what is not, responses by id, the per-request controls, coalescing and the figures.
// e2e_responses_sdk_test.go drives the same with the official Go SDK.

// respBody is a Responses request whose input is the string input; extra is spliced in as more members.
func respBody(input, extra string) string {
	return `{"model":"` + testModel + `","input":` + jsonString(input) + extra + `}`
}

// respStreamBody is respBody with "stream": true.
func respStreamBody(input, extra string) string { return respBody(input, `,"stream":true`+extra) }

// typedEvent is one event of a Responses stream.
type typedEvent struct {
	Name     string
	Data     string
	Response json.RawMessage // the "response" member, when the event has one
	Fields   map[string]any
}

// typedStream checks a Responses stream's framing and numbering and returns its events: every event is an
// "event:" line naming its type and exactly one "data:" line holding one JSON object, no line break inside,
// whose "type" is the event's name, and sequence_numbers count from 0 in order.
func typedStream(t *testing.T, what string, raw []byte) []typedEvent {
	t.Helper()
	var out []typedEvent
	for i, block := range strings.Split(strings.TrimSuffix(string(raw), "\n\n"), "\n\n") {
		lines := strings.Split(block, "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "event: ") || !strings.HasPrefix(lines[1], "data: {") {
			t.Fatalf("%s: event %d is not an event line and one data line: %q", what, i, block)
		}
		e := typedEvent{Name: strings.TrimPrefix(lines[0], "event: "), Data: strings.TrimPrefix(lines[1], "data: ")}
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(e.Data), &m); err != nil {
			t.Fatalf("%s: event %d data is not a JSON object: %v: %s", what, i, err, e.Data)
		}
		if err := json.Unmarshal([]byte(e.Data), &e.Fields); err != nil {
			t.Fatal(err)
		}
		if str(m["type"]) != e.Name {
			t.Fatalf("%s: event %d is %q but its data says %s", what, i, e.Name, m["type"])
		}
		if string(m["sequence_number"]) != fmt.Sprint(i) {
			t.Fatalf("%s: event %d (%s) has sequence_number %s", what, i, e.Name, m["sequence_number"])
		}
		e.Response = m["response"]
		out = append(out, e)
	}
	if !bytes.HasSuffix(raw, []byte("\n\n")) {
		t.Fatalf("%s: the stream does not end with a whole event: %q", what, raw[max(0, len(raw)-60):])
	}
	return out
}

// postRespStream sends a streamed Responses request and returns the answer and its raw body.
func (p *testProxy) postRespStream(body string, header ...string) (*http.Response, []byte) {
	p.t.Helper()
	resp, raw := p.Post("/v1/responses", body, header...)
	if resp.StatusCode == 200 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		p.t.Fatalf("streamed answer has Content-Type %q: %s", resp.Header.Get("Content-Type"), raw)
	}
	return resp, raw
}

// compactJSON is b without insignificant whitespace.
func compactJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return c.Bytes()
}

// respOutput decodes what tests look at in a response object.
type respOutput struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Output []struct {
		Type      string `json:"type"`
		Arguments string `json:"arguments"`
		Content   []struct {
			Text string `json:"text"`
		} `json:"content"`
	} `json:"output"`
}

func decodeResp(t *testing.T, b []byte) respOutput {
	t.Helper()
	var r respOutput
	if err := json.Unmarshal(b, &r); err != nil || r.ID == "" {
		t.Fatalf("not a response (%v): %s", err, b)
	}
	return r
}

// text is the output text of a response: its messages' output_text parts.
func (r respOutput) text() string {
	var b strings.Builder
	for _, o := range r.Output {
		for _, c := range o.Content {
			b.WriteString(c.Text)
		}
	}
	return b.String()
}

func expectRespCalls(t *testing.T, p *testProxy, want int64) {
	t.Helper()
	if got := p.Fake.CallsTo(fakeupstream.RouteResponses); got != want {
		t.Fatalf("upstream responses calls = %d, want %d", got, want)
	}
}

// TestE2EResponsesWholeAndStreamed: a non-streamed miss is the upstream's body byte for byte, and its hit the
// same bytes; a streamed hit on it replays typed events whose final response is that body, compacted. A
// streamed miss passes the upstream's events through; its hit, streamed or not, is the response of its
// response.completed. store, metadata and stream do not change the key; /responses works without /v1.
func TestE2EResponsesWholeAndStreamed(t *testing.T) {
	p := newTestProxy(t, nil)
	db := openCacheDB(t, p.DBPath)

	body := respBody("whole first", `,"store":true,"metadata":{"run":"1"}`)
	miss, missBody := p.Post("/v1/responses", body)
	expectCache(t, "whole miss", miss, missBody, 200, "MISS")
	key := cacheKey(t, miss)
	resp := decodeResp(t, missBody)
	if !strings.HasPrefix(resp.text(), "echo: whole first") {
		t.Fatalf("miss answered %s", missBody)
	}
	hit, hitBody := p.Post("/responses", respBody("whole first", `,"store":false,"metadata":{"run":"2"}`))
	expectCache(t, "whole hit", hit, hitBody, 200, "HIT")
	if !bytes.Equal(hitBody, missBody) || cacheKey(t, hit) != key {
		t.Fatalf("the hit differs from the miss:\n%s\n%s", hitBody, missBody)
	}
	expectRespCalls(t, p, 1)
	p.waitWritten()
	if row := db.mustRow(key, missBody); row.Kind != "responses" || row.Model != testModel {
		t.Fatalf("row kind %q model %q", row.Kind, row.Model)
	}

	// A streamed request of the same entry: a replay.
	sHit, raw := p.postRespStream(respStreamBody("whole first", ""))
	expectCache(t, "streamed hit of a whole answer", sHit, raw, 200, "HIT")
	evs := typedStream(t, "replay", raw)
	if last := evs[len(evs)-1]; last.Name != "response.completed" || !bytes.Equal(last.Response, compactJSON(t, missBody)) {
		t.Fatalf("the replay ends with %s %s, want response.completed with the stored response", last.Name, last.Response)
	}
	names := []string{}
	for _, e := range evs {
		if len(names) == 0 || names[len(names)-1] != e.Name {
			names = append(names, e.Name)
		}
	}
	wantNames := "response.created response.in_progress response.output_item.added response.content_part.added response.output_text.delta " +
		"response.output_text.done response.content_part.done response.output_item.done response.completed"
	if strings.Join(names, " ") != wantNames {
		t.Fatalf("replay order %v", names)
	}
	var text strings.Builder
	for _, e := range evs {
		if e.Name == "response.output_text.delta" {
			text.WriteString(e.Fields["delta"].(string))
		}
	}
	if text.String() != resp.text() {
		t.Fatalf("the deltas give %q, the response says %q", text.String(), resp.text())
	}
	expectRespCalls(t, p, 1)

	// A streamed miss: the upstream's events, live; then its hits.
	sMiss, liveRaw := p.postRespStream(respStreamBody("streamed first", ""))
	expectCache(t, "streamed miss", sMiss, liveRaw, 200, "MISS")
	live := typedStream(t, "live", liveRaw)
	final := live[len(live)-1]
	if final.Name != "response.completed" {
		t.Fatalf("the live stream ends with %s", final.Name)
	}
	wHit, wBody := p.Post("/v1/responses", respBody("streamed first", ""))
	expectCache(t, "whole hit of a streamed answer", wHit, wBody, 200, "HIT")
	if !bytes.Equal(wBody, final.Response) {
		t.Fatalf("the whole hit is not the response of response.completed:\n%s\n%s", wBody, final.Response)
	}
	sHit2, replayRaw := p.postRespStream(respStreamBody("streamed first", ""))
	expectCache(t, "streamed hit of a streamed answer", sHit2, replayRaw, 200, "HIT")
	replay := typedStream(t, "replay of a stream", replayRaw)
	if !bytes.Equal(replay[len(replay)-1].Response, final.Response) {
		t.Fatal("the replay's final response differs from the live one")
	}
	expectRespCalls(t, p, 2)
}

// TestE2EResponsesNotStored: failed, errored and cut streams, failed and output-less whole answers are passed
// on and never stored; an answer cut short by max_output_tokens (incomplete) is stored like a finished one.
func TestE2EResponsesNotStored(t *testing.T) {
	p := newTestProxy(t, noRetries)
	twice := func(what, body string, header ...string) (first, second []byte) {
		t.Helper()
		_, first = p.Post("/v1/responses", body, header...)
		resp, b := p.Post("/v1/responses", body, header...)
		if resp.Header.Get("X-Cache") == "HIT" {
			t.Fatalf("%s was stored: %s", what, b)
		}
		return first, b
	}

	// Streams that end in response.failed or an error event: the clients get that end, nothing is stored.
	p.Fake.ResetCounters()
	failed, _ := twice("a stream ending in response.failed", respStreamBody("FAIL", ""))
	if evs := typedStream(t, "failed", failed); evs[len(evs)-1].Name != "response.failed" {
		t.Fatalf("a failed stream ends with %s", evs[len(evs)-1].Name)
	}
	expectRespCalls(t, p, 2)
	errored, _ := twice("a stream ending in an error event", respStreamBody("ERROR", ""))
	if !bytes.Contains(errored, []byte("event: error\ndata: {\"type\":\"error\"")) {
		t.Fatalf("an errored stream: %s", errored)
	}
	cut, _ := twice("a cut stream", respStreamBody("cut me", ""), "X-Fake-Cut-After", "5")
	if i := bytes.LastIndex(cut, []byte("event: error\n")); i < 0 || !bytes.Contains(cut[i:], []byte(`"code":"upstream_stream_cut"`)) {
		t.Fatalf("a cut stream does not end with an error event: %s", cut[max(0, len(cut)-300):])
	}
	if bytes.Contains(cut, []byte("response.completed")) {
		t.Fatal("a cut stream has response.completed")
	}

	// Whole answers: a failed response, one without output.
	for _, in := range []string{"FAIL", "EMPTY"} {
		first, _ := twice(in, respBody(in, ""))
		if r := decodeResp(t, first); len(r.Output) != 0 {
			t.Fatalf("%s answered %s", in, first)
		}
	}
	p.waitWritten()
	if n := openCacheDB(t, p.DBPath).count(); n != 0 {
		t.Fatalf("%d entries on disk, want none", n)
	}

	// Incomplete for max_output_tokens: stored, streamed or not.
	for _, body := range []string{respBody("cut short", `,"max_output_tokens":2`), respStreamBody("cut short too", `,"max_output_tokens":2`)} {
		_, first := p.Post("/v1/responses", body)
		resp, second := p.Post("/v1/responses", body)
		expectCache(t, "an incomplete answer", resp, second, 200, "HIT")
		if !bytes.Equal(first, second) && !strings.Contains(body, `"stream":true`) {
			t.Fatal("the hit differs")
		}
		if strings.Contains(body, `"stream":true`) {
			if evs := typedStream(t, "incomplete replay", second); evs[len(evs)-1].Name != "response.incomplete" {
				t.Fatalf("an incomplete replay ends with %s", evs[len(evs)-1].Name)
			}
		} else if decodeResp(t, second).Status != "incomplete" {
			t.Fatalf("status %s", second)
		}
	}
}

// TestE2EResponsesByID: GET /v1/responses/{id} answers a cached response from the cache (the requester's
// namespace only; as typed events with stream=true), else from the upstream; DELETE goes upstream and deletes
// the cached entry.
func TestE2EResponsesByID(t *testing.T) {
	p := newTestProxy(t, nil)
	_, stored := p.Post("/v1/responses", respBody("find me by id", ""))
	id := decodeResp(t, stored).ID

	// At once: the writer may not have written it yet.
	resp, got := p.Get("/v1/responses/" + id)
	expectCache(t, "GET by id", resp, got, 200, "HIT")
	if !bytes.Equal(got, stored) || resp.Header.Get("X-Cache-Source") != "db" {
		t.Fatalf("GET by id answered (%s) %s, want the stored bytes", resp.Header.Get("X-Cache-Source"), got)
	}
	key := cacheKey(t, resp)
	resp, raw := p.Get("/responses/" + id + "?stream=true")
	expectCache(t, "GET by id, streamed", resp, raw, 200, "HIT")
	if evs := typedStream(t, "GET stream", raw); !bytes.Equal(evs[len(evs)-1].Response, compactJSON(t, stored)) {
		t.Fatal("the streamed GET does not end with the stored response")
	}
	if n := p.Fake.CallsTo(fakeupstream.RouteResponseIDs); n != 0 {
		t.Fatalf("%d upstream GETs for a cached response", n)
	}

	// Another namespace does not see it: the upstream answers (it kept the response).
	resp, got = p.do(newReq(t, "GET", p.URL+"/v1/responses/"+id, "X-Cache-Namespace", "other"))
	expectCache(t, "GET by id from another namespace", resp, got, 200, "MISS")
	if resp.Header.Get("X-Cache-Key") != "" || p.Fake.CallsTo(fakeupstream.RouteResponseIDs) != 1 {
		t.Fatalf("X-Cache-Key %q, %d upstream GETs", resp.Header.Get("X-Cache-Key"), p.Fake.CallsTo(fakeupstream.RouteResponseIDs))
	}
	resp, got = p.do(newReq(t, "GET", p.URL+"/v1/responses/"+id, "X-Cache-Namespace", "other", "X-Cache-Mode", "read_only"))
	if e := expectError(t, "read_only GET from another namespace", resp, got, 404); str(e.Error.Code) != "cache_miss" {
		t.Fatalf("code %s", e.Error.Code)
	}
	// An id it never saw: the upstream's 404 passes through.
	resp, got = p.Get("/v1/responses/resp_unknown")
	expectError(t, "GET of an unknown id", resp, got, 404)

	// DELETE: upstream, then the entry.
	resp, got = p.do(newReq(t, "DELETE", p.URL+"/v1/responses/"+id))
	if resp.StatusCode != 200 || string(got) != `{"id":"`+id+`","object":"response","deleted":true}` && !strings.Contains(string(got), `"deleted": true`) {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, got)
	}
	if cacheKey(t, resp) != key || !strings.Contains(resp.Header.Get("Cache-Status"), "detail=entry-deleted") {
		t.Fatalf("DELETE: X-Cache-Key %q, Cache-Status %q", resp.Header.Get("X-Cache-Key"), resp.Header.Get("Cache-Status"))
	}
	if _, ok := openCacheDB(t, p.DBPath).row(key); ok {
		t.Fatal("the entry is still on disk after DELETE")
	}
	resp, got = p.Get("/v1/responses/" + id)
	expectError(t, "GET after DELETE", resp, got, 404)
	resp, got = p.Post("/v1/responses", respBody("find me by id", ""))
	expectCache(t, "the request again after DELETE", resp, got, 200, "MISS")

	// read_only DELETE never goes upstream.
	calls := p.Fake.CallsTo(fakeupstream.RouteResponseIDs)
	id2 := decodeResp(t, got).ID
	resp, got = p.do(newReq(t, "DELETE", p.URL+"/v1/responses/"+id2, "X-Cache-Mode", "read_only"))
	if resp.StatusCode != 200 || !strings.Contains(string(got), `"deleted":true`) || p.Fake.CallsTo(fakeupstream.RouteResponseIDs) != calls {
		t.Fatalf("read_only DELETE: %d %s, %d upstream calls", resp.StatusCode, got, p.Fake.CallsTo(fakeupstream.RouteResponseIDs)-calls)
	}
	resp, got = p.do(newReq(t, "DELETE", p.URL+"/v1/responses/"+id2, "X-Cache-Mode", "read_only"))
	expectError(t, "read_only DELETE again", resp, got, 404)
}

// newReq is a request with header pairs.
func newReq(t *testing.T, method, url string, header ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

// TestE2EResponsesControls: the per-request controls and the request checks on the Responses route.
func TestE2EResponsesControls(t *testing.T) {
	p := newTestProxy(t, nil)
	body := respBody("controls", "")
	post := func(what, body, xcache string, header ...string) []byte {
		t.Helper()
		resp, b := p.Post("/v1/responses", body, header...)
		expectCache(t, what, resp, b, 200, xcache)
		return b
	}
	post("no-store miss", body, "MISS", "Cache-Control", "no-store")
	first := post("miss", body, "MISS")
	post("hit", body, "HIT")
	fresh := post("no-cache", body, "REFRESH", "Cache-Control", "no-cache")
	if decodeResp(t, fresh).ID == decodeResp(t, first).ID {
		t.Fatal("no-cache answered the stored response")
	}
	if got := post("hit after refresh", body, "HIT"); !bytes.Equal(got, fresh) {
		t.Fatal("the refreshed answer did not replace the entry")
	}
	post("sample 1", body, "MISS", "X-Cache-Sample", "1")
	post("sample 1 again", respBody("controls", `,"cache":{"sample":1}`), "HIT")
	post("namespace", body, "MISS", "X-Cache-Namespace", "ns2")
	post("mode off", body, "BYPASS", "X-Cache-Mode", "off")
	resp, b := p.Post("/v1/responses", respBody("never asked", ""), "X-Cache-Mode", "read_only")
	if e := expectError(t, "read_only miss", resp, b, 404); str(e.Error.Code) != "cache_miss" {
		t.Fatalf("read_only miss: %s", b)
	}
	post("read_only hit", body, "HIT", "X-Cache-Mode", "read_only")
	calls := p.Fake.CallsTo(fakeupstream.RouteResponses)

	for _, bad := range []struct{ body, param string }{
		{`{"model":"` + testModel + `"}`, "input"},
		{`{"model":"` + testModel + `","input":3}`, "input"},
		{`{"input":"x"}`, "model"},
		{`{"model":"` + testModel + `","input":"x","stream":"yes"}`, "stream"},
	} {
		resp, b := p.Post("/v1/responses", bad.body)
		if e := expectError(t, bad.body, resp, b, 400); str(e.Error.Param) != bad.param {
			t.Errorf("%s: param %s, want %s", bad.body, e.Error.Param, bad.param)
		}
	}
	if p.Fake.CallsTo(fakeupstream.RouteResponses) != calls {
		t.Fatal("a refused request went upstream")
	}
}

// TestE2EResponsesCoalesced: identical requests in flight together, streamed and not, make one upstream call;
// the streaming ones get the live events, the others the response of its response.completed.
func TestE2EResponsesCoalesced(t *testing.T) {
	p := newTestProxy(t, nil)
	p.Fake.SetLatency(300 * time.Millisecond)
	var bodies []string
	for i := range 8 {
		if i%2 == 0 {
			bodies = append(bodies, respStreamBody("together", ""))
		} else {
			bodies = append(bodies, respBody("together", ""))
		}
	}
	res := sendAll(p.URL+"/v1/responses", bodies)
	expectRespCalls(t, p, 1)
	var whole, final []byte
	for i, r := range res {
		if r.err != nil || r.status != 200 {
			t.Fatalf("request %d: %v %d %s", i, r.err, r.status, r.body)
		}
		if i%2 == 0 {
			evs := typedStream(t, "coalesced stream", r.body)
			final = evs[len(evs)-1].Response
		} else if whole == nil {
			whole = r.body
		} else if !bytes.Equal(whole, r.body) {
			t.Fatal("coalesced whole answers differ")
		}
	}
	if final != nil && !bytes.Equal(compactJSON(t, whole), compactJSON(t, final)) {
		t.Fatalf("the whole answer and the streams' final response differ:\n%s\n%s", whole, final)
	}
}

// TestE2EResponsesFigures: /stats and /metrics count the Responses route and its by-id route, and the hit
// rate counts POST /v1/responses (a GET by id is left out of it, like the models listing).
func TestE2EResponsesFigures(t *testing.T) {
	p := newTestProxy(t, nil)
	_, b := p.Post("/v1/responses", respBody("counted", ""))
	p.Post("/v1/responses", respBody("counted", ""))
	p.Get("/v1/responses/" + decodeResp(t, b).ID)
	p.Get("/v1/responses/resp_unknown")
	got, all := getByRoute(t, p)
	if r := got["responses"]; r["miss"] != 1 || r["memory_hit"] != 1 {
		t.Errorf("/stats by_route.responses = %v", r)
	}
	if r := got["responses_by_id"]; r["db_hit"] != 1 || r["error"] != 1 {
		t.Errorf("/stats by_route.responses_by_id = %v", r)
	}
	var rate float64
	json.Unmarshal(all["hit_rate"], &rate)
	if rate != 0.5 {
		t.Errorf("hit_rate = %v, want 0.5 (one hit, one miss; GETs by id left out)", rate)
	}
	families := scrape(t, p)
	if v, _ := metricValue(t, families, "llmcache_requests_total", map[string]string{"route": "responses", "outcome": "memory_hit"}); v != 1 {
		t.Errorf("llmcache_requests_total{route=responses,outcome=memory_hit} = %v", v)
	}
	if v, _ := metricValue(t, families, "llmcache_request_duration_seconds", map[string]string{"route": "responses_by_id", "outcome": "db_hit"}); v != 1 {
		t.Errorf("llmcache_request_duration_seconds{route=responses_by_id,outcome=db_hit} has %v samples", v)
	}
}

// TestE2EResponsesLiveAndRepeatAtCompleted: a streamed miss reaches the client event by event while the
// upstream still writes; a client that sends the same request the moment it reads response.completed (the
// SDKs stop there) gets a hit, since the proxy stores the response before it lets that event through. Each
// round races the proxy's end of the upstream body, so the rounds are repeated.
func TestE2EResponsesLiveAndRepeatAtCompleted(t *testing.T) {
	p := newTestProxy(t, nil)
	resp, start, err := openStream(context.Background(), testClient, p.URL+"/v1/responses", respStreamBody("live events", ""),
		"X-Fake-Chunk-Delay-Ms", "60")
	if err != nil {
		t.Fatal(err)
	}
	rd := newSSEReader(resp.Body, start)
	if first, err := rd.next(); err != nil || first.Event != "response.created" {
		t.Fatalf("first event %+v, %v", first, err)
	}
	if n := p.Fake.InFlight(); n != 1 {
		t.Fatalf("the first event arrived when the upstream had %d streams in flight, want 1 (the stream was buffered)", n)
	}
	resp.Body.Close()

	const rounds = 15
	for i := range rounds {
		input := fmt.Sprintf("repeat at completed %d", i)
		resp, start, err := openStream(context.Background(), testClient, p.URL+"/v1/responses", respStreamBody(input, ""))
		if err != nil {
			t.Fatal(err)
		}
		rd := newSSEReader(resp.Body, start)
		for {
			ev, err := rd.next()
			if err != nil {
				t.Fatalf("round %d: the stream ended before response.completed: %v", i, err)
			}
			if ev.Event == "response.completed" {
				break
			}
		}
		r, b := p.Post("/v1/responses", respBody(input, ""))
		expectCache(t, fmt.Sprintf("round %d: repeat sent at response.completed", i), r, b, 200, "HIT")
		r, b = p.postRespStream(respStreamBody(input, ""))
		expectCache(t, fmt.Sprintf("round %d: streamed repeat", i), r, b, 200, "HIT")
		resp.Body.Close()
	}
}

// TestE2EResponsesVersions: with cache_override_mode, raising cache_version makes a stored response stale:
// the request is a miss whose fresh response (a new id) replaces the entry, and a GET by the old id goes to
// the upstream instead of answering the stale entry.
func TestE2EResponsesVersions(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.CacheOverrideMode = true })
	_, old := p.Post("/v1/responses", respBody("versioned", ""))
	oldID := decodeResp(t, old).ID
	p.waitWritten()
	p.cfg.CacheVersion = 1
	p.Restart()

	resp, b := p.Get("/v1/responses/" + oldID)
	expectCache(t, "GET by id of a stale entry", resp, b, 200, "MISS")
	if p.Fake.CallsTo(fakeupstream.RouteResponseIDs) != 1 {
		t.Fatal("the GET of a stale entry did not go upstream")
	}
	resp, fresh := p.Post("/v1/responses", respBody("versioned", ""))
	expectCache(t, "a stale entry", resp, fresh, 200, "MISS")
	if decodeResp(t, fresh).ID == oldID {
		t.Fatal("the stale response was served")
	}
	resp, b = p.Post("/v1/responses", respBody("versioned", ""))
	expectCache(t, "the fresh entry", resp, b, 200, "HIT")
	if !bytes.Equal(b, fresh) {
		t.Fatal("the hit is not the fresh response")
	}
}
