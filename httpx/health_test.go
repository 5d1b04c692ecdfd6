package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestHealthzStatuses: /healthz answers 200 ok when healthy, 200 degraded with the reason while the proxy
// still answers (a store it cannot write, ejected endpoints), and 503 down only when the health check says
// it cannot answer at all (a *Down, wrapped or not). The reason is a JSON string whatever it holds.
func TestHealthzStatuses(t *testing.T) {
	for _, c := range []struct {
		name   string
		err    error
		status int
		body   map[string]string
	}{
		{"healthy", nil, 200, map[string]string{"status": "ok"}},
		{"degraded", errors.New(`cannot write to the cache db: "disk" full` + "\n\t<x>"), 200,
			map[string]string{"status": "degraded", "reason": `cannot write to the cache db: "disk" full` + "\n\t<x>"}},
		{"down", &Down{Reason: "stopping"}, 503, map[string]string{"status": "down", "reason": "stopping"}},
		{"down, wrapped", fmt.Errorf("cannot answer: %w", &Down{Reason: "no store"}), 503,
			map[string]string{"status": "down", "reason": "cannot answer: no store"}},
	} {
		s := New(Config{}, nil, func() error { return c.err })
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("GET")
		ctx.Request.SetRequestURI("/healthz")
		s.srv.Handler(&ctx)
		var body map[string]string
		if err := json.Unmarshal(ctx.Response.Body(), &body); err != nil {
			t.Fatalf("%s: body %q is not JSON: %v", c.name, ctx.Response.Body(), err)
		}
		if ctx.Response.StatusCode() != c.status || fmt.Sprint(body) != fmt.Sprint(c.body) {
			t.Errorf("%s: %d %v, want %d %v", c.name, ctx.Response.StatusCode(), body, c.status, c.body)
		}
		if ct := string(ctx.Response.Header.ContentType()); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", c.name, ct)
		}
	}
}
