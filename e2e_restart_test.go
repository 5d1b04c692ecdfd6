package main

import (
	"fmt"
	"sync"
	"testing"

	"llmcache/bench/fakeupstream"
)

// TestE2EUpstreamRestartedComesBack: an upstream restarted on its address leaves the proxy holding dead
// kept-alive connections to it. It is ejected, and once its rest is over the first probe reaches the new
// process (ejection dropped the dead connections, and a call that fails on a reused connection before any
// answer is resent on a fresh one): back in service after one probe, never ejected again.
func TestE2EUpstreamRestartedComesBack(t *testing.T) {
	fakes := startFakes(t, 2, fakeupstream.Options{})
	addr := fakes[0].Addr()
	p := newTestProxy(t, func(c *fileConfig) {
		c.EjectAfter, c.EjectSeconds, c.RetryBackoffMs = 1, 1, 10
		c.APIEndpoints = []endpointConfig{{Name: "restarted", URL: fakes[0].URL(), Weight: 1}, {Name: "steady", URL: fakes[1].URL(), Weight: 1}}
	})
	// Several kept-alive connections to each endpoint.
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Post("/v1/chat/completions", chatBody(fmt.Sprint("warm ", i)), "X-Fake-Delay-Ms", "50")
		}()
	}
	wg.Wait()
	if fakes[0].CallsTo("chat") < 2 {
		t.Fatalf("only %d calls reached the first endpoint: too few connections to test with", fakes[0].CallsTo("chat"))
	}
	fakes[0].Close()
	n := 0
	waitFor(t, "the dead endpoint's ejection", func() bool {
		n++
		resp, body := p.Post("/v1/chat/completions", chatBody(fmt.Sprint("while down ", n)))
		if resp.StatusCode != 200 {
			t.Fatalf("a request while one endpoint is down: %d %s (the retry should go to the other)", resp.StatusCode, body)
		}
		h, _, _, _ := getUpstreamStats(t, p).endpoint(t, "restarted")
		return h == "ejected"
	})
	back, err := fakeupstream.Start(fakeupstream.Options{Addr: addr})
	if err != nil {
		t.Fatalf("cannot restart the upstream on %s: %v", addr, err)
	}
	t.Cleanup(func() { back.Close() })
	waitFor(t, "a call to reach the restarted upstream", func() bool {
		n++
		p.Post("/v1/chat/completions", chatBody(fmt.Sprint("after the restart ", n)))
		return back.CallsTo("chat") > 0
	})
	h, _, ejections, _ := getUpstreamStats(t, p).endpoint(t, "restarted")
	if h != "healthy" || ejections != 1 {
		t.Errorf("after the restart: %s with %d ejections; want healthy after its first probe (1 ejection)", h, ejections)
	}
}
