package main

import (
	"net/http"
	"strings"
	"testing"
)

// End-to-end tests of who may use what: browser pages and DNS rebinding against a loopback bind, and
// client keys.

// request sends method path with body and header pairs, and an optional Host, and returns the answer.
func (p *testProxy) request(method, path, host, body string, header ...string) (*http.Response, []byte) {
	p.t.Helper()
	req, err := http.NewRequest(method, p.URL+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return p.do(req)
}

// A web page can send a POST anywhere (fetch with mode no-cors, a form): the admin routes refuse one whose
// Origin is not the proxy's own, so that no page can flush or delete the cache of a proxy on localhost.
func TestAdminRoutesRefuseOtherOrigins(t *testing.T) {
	t.Parallel()
	p := newTestProxy(t, nil)
	resp, b := p.Post("/v1/chat/completions", chatBody("kept from pages"))
	expectCache(t, "fill", resp, b, 200, "MISS")
	own := p.URL // http://127.0.0.1:PORT
	for _, origin := range []string{"https://evil.example", "null", "http://localhost:1", own + ".evil.example", "http://127.0.0.1"} {
		resp, b := p.request("POST", "/cache/flushall", "", "", "Origin", origin, "Content-Type", "text/plain")
		expectError(t, "flushall from "+origin, resp, b, 403)
		resp, b = p.request("POST", "/cache/delete", "", `{"namespace":""}`, "Origin", origin, "Content-Type", "text/plain")
		expectError(t, "delete from "+origin, resp, b, 403)
	}
	resp, b = p.Post("/v1/chat/completions", chatBody("kept from pages"))
	expectCache(t, "after the refused flushes", resp, b, 200, "HIT")
	// The proxy's own origin, and tools that send none (curl), may.
	resp, b = p.request("POST", "/cache/delete", "", `{"namespace":"nobody"}`, "Origin", own)
	if n := deletedCount(t, resp.StatusCode, b); n != 0 {
		t.Errorf("delete from the own origin: %d deleted", n)
	}
	resp, b = p.request("POST", "/cache/flushall", "", "")
	if n := deletedCount(t, resp.StatusCode, b); n != 1 {
		t.Errorf("flushall without an Origin: %d deleted, want 1", n)
	}
}

// On a loopback bind, a request for a Host that is not a loopback name or address is one a browser sent
// after a DNS rebinding (evil.example now resolving to 127.0.0.1): refused on every route, so no page can
// read /stats or an answer.
func TestLoopbackBindRefusesOtherHosts(t *testing.T) {
	t.Parallel()
	p := newTestProxy(t, nil)
	port := p.URL[strings.LastIndexByte(p.URL, ':'):]
	for _, host := range []string{"evil.example", "evil.example" + port, "localhost.evil.example" + port, "127.0.0.1.evil.example", "10.0.0.1" + port} {
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/stats", ""}, {"GET", "/healthz", ""}, {"GET", "/metrics", ""}, {"GET", "/v1/models", ""},
			{"POST", "/v1/chat/completions", chatBody("rebinding")}, {"POST", "/cache/flushall", ""}, {"GET", "/no/such/route", ""},
		} {
			resp, b := p.request(r.method, r.path, host, r.body, "Content-Type", "application/json")
			expectError(t, r.method+" "+r.path+" for Host "+host, resp, b, 403)
		}
	}
	if n := p.Fake.CallsTo("chat"); n != 0 {
		t.Errorf("upstream got %d chat calls from refused hosts", n)
	}
	for _, host := range []string{"localhost" + port, "LOCALHOST" + port, "localhost", "app.localhost" + port, "127.0.0.1" + port, "127.1.2.3", "[::1]" + port} {
		resp, b := p.request("GET", "/stats", host, "")
		if resp.StatusCode != 200 {
			t.Errorf("GET /stats for Host %s: %d %s", host, resp.StatusCode, b)
		}
	}
}
