package pipeline

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"llmcache/db"
	"llmcache/pipeline/wire"
)

// Each test runs in a synctest bubble: the pipeline's timers (backoff, Retry-After, eject_seconds, the
// queue timeout) run on the bubble's fake clock, so no test sleeps, and every wait is exact.

// TestCoalescedFlightOneCall: identical requests that arrive while the first one's call is out wait for it
// and get its answer; the upstream is called once.
func TestCoalescedFlightOneCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{gate: make(chan struct{}), script: func(n int, _ *wire.Request) answer { return chatAnswer(n) }}
		p, _ := testPipeline(t, tr, nil)
		defer p.Stop()
		rs := make([]*Request, 50)
		for i := range rs {
			rs[i] = newRequest(chat("same"), i%2 == 1)
		}
		out := sendAsync(p, rs...)
		synctest.Wait() // every request is waiting: the leader at the gate, the rest on its flight
		if w := p.Counts().Waiting; w != 50 {
			t.Fatalf("%d requests wait on flights, want 50", w)
		}
		close(tr.gate)
		var leaders, followers int
		for range rs {
			r := <-out
			expectStatus(t, "a request of the flight", r, 200)
			switch r.Resp.Outcome {
			case OutcomeMiss:
				leaders++
			case OutcomeCoalesced:
				followers++
			default:
				t.Errorf("outcome %v", r.Resp.Outcome)
			}
			if !r.Stream && !strings.Contains(string(r.Resp.Body), "answer 1") {
				t.Errorf("body %s, want the one upstream answer", r.Resp.Body)
			}
		}
		if n := tr.calls.Load(); n != 1 || leaders != 1 || followers != 49 {
			t.Errorf("%d upstream calls, %d leaders, %d followers; want 1, 1, 49", n, leaders, followers)
		}
		if c := p.Counts(); c.Requests[KindChat][OutcomeCoalesced] != 49 || c.Requests[KindChat][OutcomeMiss] != 1 {
			t.Errorf("counted %v", c.Requests[KindChat])
		}
	})
}

// TestLeaderFailureReachesEveryFollower: when the one call of a flight fails, every waiter gets that
// failure (counted as an error, followers too) and nothing is stored; the next request calls again.
func TestLeaderFailureReachesEveryFollower(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{gate: make(chan struct{}), script: func(n int, _ *wire.Request) answer {
			if n == 1 {
				return answer{status: 500, body: `{"error":{"message":"boom"}}`}
			}
			return chatAnswer(n)
		}}
		p, store := testPipeline(t, tr, func(c *Config) { c.MaxRetries = 0 })
		defer p.Stop()
		rs := make([]*Request, 10)
		for i := range rs {
			rs[i] = newRequest(chat("doomed"), i%3 == 0)
		}
		out := sendAsync(p, rs...)
		synctest.Wait()
		close(tr.gate)
		for range rs {
			r := <-out
			expectStatus(t, "a waiter of the failed flight", r, 500)
			if string(r.Resp.Body) != `{"error":{"message":"boom"}}` {
				t.Errorf("body %q, want the upstream's error", r.Resp.Body)
			}
		}
		if c := p.Counts(); c.Requests[KindChat][OutcomeError] != 10 || c.Requests[KindChat][OutcomeCoalesced] != 0 {
			t.Errorf("counted %v, want 10 errors", c.Requests[KindChat])
		}
		if store.len() != 0 {
			t.Errorf("%d entries stored after a failure", store.len())
		}
		expectStatus(t, "the next request", send(p, chat("doomed")), 200)
		if n := tr.calls.Load(); n != 2 {
			t.Errorf("%d calls, want 2", n)
		}
	})
}

// TestRetryBackoff: a 5xx is retried after an exponential pause (retry_backoff_ms doubled, with jitter of
// up to half), and the retry's answer is the client's.
func TestRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{script: func(n int, _ *wire.Request) answer {
			if n < 3 {
				return answer{status: 503, body: `{}`}
			}
			return chatAnswer(n)
		}}
		p, _ := testPipeline(t, tr, func(c *Config) { c.MaxRetries, c.RetryBackoff = 3, time.Second })
		defer p.Stop()
		r := send(p, chat("retried"))
		expectStatus(t, "after two retries", r, 200)
		seen := tr.calledAt()
		if len(seen) != 3 {
			t.Fatalf("%d calls, want 3", len(seen))
		}
		for i, want := range []time.Duration{time.Second, 2 * time.Second} {
			gap := seen[i+1].at.Sub(seen[i].at)
			if gap < want/2 || gap > want {
				t.Errorf("pause before retry %d: %v, want between %v and %v", i+1, gap, want/2, want)
			}
		}
		if c := p.Counts(); c.Retries != 2 || c.UpstreamErrors != 2 {
			t.Errorf("retries %d, upstream errors %d; want 2 and 2", c.Retries, c.UpstreamErrors)
		}
	})
}

// TestRetryAfterHonoured: a 429 with Retry-After from the only endpoint is waited for before the retry.
func TestRetryAfterHonoured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{script: func(n int, _ *wire.Request) answer {
			if n == 1 {
				return answer{status: 429, body: `{}`, retryAfter: "7"}
			}
			return chatAnswer(n)
		}}
		p, _ := testPipeline(t, tr, nil)
		defer p.Stop()
		expectStatus(t, "after the pause", send(p, chat("throttled")), 200)
		seen := tr.calledAt()
		if len(seen) != 2 || seen[1].at.Sub(seen[0].at) < 7*time.Second {
			t.Fatalf("calls %v: want the retry 7 s after the 429", seen)
		}
	})
}

// TestRetryAfterMovesToAnotherEndpoint: the retry of a 429 goes at once (after the backoff) to another
// endpoint rather than wait out the first one's Retry-After.
func TestRetryAfterMovesToAnotherEndpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{script: func(n int, req *wire.Request) answer {
			if req.Target.Name == "a" {
				return answer{status: 429, body: `{}`, retryAfter: "60"}
			}
			return chatAnswer(n)
		}}
		p, _ := testPipeline(t, tr, nil, "a", "b")
		defer p.Stop()
		start := time.Now()
		for i := range 4 {
			expectStatus(t, "a request", send(p, chat(fmt.Sprint("r", i))), 200)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("four requests took %v: they waited for a's Retry-After instead of going to b", took)
		}
		var toA int
		for _, s := range tr.calledAt() {
			if s.endpoint == "a" {
				toA++
			}
		}
		if toA != 1 {
			t.Errorf("%d calls went to a; after its Retry-After: 60, want only the first", toA)
		}
	})
}

// TestEjectionProbeAndRecovery: eject_after failed requests eject an endpoint (calls go to the other);
// after eject_seconds one probe goes to it, and its success brings it back.
func TestEjectionProbeAndRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var broken = true
		tr := &fakeTransport{script: func(n int, req *wire.Request) answer {
			if req.Target.Name == "flaky" && broken {
				return answer{err: errRefused}
			}
			return chatAnswer(n)
		}}
		p, _ := testPipeline(t, tr, func(c *Config) { c.EjectAfter, c.EjectFor, c.MaxRetries = 2, 30*time.Second, 1 }, "flaky", "steady")
		defer p.Stop()
		health := func() Health { return p.Endpoints()[0].Health }
		for i := 0; health() != Ejected; i++ {
			if i == 10 {
				t.Fatalf("flaky never ejected: %+v", p.Endpoints()[0])
			}
			expectStatus(t, "a request (retried on steady)", send(p, chat(fmt.Sprint("e", i))), 200)
		}
		before := len(tr.calledAt())
		for i := range 5 {
			expectStatus(t, "while flaky rests", send(p, chat(fmt.Sprint("rest", i))), 200)
		}
		for _, s := range tr.calledAt()[before:] {
			if s.endpoint == "flaky" {
				t.Fatalf("a call went to flaky while it rested")
			}
		}
		time.Sleep(30 * time.Second)
		broken = false
		before = len(tr.calledAt())
		for i := range 4 {
			expectStatus(t, "after the rest", send(p, chat(fmt.Sprint("after", i))), 200)
		}
		if health() != Healthy {
			t.Errorf("flaky %v after its rest and a successful probe, want healthy", health())
		}
		var toFlaky int
		for _, s := range tr.calledAt()[before:] {
			if s.endpoint == "flaky" {
				toFlaky++
			}
		}
		if toFlaky == 0 {
			t.Errorf("no call probed flaky after its rest")
		}
		if e := p.Endpoints()[0]; e.Ejections != 1 {
			t.Errorf("%d ejections, want 1", e.Ejections)
		}
	})
}

// TestFailedProbeEjectsAgain: a probe that fails sends the endpoint back to rest for eject_seconds.
func TestFailedProbeEjectsAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{script: func(n int, req *wire.Request) answer {
			if req.Target.Name == "dead" {
				return answer{err: errRefused}
			}
			return chatAnswer(n)
		}}
		p, _ := testPipeline(t, tr, func(c *Config) { c.EjectAfter, c.EjectFor, c.MaxRetries = 1, 10*time.Second, 1 }, "dead", "live")
		defer p.Stop()
		for i := 0; p.Endpoints()[0].Health != Ejected; i++ {
			send(p, chat(fmt.Sprint("x", i)))
		}
		time.Sleep(10 * time.Second)
		for i := range 4 {
			expectStatus(t, "after the rest", send(p, chat(fmt.Sprint("y", i))), 200)
		}
		if e := p.Endpoints()[0]; e.Health != Ejected || e.Ejections != 2 {
			t.Errorf("dead: %v after %d ejections; want ejected again by its failed probe", e.Health, e.Ejections)
		}
	})
}

// TestOneRequestCountsOnce: a request failing all its attempts on the only endpoint counts one failure
// against it; eject_after requests take it out.
func TestOneRequestCountsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{script: func(int, *wire.Request) answer { return answer{status: 500, body: `{}`} }}
		p, _ := testPipeline(t, tr, func(c *Config) { c.EjectAfter, c.MaxRetries = 3, 3 })
		defer p.Stop()
		for i := range 2 {
			expectStatus(t, "a failing request", send(p, chat(fmt.Sprint("bad", i))), 500)
			if h := p.Endpoints()[0].Health; h != Healthy {
				t.Fatalf("after %d failed requests (4 attempts each): %v, want healthy (eject_after = 3)", i+1, h)
			}
		}
		expectStatus(t, "the third", send(p, chat("bad3")), 500)
		if h := p.Endpoints()[0].Health; h != Ejected {
			t.Fatalf("after 3 failed requests: %v, want ejected", h)
		}
	})
}

// TestPanicModeWhenEveryEndpointIsEjected: with every endpoint ejected and resting, calls still go to
// them; a success brings one back.
func TestPanicModeWhenEveryEndpointIsEjected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fail = true
		tr := &fakeTransport{script: func(n int, req *wire.Request) answer {
			if fail {
				return answer{err: errRefused}
			}
			return chatAnswer(n)
		}}
		p, _ := testPipeline(t, tr, func(c *Config) { c.EjectAfter, c.EjectFor, c.MaxRetries = 1, time.Hour, 0 }, "a", "b")
		defer p.Stop()
		for i := 0; p.Endpoints()[0].Health != Ejected || p.Endpoints()[1].Health != Ejected; i++ {
			if i == 10 {
				t.Fatal("the endpoints were never both ejected")
			}
			expectStatus(t, "while both fail", send(p, chat(fmt.Sprint("f", i))), 502)
		}
		calls := tr.calls.Load()
		r := send(p, chat("still failing"))
		if r.Resp.Err == nil || r.Resp.Err.Code != "upstream_unreachable" || tr.calls.Load() != calls+1 {
			t.Fatalf("with both ejected: %+v after %d calls (was %d); want the endpoints asked anyway", r.Resp.Err, tr.calls.Load(), calls)
		}
		fail = false
		expectStatus(t, "once they answer", send(p, chat("answered")), 200)
		ok := 0
		for _, e := range p.Endpoints() {
			if e.Health == Healthy {
				ok++
			}
		}
		if ok != 1 {
			t.Errorf("%d endpoints healthy after one success in panic mode, want 1", ok)
		}
	})
}

// TestQueueTimeout: a miss that finds no free upstream slot within queue_timeout_seconds gets a 503 with
// Retry-After; the one in flight is not disturbed.
func TestQueueTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{gate: make(chan struct{}), script: func(n int, _ *wire.Request) answer { return chatAnswer(n) }}
		p, _ := testPipeline(t, tr, func(c *Config) { c.MaxConcurrentRequests, c.QueueTimeout = 1, 5*time.Second })
		defer p.Stop()
		first := sendAsync(p, newRequest(chat("holds the slot"), false))
		synctest.Wait()
		start := time.Now()
		r := send(p, chat("waits"))
		if took := time.Since(start); r.Resp.Status != 503 || r.Resp.RetryAfter != "1" || took != 5*time.Second {
			t.Errorf("queued miss: status %d, Retry-After %q after %v; want 503, 1, after 5s", r.Resp.Status, r.Resp.RetryAfter, took)
		}
		close(tr.gate)
		expectStatus(t, "the call in flight", <-first, 200)
	})
}

// heldWriter keeps every put to itself: nothing reaches the store, as while the writer actor waits for its
// next batch.
type heldWriter struct{ s *fakeStore }

func (w heldWriter) Put(*db.Entry)            {}
func (w heldWriter) TryTouch([]db.Touch) bool { return true }
func (w heldWriter) Do(fn func(db.Store) (int64, error)) (int64, error) {
	if fn == nil {
		return 0, nil
	}
	return fn(w.s)
}

// TestStreamGapAnsweredFromRecent: an identical request sent the moment a streamed miss's client has read
// [DONE], before the attempt has reported its end to the scheduler, with the memory layer off and the
// answer still in the writer, is answered from the recent answers, not by a second upstream call.
func TestStreamGapAnsweredFromRecent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		events := []string{
			`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"streamed answer"},"finish_reason":null}]}` + "\n\n",
			`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n",
			`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}` + "\n\n",
			"data: [DONE]\n\n",
		}
		tr := &fakeTransport{script: func(n int, _ *wire.Request) answer {
			if n == 1 {
				return answer{status: 200, events: events}
			}
			return chatAnswer(n)
		}}
		hold := make(chan struct{}) // the first attempt's report of its end waits here
		cfg := DefaultConfig()
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg.MemoryEnabled = false
		var reports atomic.Int64
		cfg.OnUpstream = func(string, time.Duration) {
			if reports.Add(1) == 1 {
				<-hold
			}
		}
		ep := DefaultEndpoint("http://a.test")
		ep.Name = "a"
		cfg.Endpoints = []Endpoint{ep}
		store := newFakeStore()
		p, err := New(cfg, store, heldWriter{store}, tr)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()

		first := sendAsync(p, newRequest(chat("gap"), true))
		r1 := <-first
		if r1.Resp.Live == nil {
			t.Fatalf("the streamed miss was not answered live: %+v", r1.Resp)
		}
		var out strings.Builder
		bw := bufio.NewWriter(&out)
		r1.Resp.Live.CopyTo(bw, true) // to [DONE]: the answer is stored by then
		bw.Flush()
		if !strings.Contains(out.String(), "[DONE]") {
			t.Fatalf("the stream did not end: %s", out.String())
		}
		second := sendAsync(p, newRequest(chat("gap"), false))
		synctest.Wait()
		select {
		case r2 := <-second:
			if r2.Resp.Cache != "HIT" || !strings.Contains(string(r2.Resp.Body), "streamed answer") {
				t.Errorf("the request after [DONE]: X-Cache %q, body %s; want a HIT with the streamed answer", r2.Resp.Cache, r2.Resp.Body)
			}
		default:
			t.Error("the request after [DONE] is still waiting (for a second upstream call, or for the first attempt's end)")
		}
		close(hold)
		synctest.Wait()
		if n := tr.calls.Load(); n != 1 {
			t.Errorf("%d upstream calls, want 1", n)
		}
	})
}
