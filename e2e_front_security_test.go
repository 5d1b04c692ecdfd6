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

// clientKeysProxy is a proxy with three client keys: team-a's and team-b's, each with a namespace, and
// one without. Its endpoint has a key of its own, as client keys require.
func clientKeysProxy(t *testing.T) *testProxy {
	t.Helper()
	return newTestProxy(t, func(c *fileConfig) {
		c.APIEndpoints[0].APIKey = "sk-upstream-own"
		c.AdminToken = "admin-token"
		c.ClientKeys = []clientKeyConfig{{Key: "team-a-key", Namespace: "team-a"}, {Key: "team-b-key", Namespace: "team-b"}, {Key: "open-key"}}
	})
}

func bearerOf(key string) []string { return []string{"Authorization", "Bearer " + key} }

// A hit must not skip authentication: with client keys, every API request needs one (401 otherwise, on a
// hit as on a miss), each key with a namespace reads only its own entries, and no client key reaches the
// upstream.
func TestClientKeys(t *testing.T) {
	t.Parallel()
	p := clientKeysProxy(t)
	body := chatBody("client keys")
	resp, b := p.Post("/v1/chat/completions", body, bearerOf("team-a-key")...)
	expectCache(t, "team-a, first", resp, b, 200, "MISS")
	keyA := cacheKey(t, resp)
	resp, b = p.Post("/v1/chat/completions", body, bearerOf("team-a-key")...)
	expectCache(t, "team-a, again", resp, b, 200, "HIT")

	for _, auth := range [][]string{nil, bearerOf("wrong"), bearerOf(""), {"Authorization", "team-a-key"}, bearerOf("team-a-key2"), bearerOf("team-a-ke")} {
		resp, b := p.Post("/v1/chat/completions", body, auth...)
		e := expectError(t, "chat with "+strings.Join(auth, ": "), resp, b, 401)
		if str(e.Error.Code) != "invalid_api_key" || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("401: code %s, WWW-Authenticate %q", e.Error.Code, resp.Header.Get("WWW-Authenticate"))
		}
		resp, b = p.request("GET", "/v1/models", "", "", auth...)
		expectError(t, "models with "+strings.Join(auth, ": "), resp, b, 401)
	}
	resp, b = p.Post("/v1/chat/completions", body, "Authorization", "bearer team-a-key") // the scheme has no case
	expectCache(t, "team-a, lower-case bearer", resp, b, 200, "HIT")

	// Another key does not see team-a's entry, whatever namespace it names.
	resp, b = p.Post("/v1/chat/completions", body, bearerOf("team-b-key")...)
	expectCache(t, "team-b", resp, b, 200, "MISS")
	if cacheKey(t, resp) == keyA {
		t.Error("team-b got team-a's key")
	}
	resp, b = p.Post("/v1/chat/completions", body, append(bearerOf("team-b-key"), "X-Cache-Namespace", "../team-a")...)
	expectCache(t, "team-b naming ../team-a", resp, b, 200, "MISS")
	resp, b = p.Post("/v1/chat/completions", body, bearerOf("open-key")...)
	expectCache(t, "the key without a namespace", resp, b, 200, "MISS")
	for _, ns := range []string{"team-a", "team-b/x", "team-a/"} {
		resp, b = p.Post("/v1/chat/completions", body, append(bearerOf("open-key"), "X-Cache-Namespace", ns)...)
		e := expectError(t, "the key without a namespace naming "+ns, resp, b, 403)
		if str(e.Error.Code) != "namespace_forbidden" {
			t.Errorf("code %s, want namespace_forbidden", e.Error.Code)
		}
	}
	inBody := `{"model":"` + testModel + `","messages":[{"role":"user","content":"client keys"}],"cache":{"namespace":"team-a"}}`
	resp, b = p.Post("/v1/chat/completions", inBody, bearerOf("open-key")...)
	expectError(t, "the key without a namespace naming team-a in the body", resp, b, 403)
	resp, b = p.Post("/v1/chat/completions", body, append(bearerOf("open-key"), "X-Cache-Namespace", "team-ab")...)
	expectCache(t, "the key without a namespace naming team-ab", resp, b, 200, "MISS")

	// A namespace a key names nests inside its own, in the key and in the stored record.
	resp, b = p.Post("/v1/chat/completions", body, append(bearerOf("team-a-key"), "X-Cache-Namespace", "x")...)
	expectCache(t, "team-a naming x", resp, b, 200, "MISS")
	keyAX := cacheKey(t, resp)
	resp, b = p.Post("/v1/chat/completions", inBody[:len(inBody)-len(`"team-a"}}`)]+`"x"}}`, bearerOf("team-a-key")...)
	expectCache(t, "team-a naming x in the body", resp, b, 200, "HIT")
	db := openCacheDB(t, p.DBPath)
	for key, want := range map[string]string{keyA: "team-a", keyAX: "team-a/x"} {
		waitFor(t, "the row of "+want, func() bool { _, ok := db.row(key); return ok })
		if row, _ := db.row(key); row.Namespace != want {
			t.Errorf("stored namespace %q, want %q", row.Namespace, want)
		}
	}

	// The upstream sees its own key, never a client's.
	for _, r := range p.Fake.Requests() {
		if got := r.Header["Authorization"]; got != "Bearer sk-upstream-own" {
			t.Errorf("upstream got Authorization %q", got)
		}
	}

	// /stats, /metrics and /dashboard want a client key or the admin token; /healthz stays open.
	for _, path := range []string{"/stats", "/metrics", "/dashboard"} {
		resp, b := p.Get(path)
		expectError(t, path+" without a key", resp, b, 401)
		for _, key := range []string{"team-b-key", "admin-token"} {
			if resp, b := p.request("GET", path, "", "", bearerOf(key)...); resp.StatusCode != 200 {
				t.Errorf("%s with %s: %d %s", path, key, resp.StatusCode, b)
			}
		}
	}
	if resp, b := p.Get("/healthz"); resp.StatusCode != 200 {
		t.Errorf("/healthz without a key: %d %s", resp.StatusCode, b)
	}
}
