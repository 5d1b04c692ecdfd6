package pipeline

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"llmcache/pipeline/wire"
)

// TestRetryWaitsForASlotNoLongerThanTheQueueTimeout: a retry whose pause is over waits for a free upstream
// slot as long as a new miss may (queue_timeout_seconds), then its client gets the last attempt's answer.
// It waited without limit: behind calls that hung (an upstream that stopped answering), a request whose
// first attempt had failed stayed queued until one of them ended, minutes later, however many requests
// arrived meanwhile.
func TestRetryWaitsForASlotNoLongerThanTheQueueTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		tr := &fakeTransport{script: func(n int, req *wire.Request) answer {
			if strings.Contains(string(req.Body), "holds the slot") {
				<-release
				return chatAnswer(n)
			}
			return answer{status: 500, body: `{"error":{"message":"boom","type":"server_error","param":null,"code":null}}`}
		}}
		p, _ := testPipeline(t, tr, func(c *Config) {
			c.MaxConcurrentRequests, c.QueueTimeout, c.RetryBackoff, c.MaxRetries = 1, 5*time.Second, 2*time.Second, 3
		})
		defer p.Stop()
		failed := sendAsync(p, newRequest(chat("fails, then waits to retry"), false))
		synctest.Wait() // its first attempt failed: it waits out its pause (1 to 2 s) holding no slot
		start := time.Now()
		holder := sendAsync(p, newRequest(chat("holds the slot"), false))
		synctest.Wait()
		var r *Request
		select {
		case r = <-failed:
		case <-time.After(time.Hour): // the bubble's clock: no real time passes
			close(release)
			<-holder
			t.Fatal("the retry waiting for a slot was still waiting an hour later")
		}
		if took := time.Since(start); r.Resp.Status != 500 || took > 2*time.Second+5*time.Second {
			t.Errorf("the retry waiting for a slot: status %d after %v; want the last attempt's 500 within its pause and the queue timeout (7s)",
				r.Resp.Status, took)
		}
		if n := tr.calls.Load(); n != 2 {
			t.Errorf("%d upstream calls, want 2 (the failed attempt and the one holding the slot)", n)
		}
		close(release)
		expectStatus(t, "the call holding the slot", <-holder, 200)
	})
}
