package main

import (
	"strings"
	"testing"
)

// TestE2EEndpointURLWithQuery: an endpoint whose URL carries a query string (Azure OpenAI's api-version)
// gets every call at the joined path with the query kept after it.
func TestE2EEndpointURLWithQuery(t *testing.T) {
	p := newTestProxy(t, nil)
	p.Stop()
	p.cfg.APIEndpoints[0].URL = p.Fake.URL() + "/v1?api-version=2024-10-21"
	p.start()

	resp, body := p.Post("/v1/chat/completions", chatBody("query kept"))
	expectCache(t, "chat through an endpoint with a query", resp, body, 200, "MISS")
	if err := checkEcho(body, "query kept"); err != nil {
		t.Fatal(err)
	}
	reqs := p.Fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream saw %d requests, want 1", len(reqs))
	}
	if reqs[0].Path != "/v1/chat/completions" || reqs[0].Query != "api-version=2024-10-21" {
		t.Errorf("upstream saw path %q query %q, want /v1/chat/completions and api-version=2024-10-21", reqs[0].Path, reqs[0].Query)
	}
}

// TestEndpointURLThatCannotBeABaseRefused: what cannot be a base URL stops the start, naming the key.
func TestEndpointURLThatCannotBeABaseRefused(t *testing.T) {
	for _, url := range []string{"ftp://h/v1", "http://", "http://h/v1#part", "127.0.0.1:1234", "http://h:70000/v1"} {
		cfg := defaultConfig()
		cfg.APIEndpoints = []endpointConfig{{URL: url, Weight: 1}}
		err := cfg.validate()
		if err == nil || !strings.Contains(err.Error(), "api_endpoints[0].url") {
			t.Errorf("url %q: validate() = %v, want an error naming api_endpoints[0].url", url, err)
		}
	}
}
