package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
)

// batchFigures is the Batch API's part of /stats.
type batchFigures struct {
	Batches          map[string]int64 `json:"batches"`
	BatchLines       map[string]int64 `json:"batch_lines"`
	BatchLineRetries int64            `json:"batch_line_retries"`
}

func batchStats(t *testing.T, p *testProxy) batchFigures {
	t.Helper()
	resp, body := p.Get("/stats")
	var s batchFigures
	if resp.StatusCode != 200 || json.Unmarshal(body, &s) != nil {
		t.Fatalf("/stats: status %d, body %s", resp.StatusCode, body)
	}
	return s
}

// TestE2EBatchObserve: /stats and /metrics count batches by status and lines by outcome; the dashboard lists
// a running batch; `llmcache batches` lists them with their progress.
func TestE2EBatchObserve(t *testing.T) {
	var gate *countingGate
	p := newTestProxy(t, func(c *fileConfig) {
		c.BatchConcurrency = 1
		gate = newCountingGate(t, c.APIEndpoints[0].URL, 3)
		c.APIEndpoints[0].URL = gate.URL
	})
	t.Cleanup(func() { gate.release(false) }) // before the proxy stops, which waits for the lines held
	client := sdkClient(p)
	body := chatBody("observed")
	done := waitBatch(t, client, startBatch(t, client, jsonlLine("a", "/v1/chat/completions", body)+jsonlLine("b", "/v1/chat/completions", body)+
		jsonlLine("bad", "/v1/chat/completions", `{"model":"`+testModel+`"}`), openai.BatchNewParamsEndpointV1ChatCompletions).ID)
	if done.Status != openai.BatchStatusCompleted {
		t.Fatal(done.RawJSON())
	}
	running := startBatch(t, client, noStoreLines(10), openai.BatchNewParamsEndpointV1ChatCompletions)
	waitFor(t, "the second batch to reach the gate", func() bool {
		got, err := client.Batches.Get(context.Background(), running.ID)
		return err == nil && got.RequestCounts.Completed == 2 && gate.held.Load() == 1
	})

	s := batchStats(t, p)
	if s.Batches["completed"] != 1 || s.Batches["in_progress"] != 1 || s.Batches["failed"] != 0 {
		t.Errorf("/stats batches %v", s.Batches)
	}
	// Line a missed, b was a memory hit, bad was an error; then two lines of the running batch missed.
	if l := s.BatchLines; l["miss"] != 3 || l["memory_hit"] != 1 || l["error"] != 1 {
		t.Errorf("/stats batch_lines %v", l)
	}
	_, metrics := p.Get("/metrics")
	for _, want := range []string{`llmcache_batches{status="completed"} 1`, `llmcache_batches{status="in_progress"} 1`,
		`llmcache_batch_lines_total{outcome="miss"} 3`, `llmcache_batch_lines_total{outcome="error"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	_, page := p.Get("/dashboard")
	if !strings.Contains(string(page), "Running batches") || !strings.Contains(string(page), running.ID) || strings.Contains(string(page), done.ID) {
		t.Errorf("the dashboard does not list the running batch alone")
	}
	waitFor(t, "the running batch's progress to be recorded", func() bool {
		code, out, _ := cli(t, nil, "batches", "-db", p.DBPath)
		return code == 0 && strings.Contains(out, running.ID+"  in_progress  /v1/chat/completions  20.0%")
	})
	code, out, errOut := cli(t, nil, "batches", "-db", p.DBPath)
	if code != 0 || !strings.Contains(out, done.ID+"  completed") || strings.Index(out, running.ID) > strings.Index(out, done.ID) {
		t.Errorf("llmcache batches: exit %d\n%s%s", code, out, errOut)
	}
	gate.release(false)
	waitBatch(t, client, running.ID)
}
