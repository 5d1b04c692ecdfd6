package httpx

import (
	"bytes"
	"time"

	"github.com/valyala/fasthttp"

	"llmcache/pipeline"
)

// passThrough answers the paths under /v1/ that no route claims (moderations, audio, images, rerank...): the
// request goes to an endpoint as the client sent it, under the same client-key and header rules as the
// cached routes, and the endpoint's answer comes back as it is, with X-Cache: BYPASS. Paths outside /v1/
// stay unknown (404), and a known path asked with another method stays a 405.
func (s *Server) passThrough(ctx *fasthttp.RequestCtx) {
	// The normalized path, escaped again: a client's "/v1/../admin" never reaches the upstream as such.
	path, _, _ := bytes.Cut(ctx.URI().RequestURI(), []byte("?"))
	if len(path) <= len("/v1/") || !bytes.HasPrefix(path, []byte("/v1/")) {
		notFound(ctx)
		return
	}
	var tenant *pipeline.Tenant
	if len(s.keys) > 0 {
		if tenant = s.tenant(ctx); tenant == nil {
			refuseNoKey(ctx, errNoClientKey)
			return
		}
	}
	r := pipeline.Acquire()
	r.Kind = pipeline.KindPassThrough
	r.Tenant = tenant
	r.Arrived = time.Now()
	if s.cfg.Activity != nil {
		s.cfg.Activity.Touch(r.Arrived)
	}
	route := string(path[len("/v1"):])
	if q := ctx.URI().QueryString(); len(q) > 0 {
		route += "?" + string(q)
	}
	r.Pass = &pipeline.PassThrough{Method: string(ctx.Method()), Path: route, ContentType: string(ctx.Request.Header.ContentType())}
	r.Body = append(r.Body[:0], ctx.PostBody()...)
	// Headers sort as on the cached routes. Of the cache controls only the mode counts here (read_only never
	// calls an upstream), so a bad control is no error.
	r.Controls = pipeline.DefaultControls(s.cfg.DefaultMode)
	_ = readHeaders(ctx, r, tenant != nil)

	s.pipe.Submit(r)
	<-r.Done()
	writePassThrough(ctx, &r.Resp)
	if s.cfg.Observe != nil {
		s.cfg.Observe(r.Kind, &r.Resp, time.Since(r.Arrived))
	}
	if s.debug {
		s.logRequest(ctx, r)
	}
	pipeline.Release(r)
}

// writePassThrough writes the endpoint's answer as it came: its status, Content-Type (none when it sent
// none), Retry-After and body; or the proxy's own error when no answer came.
func writePassThrough(ctx *fasthttp.RequestCtx, resp *pipeline.Response) {
	h := &ctx.Response.Header
	h.Set("X-Cache", "BYPASS")
	if resp.Source != pipeline.SourceNone {
		h.Set("X-Cache-Source", resp.Source.String())
	}
	if resp.CacheStatus != "" {
		h.Set("Cache-Status", resp.CacheStatus)
	}
	if resp.RetryAfter != "" {
		h.Set("Retry-After", resp.RetryAfter)
	}
	if resp.Err != nil {
		writeError(ctx, resp.Err)
		return
	}
	ctx.SetStatusCode(resp.Status)
	if resp.ContentType != "" {
		h.SetContentType(resp.ContentType)
	}
	ctx.Response.SetBodyRaw(resp.Body) // immutable: the endpoint's answer, held by no one else
}
