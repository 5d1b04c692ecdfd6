package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"llmcache/bench/fakeupstream"
)

// A batch survives a stop and a crash: it resumes where it was without asking the upstream again for a
// line whose result was recorded; a cancel keeps the finished lines. Lines here are no-store, so that a line
// run twice would reach the upstream twice (a stored answer would hide it).

// countingGate is a reverse proxy in front of the fake upstream that lets the first pass calls through and
// holds the rest until it is opened; opened with failHeld, the held calls are answered 502 without reaching
// the upstream (their proxy is gone), and later calls go through.
type countingGate struct {
	pass     atomic.Int64
	held     atomic.Int64
	failHeld atomic.Bool
	open     chan struct{}
	once     sync.Once
	URL      string
}

func newCountingGate(t *testing.T, target string, pass int64) *countingGate {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	g := &countingGate{open: make(chan struct{})}
	g.pass.Store(pass)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.pass.Add(-1) < 0 {
			g.held.Add(1)
			<-g.open
			if g.failHeld.Load() {
				http.Error(w, "gate closed", http.StatusBadGateway)
				return
			}
		}
		forwardWhole(rp, w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { g.release(false) }) // runs before srv.Close; a test with a proxy in front releases it before that stops too
	g.URL = srv.URL
	return g
}

// release opens the gate for good; with failHeld the calls held so far never reach the upstream.
func (g *countingGate) release(failHeld bool) {
	g.once.Do(func() {
		g.failHeld.Store(failHeld)
		g.pass.Store(1 << 40)
		close(g.open)
	})
}

// noStoreLines is a batch of n distinct chat lines, each "line-<i>", that are never stored.
func noStoreLines(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(jsonlLine(fmt.Sprintf("line-%d", i), "/v1/chat/completions",
			`{"model":"`+testModel+`","cache":{"no-store":true},"messages":[{"role":"user","content":"line-`+fmt.Sprint(i)+`"}]}`))
	}
	return b.String()
}

// callsByContent counts the fake's chat calls by their last message's content.
func callsByContent(t *testing.T, fake *fakeupstream.Server) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range fake.Requests() {
		if !strings.HasSuffix(r.Path, "/chat/completions") {
			continue
		}
		var b struct {
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(r.Body, &b); err != nil || len(b.Messages) == 0 {
			t.Fatalf("an upstream call's body: %v: %s", err, r.Body)
		}
		out[b.Messages[len(b.Messages)-1].Content]++
	}
	return out
}

// expectEachOnce fails unless each of the n lines reached the upstream exactly once.
func expectEachOnce(t *testing.T, fake *fakeupstream.Server, n int) {
	t.Helper()
	calls := callsByContent(t, fake)
	for i := range n {
		if c := calls[fmt.Sprintf("line-%d", i)]; c != 1 {
			t.Errorf("line-%d reached the upstream %d times, want once", i, c)
		}
	}
}

// expectAllLines fails unless a completed batch answered each of the n lines once, with 200.
func expectAllLines(t *testing.T, client openai.Client, b *openai.Batch, n int) {
	t.Helper()
	if b.Status != openai.BatchStatusCompleted || b.RequestCounts.Total != int64(n) || b.RequestCounts.Completed != int64(n) {
		t.Fatalf("batch: %s", b.RawJSON())
	}
	lines := byCustomID(t, fileLines(t, client, b.OutputFileID), fileLines(t, client, b.ErrorFileID))
	for i := range n {
		l, ok := lines[fmt.Sprintf("line-%d", i)]
		if !ok || l.Response.StatusCode != 200 {
			t.Fatalf("line-%d: %+v", i, l)
		}
	}
}

func clientFor(baseURL string) openai.Client {
	return openai.NewClient(option.WithBaseURL(baseURL+"/v1/"), option.WithAPIKey("test"), option.WithMaxRetries(0),
		option.WithHTTPClient(testClient))
}

// TestE2EBatchResumesAfterStop: a proxy stopped as SIGTERM stops it, in the middle of a batch, finishes the
// lines in flight and records them; started again, it runs the rest. Every line reaches the upstream exactly
// once.
func TestE2EBatchResumesAfterStop(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.BatchConcurrency = 3 })
	p.Fake.SetLatency(20 * time.Millisecond)
	const n = 60
	client := sdkClient(p)
	b := startBatch(t, client, noStoreLines(n), openai.BatchNewParamsEndpointV1ChatCompletions)
	waitFor(t, "a third of the lines", func() bool {
		got, err := client.Batches.Get(context.Background(), b.ID)
		return err == nil && got.RequestCounts.Completed >= n/3
	})
	p.Restart()
	client = sdkClient(p)
	if got, err := client.Batches.Get(context.Background(), b.ID); err != nil || got.Status != openai.BatchStatusInProgress ||
		got.RequestCounts.Completed < n/3 || got.RequestCounts.Completed == n {
		t.Fatalf("after the restart: %v %s", err, got.RawJSON())
	}
	expectAllLines(t, client, waitBatch(t, client, b.ID), n)
	expectEachOnce(t, p.Fake, n)
}

// TestE2EBatchCancel: a cancel admits no more lines; the lines in flight finish and stay in the output file;
// the batch ends cancelled. Cancelling it again changes nothing; a completed batch cannot be cancelled.
func TestE2EBatchCancel(t *testing.T) {
	var gate *countingGate
	p := newTestProxy(t, func(c *fileConfig) {
		c.BatchConcurrency = 2
		gate = newCountingGate(t, c.APIEndpoints[0].URL, 5)
		c.APIEndpoints[0].URL = gate.URL
	})
	t.Cleanup(func() { gate.release(false) }) // before the proxy stops, which waits for the lines held
	client := sdkClient(p)
	ctx := context.Background()
	b := startBatch(t, client, noStoreLines(40), openai.BatchNewParamsEndpointV1ChatCompletions)
	waitFor(t, "5 lines answered and 2 held", func() bool {
		got, err := client.Batches.Get(ctx, b.ID)
		return err == nil && got.RequestCounts.Completed == 5 && gate.held.Load() == 2
	})
	c, err := client.Batches.Cancel(ctx, b.ID)
	if err != nil || c.Status != openai.BatchStatusCancelling || c.CancellingAt == 0 {
		t.Fatalf("Cancel: %v %s", err, c.RawJSON())
	}
	gate.release(false)
	c = waitBatch(t, client, b.ID)
	if c.Status != openai.BatchStatusCancelled || c.CancelledAt == 0 || c.RequestCounts.Completed != 7 || c.RequestCounts.Total != 40 {
		t.Fatalf("cancelled batch: %s", c.RawJSON())
	}
	if lines := fileLines(t, client, c.OutputFileID); len(lines) != 7 {
		t.Fatalf("%d lines in the output of a batch cancelled after 7", len(lines))
	}
	if got := p.Fake.CallsTo("chat"); got != 7 {
		t.Fatalf("%d upstream calls, want the 7 lines admitted before the cancel", got)
	}
	if again, err := client.Batches.Cancel(ctx, b.ID); err != nil || again.Status != openai.BatchStatusCancelled {
		t.Fatalf("cancelling a cancelled batch: %v %s", err, again.RawJSON())
	}
	done := waitBatch(t, client, startBatch(t, client, noStoreLines(1), openai.BatchNewParamsEndpointV1ChatCompletions).ID)
	if _, err := client.Batches.Cancel(ctx, done.ID); sdkStatus(err) != 409 {
		t.Fatalf("cancelling a completed batch: %v, want a 409", err)
	}
}

// TestE2EBinaryBatchSIGTERM: SIGTERM in the middle of a batch exits 0 once the lines in flight are answered
// and recorded; the binary started again finishes the batch; every line reached the upstream once.
func TestE2EBinaryBatchSIGTERM(t *testing.T) {
	fake, _, cfgPath := binFixture(t, "batch_concurrency = 3", "")
	fake.SetLatency(20 * time.Millisecond)
	bin := startBin(t, cfgPath)
	const n = 60
	client := clientFor("http://" + bin.addr)
	b := startBatch(t, client, noStoreLines(n), openai.BatchNewParamsEndpointV1ChatCompletions)
	waitFor(t, "a third of the lines", func() bool {
		got, err := client.Batches.Get(context.Background(), b.ID)
		return err == nil && got.RequestCounts.Completed >= n/3
	})
	bin.stop()
	bin = startBin(t, cfgPath)
	client = clientFor("http://" + bin.addr)
	expectAllLines(t, client, waitBatch(t, client, b.ID), n)
	expectEachOnce(t, fake, n)
	bin.stop()
}

// TestE2EBinaryBatchKill: kill -9 while the upstream holds the next lines (nothing else in flight): after a
// restart no line whose result was recorded is asked again. The held calls never reach the upstream, so every
// line is asked exactly once over both runs.
func TestE2EBinaryBatchKill(t *testing.T) {
	llmcacheBinary(t)
	fake := startFake(t, fakeupstream.Options{})
	const n, answered = 50, 20
	gate := newCountingGate(t, fake.URL(), answered)
	dir := t.TempDir()
	cfgPath := writeBinConfig(t, dir, "config.toml", dir+"/cache.db", gate.URL, "batch_concurrency = 4", "")
	bin := startBin(t, cfgPath)
	client := clientFor("http://" + bin.addr)
	b := startBatch(t, client, noStoreLines(n), openai.BatchNewParamsEndpointV1ChatCompletions)
	waitFor(t, "the lines let through answered and the next ones held", func() bool {
		got, err := client.Batches.Get(context.Background(), b.ID)
		return err == nil && got.RequestCounts.Completed == answered && gate.held.Load() == 4
	})
	bin.signalAndWait(syscall.SIGKILL)
	gate.release(true)
	bin = startBin(t, cfgPath)
	client = clientFor("http://" + bin.addr)
	expectAllLines(t, client, waitBatch(t, client, b.ID), n)
	expectEachOnce(t, fake, n)
	bin.stop()
}
