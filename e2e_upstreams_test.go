package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"llmcache/bench/fakeupstream"
)

// upstreamFigures is the per-endpoint part of GET /stats.
type upstreamFigures struct {
	Retries   int64 `json:"retries"`
	Endpoints []struct {
		Name      string           `json:"name"`
		Health    string           `json:"health"`
		Calls     int64            `json:"calls"`
		Retries   int64            `json:"retries"`
		Ejections int64            `json:"ejections"`
		Errors    map[string]int64 `json:"errors"`
		LastError string           `json:"last_error"`
	} `json:"endpoints"`
}

func getUpstreamStats(t *testing.T, p *testProxy) upstreamFigures {
	t.Helper()
	resp, body := p.Get("/stats")
	var s struct {
		Upstream upstreamFigures `json:"upstream"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &s) != nil {
		t.Fatalf("/stats: status %d, body %s", resp.StatusCode, body)
	}
	return s.Upstream
}

func (u upstreamFigures) endpoint(t *testing.T, name string) (health string, calls, ejections int64, errs map[string]int64) {
	t.Helper()
	for _, e := range u.Endpoints {
		if e.Name == name {
			return e.Health, e.Calls, e.Ejections, e.Errors
		}
	}
	t.Fatalf("/stats has no endpoint %q: %+v", name, u.Endpoints)
	return
}

// startFakes starts n fake upstreams, closed when the test ends.
func startFakes(t *testing.T, n int, opts fakeupstream.Options) []*fakeupstream.Server {
	t.Helper()
	fakes := make([]*fakeupstream.Server, n)
	for i := range fakes {
		fakes[i] = startFake(t, opts)
	}
	return fakes
}

// deadURL is a loopback address where nothing listens: connections are refused at once.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// sendPool sends every body with at most workers requests in flight, and returns the answers in order.
// Each body is sent once before after(i) is called with its index, so a test can act mid-run.
func sendPool(url string, bodies []string, workers int, after func(i int), header ...string) []result {
	out := make([]result, len(bodies))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = send(loadClient, url, bodies[i], header...)
			}
		}()
	}
	for i := range bodies {
		next <- i
		if after != nil {
			after(i)
		}
	}
	close(next)
	wg.Wait()
	return out
}

func distinctBodies(prefix string, n int) []string {
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = chatBody(prefix + " " + strconv.Itoa(i))
	}
	return bodies
}

func expectAll200(t *testing.T, res []result) {
	t.Helper()
	bad := 0
	for i, r := range res {
		if r.err != nil || r.status != 200 {
			if bad < 5 {
				t.Errorf("request %d: status %d, err %v: %.300s", i, r.status, r.err, r.body)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d requests failed, want none", bad, len(res))
	}
}

// TestE2EWeightedSplit: over 10,000 misses (2,000 through curl) the calls follow the weights within 2%, and a standby
// endpoint (weight 0) gets none while the weighted ones are healthy.
func TestE2EWeightedSplit(t *testing.T) {
	fakes := startFakes(t, 4, fakeupstream.Options{})
	weights := []int{1, 2, 7, 0}
	p := newTestProxy(t, func(c *fileConfig) {
		c.APIEndpoints = nil
		for i, f := range fakes {
			c.APIEndpoints = append(c.APIEndpoints, endpointConfig{Name: fmt.Sprintf("ep%d", i), URL: f.URL(), Weight: weights[i]})
		}
	})
	n := 10000
	if p.cfg.UseCurl {
		n = 2000 // a process per call; smooth weighted round robin is exact at any count
	}
	// Bypass the cache: the split is the dispatcher's, and the writer need not store 10,000 answers.
	expectAll200(t, sendPool(p.URL+"/v1/chat/completions", distinctBodies("split", n), 32, nil, "X-Cache-Mode", "off"))
	for i, f := range fakes {
		want := float64(n) * float64(weights[i]) / 10
		got := float64(f.CallsTo("chat"))
		if math.Abs(got-want) > 0.02*float64(n) {
			t.Errorf("endpoint ep%d (weight %d): %v calls, want %v ± 2%%", i, weights[i], got, want)
		}
	}
	if got := fakes[3].Calls(); got != 0 {
		t.Errorf("standby endpoint got %d calls while the weighted ones were healthy, want 0", got)
	}
}

// TestE2EFailoverKilledEndpoint: one of two endpoints dies in the middle of a 2,000-request run; every
// client still gets its answer (calls in flight and new ones are retried on the other endpoint), and the
// dead one is ejected.
func TestE2EFailoverKilledEndpoint(t *testing.T) {
	fakes := startFakes(t, 2, fakeupstream.Options{Latency: 2 * time.Millisecond})
	p := newTestProxy(t, func(c *fileConfig) {
		c.EjectSeconds = 3600 // a slow run must not see a's rest end (and a probe) before it reads /stats
		c.APIEndpoints = []endpointConfig{{Name: "a", URL: fakes[0].URL(), Weight: 1}, {Name: "b", URL: fakes[1].URL(), Weight: 1}}
	})
	n := 2000
	if p.cfg.UseCurl {
		n = 400 // a process per call: the same story, told faster
	}
	res := sendPool(p.URL+"/v1/chat/completions", distinctBodies("failover", n), 16, func(i int) {
		if i == n*3/10 {
			fakes[0].Close()
		}
	})
	expectAll200(t, res)
	st := getUpstreamStats(t, p)
	health, _, ejections, errs := st.endpoint(t, "a")
	if health != "ejected" || ejections < 1 {
		t.Errorf("endpoint a after its death: health %q, ejections %d; want ejected", health, ejections)
	}
	if errs["unreachable"] == 0 {
		t.Errorf("endpoint a: no unreachable errors counted: %v", errs)
	}
	if st.Retries == 0 {
		t.Errorf("no retries counted, yet endpoint a died with calls in flight")
	}
	if a, b := fakes[0].CallsTo("chat"), fakes[1].CallsTo("chat"); a < int64(n)/10 || b < int64(n)*6/10 {
		t.Errorf("calls: a %d, b %d; want a share before the death and the rest on b", a, b)
	}
}

// TestE2ERetryAfterHonoured: a 429 with Retry-After: 1 is retried no sooner than a second later (seen by
// the upstream's own clock), and the client gets the retry's answer.
func TestE2ERetryAfterHonoured(t *testing.T) {
	p := newTestProxy(t, nil)
	p.Fake.FailNext(1, 429, `{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":null}}`, map[string]string{"Retry-After": "1"})
	resp, body := p.Post("/v1/chat/completions", chatBody("rate limited once"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200 after the retry: %s", resp.StatusCode, body)
	}
	reqs := p.Fake.Requests()
	if len(reqs) != 2 {
		t.Fatalf("upstream saw %d requests, want the 429 and one retry", len(reqs))
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < time.Second {
		t.Errorf("the retry came %v after the 429, want at least Retry-After: 1s", gap)
	}
	if resp.Header.Get("X-Cache") != "MISS" {
		t.Errorf("X-Cache %q, want MISS", resp.Header.Get("X-Cache"))
	}
}

// TestE2ERetriesAreBounded: an endpoint failing with 5xx gets 1 + max_retries attempts, then the client
// gets its error as it was; a 4xx other than 408/429 is never retried.
func TestE2ERetriesAreBounded(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.MaxRetries = 2; c.RetryBackoffMs = 10; c.EjectAfter = 100 })
	const upstream500 = `{"error":{"message":"model crashed","type":"server_error","param":null,"code":null}}`
	p.Fake.FailNext(100, 500, upstream500, nil)
	resp, body := p.Post("/v1/chat/completions", chatBody("always fails"))
	if resp.StatusCode != 500 || string(body) != upstream500 {
		t.Fatalf("status %d body %s, want the upstream's 500 as it was", resp.StatusCode, body)
	}
	expectCalls(t, p, 3)

	p.Fake.FailNext(100, 400, `{"error":{"message":"bad prompt","type":"invalid_request_error","param":null,"code":null}}`, nil)
	p.Fake.ResetCounters()
	resp, _ = p.Post("/v1/chat/completions", chatBody("bad request"))
	if resp.StatusCode != 400 {
		t.Fatalf("status %d, want the upstream's 400", resp.StatusCode)
	}
	expectCalls(t, p, 1)
}

// TestE2EStreamRetriedBeforeFirstByte: a streamed miss whose upstream answers 503 before any byte reached
// the client is retried, and the client gets one clean stream.
func TestE2EStreamRetriedBeforeFirstByte(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.RetryBackoffMs = 10 })
	p.Fake.FailNext(1, 503, "", nil)
	r := send(testClient, p.URL+"/v1/chat/completions", chatStreamBody("retry my stream", false))
	if r.err != nil || r.status != 200 || !strings.Contains(string(r.body), "data: [DONE]") || strings.Contains(string(r.body), "event: error") {
		t.Fatalf("status %d err %v, want one whole stream: %s", r.status, r.err, r.body)
	}
	expectCalls(t, p, 2)
}

// TestE2EAllEndpointsDown: with every endpoint refusing connections the client gets a clear error in a
// few seconds, not after the queue timeout; once every endpoint is ejected, calls still go to them (panic
// mode) rather than all failing unasked, and /healthz says degraded.
func TestE2EAllEndpointsDown(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.QueueTimeoutSeconds = 120
		c.EjectAfter = 1
		c.RetryBackoffMs = 10
		c.APIEndpoints = []endpointConfig{{Name: "gpu-1", URL: deadURL(t), Weight: 1}, {Name: "gpu-2", URL: deadURL(t), Weight: 1}}
	})
	began := time.Now()
	resp, body := p.Post("/v1/chat/completions", chatBody("nobody home"))
	if took := time.Since(began); took > 30*time.Second {
		t.Errorf("the error took %v; want it long before the queue timeout (120 s)", took)
	}
	if resp.StatusCode != 502 || !strings.Contains(string(body), `"code":"upstream_unreachable"`) {
		t.Fatalf("status %d body %s, want a 502 upstream_unreachable", resp.StatusCode, body)
	}
	u := getUpstreamStats(t, p)
	h1, calls1, _, _ := u.endpoint(t, "gpu-1")
	h2, calls2, _, _ := u.endpoint(t, "gpu-2")
	if h1 != "ejected" || h2 != "ejected" {
		t.Fatalf("health %q and %q after a request failed on both, want both ejected (eject_after = 1)", h1, h2)
	}
	resp, body = p.Post("/v1/chat/completions", chatBody("still nobody"))
	// Their own failure (each transport words a refused connection its own way), not "resting".
	if resp.StatusCode != 502 || !strings.Contains(string(body), `"code":"upstream_unreachable"`) {
		t.Fatalf("status %d body %s, want the endpoints' own failure (they are still asked)", resp.StatusCode, body)
	}
	u = getUpstreamStats(t, p)
	_, after1, _, _ := u.endpoint(t, "gpu-1")
	_, after2, _, _ := u.endpoint(t, "gpu-2")
	if after1+after2 <= calls1+calls2 {
		t.Errorf("calls %d+%d -> %d+%d: with every endpoint ejected, requests must still reach them", calls1, calls2, after1, after2)
	}
	if resp, body := p.Get("/healthz"); resp.StatusCode != 200 || !strings.Contains(string(body), `"degraded"`) || !strings.Contains(string(body), "ejected") {
		t.Errorf("/healthz with every endpoint ejected: %d %s, want 200 degraded naming the ejection (it still answers)", resp.StatusCode, body)
	}
}

// TestE2EPanicModeRecovers: a sole endpoint ejected by failing requests still gets every call; its first
// success brings it back into service.
func TestE2EPanicModeRecovers(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.EjectAfter, c.EjectSeconds, c.MaxRetries = 2, 600, 0 })
	p.Fake.FailNext(2, 500, "", nil)
	for i := range 2 {
		if resp, body := p.Post("/v1/chat/completions", chatBody(fmt.Sprint("failing ", i))); resp.StatusCode != 500 {
			t.Fatalf("request %d: status %d %s, want the upstream's 500", i, resp.StatusCode, body)
		}
	}
	if h, _, ej, _ := getUpstreamStats(t, p).endpoint(t, "fake"); h != "ejected" || ej != 1 {
		t.Fatalf("after two failed requests: health %q, %d ejections; want ejected once", h, ej)
	}
	// Resting for ten minutes, yet asked at once: the only endpoint is better than no answer.
	resp, body := p.Post("/v1/chat/completions", chatBody("answered anyway"))
	expectCache(t, "a request while the only endpoint is ejected", resp, body, 200, "MISS")
	if err := checkEcho(body, "answered anyway"); err != nil {
		t.Fatal(err)
	}
	if h, _, _, _ := getUpstreamStats(t, p).endpoint(t, "fake"); h != "healthy" {
		t.Errorf("after a success: health %q, want healthy", h)
	}
}

// TestE2EOneBadRequestCountsOnce: a request that fails every retry counts once against its endpoint, so one
// bad prompt cannot take the only endpoint out for everyone.
func TestE2EOneBadRequestCountsOnce(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.EjectAfter, c.MaxRetries, c.RetryBackoffMs = 2, 3, 10 })
	p.Fake.FailNext(4, 500, "", nil) // the request and its three retries
	if resp, body := p.Post("/v1/chat/completions", chatBody("a prompt the upstream chokes on")); resp.StatusCode != 500 {
		t.Fatalf("status %d %s, want the upstream's 500 after the retries", resp.StatusCode, body)
	}
	expectCalls(t, p, 4)
	if h, _, ej, _ := getUpstreamStats(t, p).endpoint(t, "fake"); h != "healthy" || ej != 0 {
		t.Fatalf("after one failed request (four attempts): health %q, %d ejections; want healthy (eject_after = 2 requests)", h, ej)
	}
	p.Fake.FailNext(4, 500, "", nil)
	p.Post("/v1/chat/completions", chatBody("another prompt it chokes on"))
	if h, _, ej, _ := getUpstreamStats(t, p).endpoint(t, "fake"); h != "ejected" || ej != 1 {
		t.Errorf("after a second failed request: health %q, %d ejections; want ejected", h, ej)
	}
}

// TestE2EEjectionAndRecovery: an endpoint failing eject_after requests in a row is ejected (its traffic goes
// to the other), probed after eject_seconds, and back in service when the probe succeeds.
func TestE2EEjectionAndRecovery(t *testing.T) {
	fakes := startFakes(t, 2, fakeupstream.Options{})
	var logs syncBuffer
	p := newLoggedTestProxy(t, func(c *fileConfig) {
		c.EjectAfter, c.EjectSeconds, c.RetryBackoffMs = 3, 1, 10
		c.APIEndpoints = []endpointConfig{{Name: "flaky", URL: fakes[0].URL(), Weight: 1}, {Name: "steady", URL: fakes[1].URL(), Weight: 1}}
	}, newLogger(&logs, "text", slog.LevelInfo))
	fakes[0].FailNext(1000, 502, "", nil)
	url := p.URL + "/v1/chat/completions"
	// One request at a time until flaky is ejected: each failure there is retried on steady, and the third
	// ejects it. Its rest may end while the test reads /stats, yet it stays "ejected" until a request
	// probes it, and none is sent before the check.
	sent := 0
	waitFor(t, "flaky to be ejected", func() bool {
		expectAll200(t, sendPool(url, []string{chatBody(fmt.Sprint("eject ", sent))}, 1, nil))
		sent++
		h, _, _, _ := getUpstreamStats(t, p).endpoint(t, "flaky")
		return h == "ejected"
	})
	health, calls, ejections, errs := getUpstreamStats(t, p).endpoint(t, "flaky")
	if health != "ejected" || ejections != 1 || calls != 3 || errs["status_5xx"] != 3 {
		t.Fatalf("flaky after %d requests: health %q, %d calls, %d ejections, errors %v; want ejected once after 3 failed calls", sent, health, calls, ejections, errs)
	}
	// Healed: once its rest is over, a request probes it and it is back in service.
	fakes[0].FailNext(0, 0, "", nil)
	waitFor(t, "flaky back in service", func() bool {
		expectAll200(t, sendPool(url, []string{chatBody(fmt.Sprint("probe ", sent))}, 1, nil))
		sent++
		h, _, _, _ := getUpstreamStats(t, p).endpoint(t, "flaky")
		return h == "healthy"
	})
	_, before, _, _ := getUpstreamStats(t, p).endpoint(t, "flaky")
	expectAll200(t, sendPool(url, distinctBodies("recovered", 20), 1, nil))
	health, calls, ejections, _ = getUpstreamStats(t, p).endpoint(t, "flaky")
	if health != "healthy" || calls-before < 8 || ejections != 1 {
		t.Errorf("flaky back in service: health %q, %d of 20 new requests, %d ejections; want healthy, about half of them, still 1 ejection",
			health, calls-before, ejections)
	}
	text := logs.String()
	if !strings.Contains(text, `level=WARN msg="upstream endpoint ejected" endpoint=flaky`) || !strings.Contains(text, `msg="upstream endpoint back in service" endpoint=flaky`) {
		t.Errorf("the log does not tell of the ejection and the recovery:\n%s", text)
	}
}

// TestE2EStandby: a weight-0 endpoint takes traffic only while every weighted endpoint is ejected, or,
// with standby_on_saturation, while they are all at their max_concurrent.
func TestE2EStandby(t *testing.T) {
	t.Run("ejected", func(t *testing.T) {
		fakes := startFakes(t, 1, fakeupstream.Options{})
		p := newTestProxy(t, func(c *fileConfig) {
			c.EjectAfter, c.RetryBackoffMs = 2, 10
			c.APIEndpoints = []endpointConfig{{Name: "main", URL: deadURL(t), Weight: 5}, {Name: "paid", URL: fakes[0].URL(), Weight: 0}}
		})
		expectAll200(t, sendPool(p.URL+"/v1/chat/completions", distinctBodies("standby", 20), 4, nil))
		if got := fakes[0].CallsTo("chat"); got != 20 {
			t.Errorf("standby answered %d of 20 requests while the weighted endpoint was down, want all", got)
		}
	})
	for _, spill := range []bool{false, true} {
		t.Run(fmt.Sprintf("saturated/standby_on_saturation=%v", spill), func(t *testing.T) {
			fakes := startFakes(t, 1, fakeupstream.Options{})
			// main's calls are held at the gate: two fill its max_concurrent, and a third finds it full.
			p, gate := newGatedProxy(t, func(c *fileConfig) {
				c.StandbyOnSaturation = spill
				c.APIEndpoints = []endpointConfig{{Name: "main", URL: c.APIEndpoints[0].URL, Weight: 1, MaxConcurrent: 2}, {Name: "paid", URL: fakes[0].URL(), Weight: 0}}
			})
			url := p.URL + "/v1/chat/completions"
			held := make(chan []result, 1)
			go func() { held <- sendAll(url, distinctBodies("fills main", 2)) }()
			gate.waitArrived(t, 2)
			third := make(chan result, 1)
			go func() { third <- send(testClient, url, chatBody("finds main full")) }()
			var r3 result
			if spill {
				r3 = <-third // answered by the standby while main's calls are still held
			} else {
				waitWaiting(t, p, 3) // it waits for main
			}
			if got, want := fakes[0].CallsTo("chat"), map[bool]int64{false: 0, true: 1}[spill]; got != want {
				t.Errorf("the standby got %d calls while main was full, want %d", got, want)
			}
			gate.release()
			if !spill {
				r3 = <-third
			}
			expectAll200(t, append(<-held, r3))
			if got, want := gate.arrived.Load(), map[bool]int64{false: 3, true: 2}[spill]; got != want {
				t.Errorf("main got %d calls, want %d", got, want)
			}
			if m := p.Fake.MaxInFlight(); m > 2 {
				t.Errorf("main had %d calls in flight, its max_concurrent is 2", m)
			}
		})
	}
}

// TestE2ERetryAfterMovesToAnotherEndpoint: a 429 with a long Retry-After from one endpoint sends the retry
// to the other at once, and no new call goes to the first until its Retry-After has passed.
func TestE2ERetryAfterMovesToAnotherEndpoint(t *testing.T) {
	fakes := startFakes(t, 2, fakeupstream.Options{})
	p := newTestProxy(t, func(c *fileConfig) {
		c.RetryBackoffMs = 10
		c.APIEndpoints = []endpointConfig{{Name: "a", URL: fakes[0].URL(), Weight: 1}, {Name: "b", URL: fakes[1].URL(), Weight: 1}}
	})
	fakes[0].FailNext(1, 429, "", map[string]string{"Retry-After": "60"})
	began := time.Now()
	resp, body := p.Post("/v1/chat/completions", chatBody("rate limited at a"))
	if resp.StatusCode != 200 || time.Since(began) > 30*time.Second {
		t.Fatalf("status %d after %v: %s; want b's answer long before a's Retry-After (60 s) ends", resp.StatusCode, time.Since(began), body)
	}
	expectAll200(t, sendPool(p.URL+"/v1/chat/completions", distinctBodies("while a rests", 6), 1, nil))
	if a, b := fakes[0].CallsTo("chat"), fakes[1].CallsTo("chat"); a != 1 || b != 7 {
		t.Errorf("calls: a %d, b %d; want a's one 429, then everything on b during its Retry-After", a, b)
	}
}

// TestE2ERetryWaitingForASlotDoesNotSpin: a retry whose pause is over but which finds every upstream slot
// taken waits for one without burning a core (the dispatcher once re-armed its timer for a time already
// past and spun until a slot freed).
func TestE2ERetryWaitingForASlotDoesNotSpin(t *testing.T) {
	p, gate := newGatedProxy(t, func(c *fileConfig) { c.MaxConcurrentRequests, c.RetryBackoffMs = 1, 300 })
	url := p.URL + "/v1/chat/completions"
	// The retried request's first attempt takes the only slot and is held at the gate while a streamed
	// request queues behind it; that attempt then fails, and the streamed request takes the slot during the
	// retry's pause and keeps it, its stream held by the upstream after the first event.
	retried := make(chan result, 1)
	go func() { retried <- send(testClient, url, chatBody("fails once, then waits for the slot")) }()
	gate.waitArrived(t, 1)
	holder := make(chan result, 1)
	go func() { holder <- send(testClient, url, chatStreamBody("holds the slot", false)) }()
	waitWaiting(t, p, 2)
	p.Fake.FailNext(1, 500, "", nil)
	p.Fake.HoldStreams()
	gate.release()
	waitFor(t, "the streamed call holding the slot", func() bool { return p.Fake.Held() == 1 })
	// The retry's pause (at most 300 ms) ends early in this window; from then on it waits for the slot. A
	// spinning dispatcher takes a core, even shared with other work; waiting takes next to nothing.
	const window = 3 * time.Second
	before := cpuTime(t)
	time.Sleep(window)
	used := cpuTime(t) - before
	t.Logf("CPU used while the retry waited: %v in %v", used, window)
	if used > window/3 {
		t.Errorf("the process used %v of CPU in %v while a retry waited for a slot; want it idle", used, window)
	}
	p.Fake.ReleaseStreams()
	for _, c := range []chan result{holder, retried} {
		if r := <-c; r.err != nil || r.status != 200 {
			t.Fatalf("status %d, err %v: %s", r.status, r.err, r.body)
		}
	}
	expectCalls(t, p, 3) // the failed attempt, the streamed call, the retry
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
