package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestE2EConcurrentMissesBounded: 200 distinct misses at once against a slow upstream never have more than
// max_concurrent_requests calls in flight, and every client gets the answer to its own request.
func TestE2EConcurrentMissesBounded(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.MaxConcurrentRequests = 20 })
	p.Fake.SetLatency(50 * time.Millisecond)
	const n = 200
	contents := make([]string, n)
	bodies := make([]string, n)
	for i := range n {
		contents[i] = "concurrent request " + strconv.Itoa(i)
		bodies[i] = chatBody(contents[i])
	}
	res := sendAll(p.URL+"/v1/chat/completions", bodies)
	keys := map[string]int{}
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		if r.status != 200 {
			t.Fatalf("request %d: status %d: %s", i, r.status, r.body)
		}
		if err := checkEcho(r.body, contents[i]); err != nil {
			t.Fatalf("request %d got another request's answer: %v", i, err)
		}
		k := r.header.Get("X-Cache-Key")
		if j, dup := keys[k]; dup {
			t.Fatalf("requests %d and %d share key %s", j, i, k)
		}
		keys[k] = i
	}
	if m := p.Fake.MaxInFlight(); m > 20 {
		t.Fatalf("the upstream saw %d calls in flight, max_concurrent_requests is 20", m)
	}
	expectCalls(t, p, n)
	// Every one of them is now cached.
	for i := 0; i < n; i += 37 {
		r, b := p.Post("/v1/chat/completions", bodies[i])
		expectCache(t, "repeat", r, b, 200, "HIT")
		if !bytes.Equal(b, res[i].body) {
			t.Errorf("repeat %d: hit differs from the first answer", i)
		}
	}
	expectCalls(t, p, n)
}

// TestE2EQueueTimeout: with one upstream slot and queue_timeout_seconds 0.3, requests that cannot get the
// slot in time are answered 503 with Retry-After; the one holding it gets its answer.
func TestE2EQueueTimeout(t *testing.T) {
	p, gate := newGatedProxy(t, func(c *fileConfig) {
		c.MaxConcurrentRequests = 1
		c.QueueTimeoutSeconds = 0.3
	})
	url := p.URL + "/v1/chat/completions"
	first := make(chan result, 1)
	go func() { first <- send(loadClient, url, chatBody("holds the slot")) }()
	// The first call holds the only slot at the gate until every waiter has timed out.
	gate.waitArrived(t, 1)

	bodies := make([]string, 5)
	for i := range bodies {
		bodies[i] = chatBody("waits " + strconv.Itoa(i))
	}
	for i, r := range sendAll(url, bodies) {
		if r.err != nil {
			t.Fatalf("waiter %d: %v", i, r.err)
		}
		if r.status != 503 {
			t.Fatalf("waiter %d: status %d, want 503: %s", i, r.status, r.body)
		}
		if ra := r.header.Get("Retry-After"); ra != "1" {
			t.Errorf("waiter %d: 503 with Retry-After %q, want 1", i, ra)
		}
		expectErrorBody(t, "waiter", r)
	}
	gate.release()
	r := <-first
	if r.err != nil || r.status != 200 {
		t.Fatalf("the request holding the slot: %d %v %s", r.status, r.err, r.body)
	}
	if err := checkEcho(r.body, "holds the slot"); err != nil {
		t.Fatal(err)
	}
	// The slot is free again: a new request goes through, after any call still queued (there must be none).
	resp, b := p.Post("/v1/chat/completions", chatBody("after the queue emptied"))
	expectCache(t, "after the queue emptied", resp, b, 200, "MISS")
	expectCalls(t, p, 2) // the waiters answered 503 were never sent
}

// expectErrorBody checks that a collected answer is an OpenAI error body.
func expectErrorBody(t *testing.T, what string, r result) {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Errorf("%s: not an OpenAI error body (%v): %s", what, err, r.body)
	}
}

// TestE2ECoalescing: identical misses at once make exactly one upstream call and all get the same bytes.
func TestE2ECoalescing(t *testing.T) {
	p, gate := newGatedProxy(t, nil)
	const n = 50
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = chatBody("all at once")
	}
	// The one call is held at the gate until all 50 wait on it.
	out := make(chan []result, 1)
	go func() { out <- sendAll(p.URL+"/v1/chat/completions", bodies) }()
	waitWaiting(t, p, n)
	gate.waitArrived(t, 1)
	gate.release()
	res := <-out
	sources := map[string]int{}
	for i, r := range res {
		if r.err != nil || r.status != 200 {
			t.Fatalf("request %d: %d %v %s", i, r.status, r.err, r.body)
		}
		if !bytes.Equal(r.body, res[0].body) {
			t.Fatalf("request %d got other bytes than request 0", i)
		}
		if r.header.Get("X-Cache-Key") != res[0].header.Get("X-Cache-Key") {
			t.Fatalf("request %d has another key", i)
		}
		sources[r.header.Get("X-Cache-Source")]++
	}
	expectCalls(t, p, 1)
	if sources["upstream"] != 1 || sources["coalesced"] != n-1 {
		t.Errorf("X-Cache-Source counts %v: want one upstream and %d coalesced", sources, n-1)
	}
	// Requests opting out of coalescing (no-cache) each make their own call.
	res = sendAll(p.URL+"/v1/chat/completions", bodies[:5], "Cache-Control", "no-cache")
	for i, r := range res {
		if r.err != nil || r.status != 200 || r.header.Get("X-Cache") != "REFRESH" {
			t.Fatalf("no-cache request %d: %d %v X-Cache %q", i, r.status, r.err, r.header.Get("X-Cache"))
		}
	}
	expectCalls(t, p, 6)
}

// TestE2ECoalescedErrorReachesEveryone: when the one upstream call of a flight fails, every waiter gets the
// error (none hangs), and nothing is cached.
func TestE2ECoalescedErrorReachesEveryone(t *testing.T) {
	p, gate := newGatedProxy(t, noRetries)
	const n = 20
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = chatBody("fail together")
	}
	// X-Fake-Status makes the fake answer 503 to the one call, which the gate holds until all 20 wait on it.
	out := make(chan []result, 1)
	go func() { out <- sendAll(p.URL+"/v1/chat/completions", bodies, "X-Fake-Status", "503") }()
	waitWaiting(t, p, n)
	gate.release()
	for i, r := range <-out {
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		if r.status != 503 {
			t.Fatalf("request %d: status %d, want the upstream's 503: %s", i, r.status, r.body)
		}
	}
	expectCalls(t, p, 1)
	r, b := p.Post("/v1/chat/completions", bodies[0])
	expectCache(t, "after the failed flight", r, b, 200, "MISS")
}

// TestE2ERepeatAfterAnswerIsHit: under load, a request sent after the answer to an identical one arrived is a
// hit, never a second upstream call. (The memory stage once took such a lookup before the pending insert of
// that answer, a race seen in about half of the runs of this test.)
func TestE2ERepeatAfterAnswerIsHit(t *testing.T) {
	p := newTestProxy(t, nil)
	url := p.URL + "/v1/chat/completions"
	const clients, pairs = 100, 10
	errs := make(chan string, clients*pairs)
	var wg sync.WaitGroup
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range pairs {
				body := chatBody("repeat " + strconv.Itoa(g) + "/" + strconv.Itoa(i))
				first := send(loadClient, url, body)
				second := send(loadClient, url, body)
				switch {
				case first.err != nil || first.status != 200:
					errs <- fmt.Sprintf("%d/%d first: %d %v", g, i, first.status, first.err)
				case second.err != nil || second.status != 200:
					errs <- fmt.Sprintf("%d/%d second: %d %v", g, i, second.status, second.err)
				case second.header.Get("X-Cache") != "HIT" || !bytes.Equal(first.body, second.body):
					errs <- fmt.Sprintf("%d/%d second: X-Cache %s, source %s: not a hit of the first answer", g, i,
						second.header.Get("X-Cache"), second.header.Get("X-Cache-Source"))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// One call per pair. A loaded machine may fail an attempt now and then (the client still gets its
	// answer, from a retry, which /stats counts): the upstream saw at most one more call for each.
	u := getUpstreamStats(t, p)
	if u.Retries > 0 {
		t.Logf("%d attempts retried: %+v", u.Retries, u.Endpoints)
	}
	if got := p.Fake.CallsTo("chat"); got < clients*pairs || got > clients*pairs+u.Retries {
		t.Fatalf("upstream chat calls = %d, want %d (one per pair) and at most %d retries more", got, clients*pairs, u.Retries)
	}
}
