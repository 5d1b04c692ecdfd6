package upstream

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"llmcache/pipeline/wire"
)

// benchUpstream serves a fixed answer with fasthttp, which allocates next to nothing, so that the figures
// are the client's.
func benchUpstream(b *testing.B, body []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

type discardSink struct{}

func (discardSink) Header(int, string, string) {}
func (discardSink) Data([]byte)                {}

func BenchmarkClient(b *testing.B) {
	body := []byte(`{"id":"chatcmpl-1","choices":[{"message":{"role":"assistant","content":"hello"}}]}`)
	url := benchUpstream(b, body)
	c := New()
	ep := endpoint(url)
	req := request(ep, "/v1/chat/completions")
	b.Run("op=Do", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var resp wire.Response
			if err := c.Do(req, &resp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=Stream", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if err := c.Stream(req, discardSink{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
