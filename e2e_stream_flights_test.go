package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// streamClient is loadClient's twin for the streaming tests: enough connections for hundreds of clients at
// once, each keeping its connection.
var streamClient = &http.Client{
	Timeout: 60 * time.Second,
	Transport: &http.Transport{MaxIdleConns: 1000, MaxIdleConnsPerHost: 1000, MaxConnsPerHost: 0,
		IdleConnTimeout: 30 * time.Second},
}

// decodeStreamed reads a collected streamed answer: it must be a complete SSE body.
func decodeStreamed(r result) (*assembled, error) {
	events, err := readAllSSE(bytes.NewReader(r.body), time.Now())
	if err != nil {
		return nil, err
	}
	return assemble(events)
}

// TestE2EStreamCoalescingMixed: 500 identical misses at once, half streamed and half not, against a slow
// upstream: one upstream call; every non-streamed client gets the same bytes and every streamed client a
// complete stream of the same answer. Both kinds of leader: a streaming one (whose followers get its stream
// live, or its assembled answer) and a non-streamed one (whose streaming followers get a replay).
func TestE2EStreamCoalescingMixed(t *testing.T) {
	for _, leaderStreams := range []bool{true, false} {
		name := "whole leader"
		if leaderStreams {
			name = "streaming leader"
		}
		t.Run(name, func(t *testing.T) { testCoalescingMixed(t, leaderStreams) })
	}
}

func testCoalescingMixed(t *testing.T, leaderStreams bool) {
	p, gate := newGatedProxy(t, nil)
	p.Fake.SetChunkDelay(2 * time.Millisecond) // the streaming followers get the live stream piece by piece
	const n = 500
	const content = "five hundred at once"
	bodies := make([]string, n)
	for i := range bodies {
		if (i%2 == 0) == leaderStreams {
			bodies[i] = chatStreamBody(content, false)
		} else {
			bodies[i] = chatBody(content)
		}
	}
	started := time.Now()
	out := make([]result, n)
	done := make(chan int, n)
	release := make(chan struct{})
	for i := range bodies {
		go func() {
			if i > 0 {
				<-release
			}
			out[i] = send(streamClient, p.URL+"/v1/chat/completions", bodies[i])
			done <- i
		}()
	}
	// Request 0 leads: its call is held at the gate while the 499 others join it.
	waitFor(t, "the leader's call at the gate", func() bool { return gate.arrived.Load() == 1 })
	close(release)
	// Every request waits on a flight: the leader's, held at the gate (there should be only one).
	admitted := func() int64 { return getStats(t, p).Upstream.Waiting }
	deadline := time.Now().Add(90 * time.Second) // generous: 500 connections under -race on two busy cores
	for admitted() < n {
		if a := gate.arrived.Load(); a > 1 {
			gate.release()
			t.Fatalf("%d upstream calls for %d identical requests: they were not all merged into one flight", a, n)
		}
		if time.Now().After(deadline) {
			gate.release()
			t.Fatalf("after 90 s only %d of %d requests reached a flight", admitted(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	gate.release()
	for range n {
		<-done
	}
	t.Logf("%d mixed requests answered in %v", n, time.Since(started))

	expectCalls(t, p, 1)
	var whole []byte
	var w *wholeAnswer
	sources := map[string]int{}
	key := ""
	for i, r := range out { // the non-streamed ones first: they define the answer
		if strings.Contains(bodies[i], `"stream":true`) {
			continue
		}
		if r.err != nil || r.status != 200 {
			t.Fatalf("non-streamed request %d: %v status %d: %s", i, r.err, r.status, r.body)
		}
		if whole == nil {
			whole = r.body
			var err error
			if w, err = decodeWhole(whole, "chat.completion"); err != nil {
				t.Fatal(err)
			}
			key = r.header.Get("X-Cache-Key")
		}
		if !bytes.Equal(r.body, whole) {
			t.Fatalf("non-streamed request %d got other bytes:\n %s\nvs\n %s", i, r.body, whole)
		}
	}
	if err := checkEcho(whole, content); err != nil {
		t.Fatal(err)
	}
	for i, r := range out {
		if r.err != nil || r.status != 200 {
			t.Fatalf("request %d: %v status %d: %s", i, r.err, r.status, r.body)
		}
		if k := r.header.Get("X-Cache-Key"); k != key {
			t.Fatalf("request %d: key %q, want %q", i, k, key)
		}
		xc, src := r.header.Get("X-Cache"), r.header.Get("X-Cache-Source")
		sources[src]++
		wantSrc := "coalesced"
		if i == 0 {
			wantSrc = "upstream"
		}
		if xc != "MISS" || src != wantSrc {
			t.Errorf("request %d: X-Cache %q from %q, want MISS from %s", i, xc, src, wantSrc)
		}
		if !strings.Contains(bodies[i], `"stream":true`) {
			continue
		}
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("streamed request %d: Content-Type %q: %s", i, ct, r.body)
		}
		a, err := decodeStreamed(r)
		if err != nil {
			t.Fatalf("streamed request %d: %v", i, err)
		}
		if !a.Done || a.ErrorData != "" {
			t.Fatalf("streamed request %d: incomplete stream: %s", i, r.body)
		}
		if diff := sameAnswer(a, w); diff != "" {
			t.Fatalf("streamed request %d differs from the non-streamed answer: %s", i, diff)
		}
	}
	t.Logf("sources: %v", sources)
}

// TestE2EStreamCoalescingGap: a request that reaches the dispatcher after its twin's flight ended, while
// the answer is not on disk yet (here the memory layer is off and the writer holds it), is answered from
// the dispatcher's recent answers, not by a second upstream call.
func TestE2EStreamCoalescingGap(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.Cache.Enabled = false
		c.Cache.FlushInterval = 60_000 // the writer holds the answer for the whole test
		c.Cache.BatchWriteSize = 1000
	})
	body := chatStreamBody("answered once", false)
	sr, raw := p.postStream(chatPath, body)
	expectStream(t, "first", sr, raw, "MISS")
	sr, raw = p.postStream(chatPath, body)
	expectStream(t, "second", sr, raw, "HIT")
	expectCalls(t, p, 1)
}

// TestE2EStreamFollowersJoinLive: identical requests that arrive while a streamed miss is under way join it:
// a streaming follower gets the whole stream from its first event, live, byte for byte what the leader
// gets; a non-streamed follower gets the assembled answer. One upstream call.
func TestE2EStreamFollowersJoinLive(t *testing.T) {
	p := newTestProxy(t, nil)
	const content = "join me live"
	body := chatStreamBody(content, true)
	url := p.URL + "/v1/chat/completions"
	ctx := context.Background()

	// The upstream stops after its first event until both followers have joined: they join a stream known
	// to be under way, however slowly they arrive.
	p.Fake.HoldStreams()
	resp, start, err := openStream(ctx, testClient, url, body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var leaderRaw bytes.Buffer
	lrd := newSSEReader(io.TeeReader(resp.Body, &leaderRaw), start)
	first, err := lrd.next()
	if err != nil {
		t.Fatal(err)
	}

	whole := make(chan result, 1)
	go func() { whole <- send(testClient, url, chatBody(content)) }()
	// The leader has its answer (the live stream): only the non-streamed follower waits on the call.
	waitWaiting(t, p, 1)

	fresp, fstart, err := openStream(ctx, testClient, url, body)
	if err != nil {
		t.Fatal(err)
	}
	defer fresp.Body.Close()
	if xc, src := fresp.Header.Get("X-Cache"), fresp.Header.Get("X-Cache-Source"); xc != "MISS" || src != "coalesced" {
		t.Fatalf("streaming follower: X-Cache %q from %q, want MISS from coalesced", xc, src)
	}
	if k := fresp.Header.Get("X-Cache-Key"); k != resp.Header.Get("X-Cache-Key") {
		t.Fatalf("follower key %q, leader key %q", k, resp.Header.Get("X-Cache-Key"))
	}
	var followerRaw bytes.Buffer
	frd := newSSEReader(io.TeeReader(fresp.Body, &followerRaw), fstart)
	// The upstream is still held after its first event: the follower gets that event from the live stream.
	ffirst, err := frd.next()
	if err != nil {
		t.Fatal(err)
	}
	if ffirst.Data != first.Data {
		t.Fatalf("the follower's stream starts with %q, the leader's with %q", ffirst.Data, first.Data)
	}
	p.Fake.ReleaseStreams()
	readRest := func(rd *sseReader) []sseEvent {
		var evs []sseEvent
		for {
			ev, err := rd.next()
			if err == io.EOF {
				return evs
			}
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
	}
	levents := append([]sseEvent{first}, readRest(lrd)...)
	fevents := append([]sseEvent{ffirst}, readRest(frd)...)
	if !bytes.Equal(leaderRaw.Bytes(), followerRaw.Bytes()) {
		t.Fatalf("the follower's stream differs from the leader's:\n leader   %q\n follower %q", leaderRaw.Bytes(), followerRaw.Bytes())
	}
	la, err := assemble(levents)
	if err != nil || !la.Done {
		t.Fatalf("leader stream: %v (done %v)", err, la != nil && la.Done)
	}
	if _, err := assemble(fevents); err != nil {
		t.Fatal(err)
	}

	r := <-whole
	if r.err != nil || r.status != 200 {
		t.Fatalf("non-streamed follower: %v %d %s", r.err, r.status, r.body)
	}
	if xc, src := r.header.Get("X-Cache"), r.header.Get("X-Cache-Source"); xc != "MISS" || src != "coalesced" {
		t.Errorf("non-streamed follower: X-Cache %q from %q, want MISS from coalesced", xc, src)
	}
	w, err := decodeWhole(r.body, "chat.completion")
	if err != nil {
		t.Fatal(err)
	}
	if diff := sameAnswer(la, w); diff != "" {
		t.Fatalf("the non-streamed follower's answer differs from the stream: %s", diff)
	}
	expectCalls(t, p, 1)
}

// TestE2EStreamFollowersOfWholeLeader: streaming requests that join a non-streamed miss get its answer
// replayed as a stream when it arrives.
func TestE2EStreamFollowersOfWholeLeader(t *testing.T) {
	p, gate := newGatedProxy(t, nil)
	const content = "lead without a stream"
	url := p.URL + "/v1/chat/completions"
	leader := make(chan result, 1)
	go func() { leader <- send(testClient, url, chatBody(content)) }()
	gate.waitArrived(t, 1)
	// The leader's call is held at the gate until the three followers have joined it.
	bodies := []string{chatStreamBody(content, false), chatStreamBody(content, true), chatStreamBody(content, false)}
	followers := make(chan []result, 1)
	go func() { followers <- sendAll(url, bodies) }()
	waitWaiting(t, p, 4)
	gate.release()
	res, l := <-followers, <-leader
	if l.err != nil || l.status != 200 || l.header.Get("X-Cache-Source") != "upstream" {
		t.Fatalf("leader: %v %d source %q: %s", l.err, l.status, l.header.Get("X-Cache-Source"), l.body)
	}
	w, err := decodeWhole(l.body, "chat.completion")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.err != nil || r.status != 200 {
			t.Fatalf("follower %d: %v %d %s", i, r.err, r.status, r.body)
		}
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("follower %d: Content-Type %q", i, ct)
		}
		if xc, src := r.header.Get("X-Cache"), r.header.Get("X-Cache-Source"); xc != "MISS" || src != "coalesced" {
			t.Errorf("follower %d: X-Cache %q from %q, want MISS from coalesced", i, xc, src)
		}
		a, err := decodeStreamed(r)
		if err != nil {
			t.Fatalf("follower %d: %v", i, err)
		}
		if !a.Done {
			t.Fatalf("follower %d: no [DONE]: %s", i, r.body)
		}
		if diff := sameAnswer(a, w); diff != "" {
			t.Fatalf("follower %d: the replay differs from the leader's answer: %s", i, diff)
		}
		if want := i == 1; (a.UsageN == 1) != want {
			t.Errorf("follower %d: %d usage chunks, include_usage %v", i, a.UsageN, want)
		}
	}
	expectCalls(t, p, 1)
}

// TestE2EStreamLeaderFailureReachesFollowers: when the one upstream call of a flight fails, every client
// waiting on it, streamed or not, gets the same error, and nothing is stored.
func TestE2EStreamLeaderFailureReachesFollowers(t *testing.T) {
	for _, leaderStreams := range []bool{true, false} {
		name := "whole leader"
		if leaderStreams {
			name = "streaming leader"
		}
		t.Run(name, func(t *testing.T) {
			p, gate := newGatedProxy(t, noRetries)
			const content = "doomed flight"
			url := p.URL + "/v1/chat/completions"
			// The upstream fails the call, which the gate holds until the followers have all joined it.
			hdr := []string{"X-Fake-Status", "500"}
			body := func(stream bool) string {
				if stream {
					return chatStreamBody(content, false)
				}
				return chatBody(content)
			}
			leader := make(chan result, 1)
			go func() { leader <- send(testClient, url, body(leaderStreams), hdr...) }()
			gate.waitArrived(t, 1)
			bodies := make([]string, 19)
			for i := range bodies {
				bodies[i] = body(i%2 == 0)
			}
			followers := make(chan []result, 1)
			go func() { followers <- sendAll(url, bodies, hdr...) }()
			waitWaiting(t, p, 20)
			gate.release()
			res := append(<-followers, <-leader)
			expectCalls(t, p, 1)
			var first []byte
			for i, r := range res {
				if r.err != nil || r.status != 500 {
					t.Fatalf("client %d: %v status %d, want the upstream's 500: %s", i, r.err, r.status, r.body)
				}
				if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("client %d: Content-Type %q, want the upstream's application/json", i, ct)
				}
				expectErrorBody(t, "follower", r)
				if first == nil {
					first = r.body
				} else if !bytes.Equal(r.body, first) {
					t.Errorf("client %d got another error body: %s vs %s", i, r.body, first)
				}
			}
			// Every client got an error, the 19 followers too: /stats counts 20 errors and nothing coalesced.
			if s := getStats(t, p); s.Requests.Errors != 20 || s.Requests.Coalesced != 0 {
				t.Errorf("/stats: %d errors and %d coalesced, want 20 and 0", s.Requests.Errors, s.Requests.Coalesced)
			}
			key := res[0].header.Get("X-Cache-Key")
			p.Stop()
			if n := openCacheDB(t, p.DBPath).count(); n != 0 {
				t.Fatalf("%d rows stored after a failed flight (key %s)", n, key)
			}
		})
	}
}

// TestE2EStreamFailNextReachesQueuedFollowers: a flight queued behind a busy upstream slot gathers streamed
// and non-streamed followers; when its one call is answered 429 with Retry-After, all of them get that
// answer, byte for byte, with the header.
func TestE2EStreamFailNextReachesQueuedFollowers(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.MaxConcurrentRequests = 1; c.MaxRetries = 0 })
	url := p.URL + "/v1/chat/completions"
	// The blocker is a stream the upstream holds after its first event: it keeps the only slot, and its call
	// is past the upstream's FailNext, which the flight's call then meets.
	p.Fake.HoldStreams()
	blocker, _, err := openStream(context.Background(), testClient, url, chatStreamBody("holds the only slot", false))
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Body.Close()
	brd := bufio.NewReader(blocker.Body)
	if line, err := brd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("blocker: status %d, first line %q, %v", blocker.StatusCode, line, err)
	}
	const failBody = `{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}`
	p.Fake.FailNext(1, 429, failBody, map[string]string{"Retry-After": "7"})

	bodies := make([]string, 20)
	for i := range bodies {
		if i%2 == 0 {
			bodies[i] = chatStreamBody("rate limited flight", i%4 == 0)
		} else {
			bodies[i] = chatBody("rate limited flight")
		}
	}
	flight := make(chan []result, 1)
	go func() { flight <- sendAll(url, bodies) }()
	waitWaiting(t, p, 20) // the blocker has its answer (its live stream); the flight's 20 wait for the slot
	p.Fake.ReleaseStreams()
	res := <-flight
	if rest, err := io.ReadAll(brd); err != nil || blocker.StatusCode != 200 || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("blocker: %v %d %s", err, blocker.StatusCode, rest)
	}
	expectCalls(t, p, 2) // the blocker and the flight
	for i, r := range res {
		if r.err != nil || r.status != 429 {
			t.Fatalf("client %d: %v status %d, want 429: %s", i, r.err, r.status, r.body)
		}
		if string(r.body) != failBody {
			t.Errorf("client %d: body %s, want the upstream's %s", i, r.body, failBody)
		}
		if ra := r.header.Get("Retry-After"); ra != "7" {
			t.Errorf("client %d: Retry-After %q, want the upstream's 7", i, ra)
		}
	}
	// Every client of the flight got the 429, the 19 followers too: /stats counts 20 errors, nothing coalesced.
	if s := getStats(t, p); s.Requests.Errors != 20 || s.Requests.Coalesced != 0 {
		t.Errorf("/stats: %d errors and %d coalesced, want 20 and 0", s.Requests.Errors, s.Requests.Coalesced)
	}
	key := res[0].header.Get("X-Cache-Key")
	// The next identical request goes upstream again and is a miss.
	r, b := p.Post("/v1/chat/completions", chatBody("rate limited flight"))
	expectCache(t, "after the failed flight", r, b, 200, "MISS")
	expectCalls(t, p, 3)
	if cacheKey(t, r) != key {
		t.Fatal("key changed")
	}
}

// TestE2EStreamCutReachesFollowers: when a streamed flight breaks off, a streaming follower gets the error
// event too, a non-streamed follower a 502 upstream_stream_cut, and nothing is stored.
func TestE2EStreamCutReachesFollowers(t *testing.T) {
	p := newTestProxy(t, nil)
	const content = "cut under everyone"
	url := p.URL + "/v1/chat/completions"
	body := chatStreamBody(content, false)
	// The upstream stops after its first event until both followers have joined, then breaks off.
	p.Fake.HoldStreams()
	resp, start, err := openStream(context.Background(), testClient, url, body, "X-Fake-Cut-After", "8")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lrd := newSSEReader(resp.Body, start)
	first, err := lrd.next()
	if err != nil {
		t.Fatal(err)
	}
	whole := make(chan result, 1)
	go func() { whole <- send(testClient, url, chatBody(content)) }()
	waitWaiting(t, p, 1)
	// A streaming follower has joined once its headers came.
	fresp, _, err := openStream(context.Background(), testClient, url, body)
	if err != nil {
		t.Fatal(err)
	}
	defer fresp.Body.Close()
	p.Fake.ReleaseStreams()
	fbody, ferr := io.ReadAll(fresp.Body)
	res := []result{{status: fresp.StatusCode, header: fresp.Header, body: fbody, err: ferr}, <-whole}
	levents := []sseEvent{first}
	for {
		ev, err := lrd.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("leader: %v", err)
		}
		levents = append(levents, ev)
	}
	expectCalls(t, p, 1)
	la, err := assemble(levents)
	if err != nil || la.Done || la.ErrorData == "" {
		t.Fatalf("leader: %v, done %v, error event %q", err, la.Done, la.ErrorData)
	}
	sf := res[0]
	if sf.err != nil || sf.status != 200 || sf.header.Get("X-Cache-Source") != "coalesced" {
		t.Fatalf("streaming follower: %v %d source %q: %s", sf.err, sf.status, sf.header.Get("X-Cache-Source"), sf.body)
	}
	fa, err := decodeStreamed(sf)
	if err != nil {
		t.Fatal(err)
	}
	if fa.Done || fa.ErrorData == "" {
		t.Fatalf("streaming follower of a cut stream: done %v, error event %q: %s", fa.Done, fa.ErrorData, sf.body)
	}
	if e, err := errorEvent(fa.ErrorData); err != nil || str(e.Error.Code) != "upstream_stream_cut" {
		t.Errorf("streaming follower's error event: %v %s", err, fa.ErrorData)
	}
	if fa.Content != la.Content {
		t.Errorf("the follower saw %q before the cut, the leader %q", fa.Content, la.Content)
	}
	wf := res[1]
	if wf.err != nil || wf.status != 502 {
		t.Fatalf("non-streamed follower: %v status %d, want 502: %s", wf.err, wf.status, wf.body)
	}
	var e apiError
	expectErrorBody(t, "non-streamed follower", wf)
	if err := json.Unmarshal(wf.body, &e); err != nil || str(e.Error.Code) != "upstream_stream_cut" {
		t.Errorf("non-streamed follower: error code %s, want upstream_stream_cut: %s", e.Error.Code, wf.body)
	}
	p.Stop()
	if n := openCacheDB(t, p.DBPath).count(); n != 0 {
		t.Fatalf("%d rows stored after a cut flight", n)
	}
}
