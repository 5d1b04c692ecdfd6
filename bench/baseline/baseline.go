// Package baseline holds the plain fasthttp handlers llmcache's figures are compared with: a server that
// answers every request with the same bytes (what a cache hit could cost at best) and a reverse proxy that
// forwards every request without parsing or caching (what a miss could cost at best). The in-process
// benchmarks of bench/ and the command bench/bare (for the wrk scripts) serve the same handlers.
package baseline

import "github.com/valyala/fasthttp"

// Fixed answers every request with body as JSON.
func Fixed(body []byte) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(body)
	}
}

// ReverseProxy forwards every request to upstream (host:port) and returns its answer.
func ReverseProxy(upstream string) fasthttp.RequestHandler {
	hc := &fasthttp.HostClient{Addr: upstream, MaxConns: 1024}
	return func(ctx *fasthttp.RequestCtx) {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		ctx.Request.CopyTo(req)
		req.Header.Del("Connection")
		if err := hc.Do(req, &ctx.Response); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadGateway)
		}
	}
}
