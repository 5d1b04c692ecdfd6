package main

import (
	"encoding/json"
	"fmt"
	"testing"
)

func deletedCount(t *testing.T, status int, body []byte) int64 {
	t.Helper()
	var r struct {
		Deleted *int64 `json:"deleted"`
	}
	if status != 200 || json.Unmarshal(body, &r) != nil || r.Deleted == nil {
		t.Fatalf("admin answer: status %d, body %s", status, body)
	}
	return *r.Deleted
}

func TestE2EAdminDelete(t *testing.T) {
	p := newTestProxy(t, nil)
	keys := map[string]string{}
	for _, c := range []struct{ ns, content string }{{"", "keep"}, {"", "drop by key"}, {"team-a", "drop by namespace 1"}, {"team-a", "drop by namespace 2"}} {
		resp, b := p.Post("/v1/chat/completions", chatBody(c.content), "X-Cache-Namespace", c.ns)
		expectCache(t, c.content, resp, b, 200, "MISS")
		keys[c.content] = cacheKey(t, resp)
	}
	resp, b := p.Post("/cache/delete", `{"keys":["`+keys["drop by key"]+`"]}`)
	if n := deletedCount(t, resp.StatusCode, b); n != 1 {
		t.Errorf("delete by key: %d deleted, want 1", n)
	}
	resp, b = p.Post("/cache/delete", `{"namespace":"team-a"}`)
	if n := deletedCount(t, resp.StatusCode, b); n != 2 {
		t.Errorf("delete by namespace: %d deleted, want 2", n)
	}
	// What was deleted is a miss again (memory too); what was kept is still a hit.
	for content, want := range map[string]string{"keep": "HIT", "drop by key": "MISS"} {
		resp, b = p.Post("/v1/chat/completions", chatBody(content))
		expectCache(t, content, resp, b, 200, want)
	}
	resp, b = p.Post("/v1/chat/completions", chatBody("drop by namespace 1"), "X-Cache-Namespace", "team-a")
	expectCache(t, "namespace entry after delete", resp, b, 200, "MISS")

	// Bad filters are 400s that change nothing.
	for _, bad := range []string{`{}`, `{"keys":["zz"]}`, `{"nope":1}`, `not json`, `{"older_than_seconds":-1}`} {
		resp, b = p.Post("/cache/delete", bad)
		expectError(t, "bad delete "+bad, resp, b, 400)
	}
	resp, b = p.Post("/v1/chat/completions", chatBody("keep"))
	expectCache(t, "kept after bad deletes", resp, b, 200, "HIT")
}

func TestE2EAdminFlushAllAndOlderThan(t *testing.T) {
	p := newTestProxy(t, nil)
	for i := range 5 {
		resp, b := p.Post("/v1/chat/completions", chatBody(fmt.Sprintf("flush %d", i)))
		expectCache(t, "fill", resp, b, 200, "MISS")
	}
	resp, b := p.Post("/cache/delete", `{"older_than_seconds":3600}`)
	if n := deletedCount(t, resp.StatusCode, b); n != 0 {
		t.Errorf("older_than_seconds 3600 deleted %d fresh entries, want 0", n)
	}
	resp, b = p.Post("/cache/flushall", ``)
	if n := deletedCount(t, resp.StatusCode, b); n != 5 {
		t.Errorf("flushall deleted %d, want 5", n)
	}
	if n := openCacheDB(t, p.DBPath).count(); n != 0 {
		t.Errorf("%d rows after flushall, want 0", n)
	}
	// Neither memory nor the dispatcher's recent answers serve a flushed entry.
	resp, b = p.Post("/v1/chat/completions", chatBody("flush 0"))
	expectCache(t, "after flushall", resp, b, 200, "MISS")
}

func TestE2EAdminToken(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.AdminToken = "s3cret" })
	resp, b := p.Post("/cache/flushall", ``)
	expectError(t, "no token", resp, b, 401)
	resp, b = p.Post("/cache/flushall", ``, "Authorization", "Bearer wrong")
	expectError(t, "wrong token", resp, b, 401)
	resp, b = p.Post("/cache/flushall", ``, "Authorization", "Bearer s3cret")
	deletedCount(t, resp.StatusCode, b)
}
