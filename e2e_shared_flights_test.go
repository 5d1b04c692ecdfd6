package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"llmcache/bench/fakeupstream"
)

// TestE2ESharedFlightAcrossInstances: 1,000 identical requests at once, spread over three instances on one
// store, half of them streamed, make exactly one upstream call; every client gets the whole answer (the
// streamed ones a well-formed stream ending in [DONE], the others the same body).
func TestE2ESharedFlightAcrossInstances(t *testing.T) {
	eachShape(t, func(t *testing.T, s *sharedStore) {
		// The upstream takes a moment, so that the requests meet while the call runs; the count holds
		// whenever they come (a late one finds the answer in the store).
		ps, fake := newSharedProxies(t, 3, s, fakeupstream.Options{Latency: 300 * time.Millisecond}, nil)
		const n = 1000
		out := make([]result, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				body := chatBody("one call for all")
				if i%2 == 1 {
					body = chatStreamBody("one call for all", false)
				}
				out[i] = send(loadClient, ps[i%3].URL+"/v1/chat/completions", body)
			}()
		}
		close(start)
		wg.Wait()
		if calls := fake.CallsTo("chat"); calls != 1 {
			for i, p := range ps {
				t.Logf("instance %d: %+v", i, getShared(t, p))
			}
			t.Fatalf("upstream chat calls = %d, want exactly 1 for 1,000 identical requests over three instances", calls)
		}
		var whole []byte
		for i, r := range out {
			if r.err != nil || r.status != 200 {
				t.Fatalf("request %d: status %d, err %v: %s", i, r.status, r.err, r.body)
			}
			if i%2 == 1 {
				if !bytes.HasSuffix(r.body, []byte("data: [DONE]\n\n")) || strings.Contains(string(r.body), "event: error") {
					t.Fatalf("streamed request %d did not get a whole stream: %s", i, r.body)
				}
				continue
			}
			if whole == nil {
				whole = r.body
			} else if !bytes.Equal(r.body, whole) {
				t.Fatalf("request %d got other bytes:\n%s\n%s", i, r.body, whole)
			}
		}
		if calls := fake.CallsTo("chat"); calls != 1 {
			t.Fatalf("upstream chat calls = %d, want exactly 1 for 1,000 identical requests over three instances", calls)
		}
		var led, waited int64
		for _, p := range ps {
			f := getShared(t, p)
			led += f.Shared.FlightsLed
			waited += f.Shared.FlightsWaited
		}
		for i, p := range ps {
			t.Logf("instance %d: %+v", i, getShared(t, p))
		}
		if led != 1 {
			t.Fatalf("flights led %d, want 1", led)
		}
		t.Logf("flights waited on other instances: %d", waited)
		for i, p := range ps {
			t.Logf("instance %d: %+v", i, getShared(t, p))
		}
	})
}

// TestE2ESharedDeadLeaderTakenOver: a lock whose holder died (left in the store, never renewed, never let
// go) holds a miss back only until it expires; then the waiting instance takes over and makes the call.
func TestE2ESharedDeadLeaderTakenOver(t *testing.T) {
	s := newSharedStore(t, false, redistestOptions())
	ps, fake := newSharedProxies(t, 1, s, fakeupstream.Options{}, nil)
	p := ps[0]
	// The key of the request, from a bypass that stores nothing.
	resp, body := p.Post("/v1/chat/completions", chatBody("orphaned lock"), "X-Cache-Mode", "off")
	expectCache(t, "bypass", resp, body, 200, "BYPASS")
	key := cacheKey(t, resp)
	s.cli("set", "llmcache:l:{"+key+"}", "a-dead-instance:1", "px", "1500")
	began := time.Now()
	resp, body = p.Post("/v1/chat/completions", chatBody("orphaned lock"))
	expectCache(t, "after the dead leader", resp, body, 200, "MISS")
	if took := time.Since(began); took < time.Second {
		t.Fatalf("answered after %v: the orphaned lock did not hold the miss back", took)
	}
	if calls := fake.CallsTo("chat"); calls != 2 {
		t.Fatalf("upstream calls %d, want 2 (the bypass and the taken-over miss)", calls)
	}
	if f := getShared(t, p); f.Shared.FlightsWaited != 1 || f.Shared.FlightsLed != 1 {
		t.Fatalf("flights: %+v", f.Shared)
	}
}
