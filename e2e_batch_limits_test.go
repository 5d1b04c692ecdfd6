package main

import (
	"context"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// How batches share the proxy: lines are admitted batch_concurrency at a time; a local overload is retried,
// never a line's result; finished batches go after batch_retention_days; files and batches belong to the
// client key that made them.

// TestE2EBatchAdmission: at most batch_concurrency lines of a batch are in the pipeline at once, so the
// upstream never sees more of them in flight.
func TestE2EBatchAdmission(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.BatchConcurrency = 3 })
	p.Fake.SetLatency(30 * time.Millisecond)
	client := sdkClient(p)
	const n = 30
	expectAllLines(t, client, waitBatch(t, client, startBatch(t, client, noStoreLines(n), openai.BatchNewParamsEndpointV1ChatCompletions).ID), n)
	if m := p.Fake.MaxInFlight(); m > 3 || m < 2 {
		t.Fatalf("the upstream had up to %d calls in flight, want at most batch_concurrency (3), and more than one", m)
	}
}

// TestE2EBatchOverloadRetried: with more batch lines admitted than upstream slots and a short queue timeout,
// the pipeline refuses some as overloaded (503); they are submitted again, and every line ends answered 200,
// none with the 503.
func TestE2EBatchOverloadRetried(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.MaxConcurrentRequests, c.QueueTimeoutSeconds, c.BatchConcurrency = 1, 0.02, 4
		c.batchRetryPause = 10 * time.Millisecond
	})
	p.Fake.SetLatency(40 * time.Millisecond)
	client := sdkClient(p)
	const n = 12
	expectAllLines(t, client, waitBatch(t, client, startBatch(t, client, noStoreLines(n), openai.BatchNewParamsEndpointV1ChatCompletions).ID), n)
	expectEachOnce(t, p.Fake, n)
	if s := batchStats(t, p); s.BatchLineRetries == 0 || s.BatchLines["error"] != 0 {
		t.Fatalf("/stats batch_line_retries %d, batch_lines %v: want retries and no errors", s.BatchLineRetries, s.BatchLines)
	}
}

// TestE2EBatchRetention: a finished batch, its output file and its input file are deleted by the retention
// sweep once batch_retention_days have passed since it ended (here at a restart, which sweeps at once).
func TestE2EBatchRetention(t *testing.T) {
	p := newTestProxy(t, nil)
	client := sdkClient(p)
	b := waitBatch(t, client, startBatch(t, client, noStoreLines(3), openai.BatchNewParamsEndpointV1ChatCompletions).ID)
	if b.Status != openai.BatchStatusCompleted {
		t.Fatal(b.RawJSON())
	}
	p.Restart() // kept: 30 days have not passed
	client = sdkClient(p)
	if _, err := client.Batches.Get(context.Background(), b.ID); err != nil {
		t.Fatalf("a batch within its retention: %v", err)
	}
	p.cfg.BatchRetentionDays = 1e-9 // ~0.1 ms
	p.Restart()
	client = sdkClient(p)
	waitFor(t, "the sweep to delete the batch", func() bool {
		_, err := client.Batches.Get(context.Background(), b.ID)
		return sdkStatus(err) == 404
	})
	for _, id := range []string{b.OutputFileID, b.InputFileID} {
		waitFor(t, "the sweep to delete "+id, func() bool {
			_, err := client.Files.Get(context.Background(), id)
			return sdkStatus(err) == 404
		})
	}
	waitFor(t, "an empty batch folder", func() bool { return len(batchFolder(t, p)) == 0 })
}

// TestE2EBatchClientKeys: with client keys, a key sees only its own files and batches (404 for another's),
// a request without a key is a 401, and a batch's lines live in its key's namespace: the key's live request
// is a hit, another key's a miss.
func TestE2EBatchClientKeys(t *testing.T) {
	p := clientKeysProxy(t)
	keyed := func(key string) openai.Client {
		return openai.NewClient(option.WithBaseURL(p.URL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0), option.WithHTTPClient(testClient))
	}
	a, other := keyed("team-a-key"), keyed("team-b-key")
	ctx := context.Background()
	body := chatBody("team a's batch")
	b := waitBatch(t, a, startBatch(t, a, jsonlLine("q", "/v1/chat/completions", body), openai.BatchNewParamsEndpointV1ChatCompletions).ID)
	if b.Status != openai.BatchStatusCompleted {
		t.Fatal(b.RawJSON())
	}
	if _, err := other.Batches.Get(ctx, b.ID); sdkStatus(err) != 404 {
		t.Errorf("another key's Batches.Get: %v, want a 404", err)
	}
	if _, err := other.Files.Get(ctx, b.InputFileID); sdkStatus(err) != 404 {
		t.Errorf("another key's Files.Get: %v, want a 404", err)
	}
	if _, err := other.Files.Content(ctx, b.OutputFileID); sdkStatus(err) != 404 {
		t.Errorf("another key's Files.Content: %v, want a 404", err)
	}
	if page, err := other.Batches.List(ctx, openai.BatchListParams{}); err != nil || len(page.Data) != 0 {
		t.Errorf("another key's Batches.List: %v %v", err, page)
	}
	if _, err := other.Batches.Cancel(ctx, b.ID); sdkStatus(err) != 404 {
		t.Errorf("another key's Batches.Cancel: %v, want a 404", err)
	}
	wrong := keyed("wrong")
	if _, err := wrong.Files.List(ctx, openai.FileListParams{}); sdkStatus(err) != 401 {
		t.Errorf("a wrong key: %v, want a 401", err)
	}
	resp, rb := p.Post("/v1/chat/completions", body, bearerOf("team-a-key")...)
	expectCache(t, "team-a's live request", resp, rb, 200, "HIT")
	resp, rb = p.Post("/v1/chat/completions", body, bearerOf("team-b-key")...)
	expectCache(t, "team-b's live request", resp, rb, 200, "MISS")
	if h := p.Fake.Requests()[0].Header["Authorization"]; h != "Bearer sk-upstream-own" {
		t.Errorf("a batch line reached the upstream with Authorization %q, want the endpoint's own key", h)
	}
}
