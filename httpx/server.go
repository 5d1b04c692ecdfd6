// Package httpx is the fasthttp front end: routes, OpenAI error bodies and response headers. It turns each
// request into a pipeline message and writes back what the pipeline answers.
package httpx

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/fasthttp/router"
	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"llmcache/actors"
	"llmcache/pipeline"
	"llmcache/pipeline/batch"
)

// Config holds the front end's knobs.
type Config struct {
	MaxBodyBytes    int                   // max_body_bytes: larger bodies get 413
	MaxHeaderBytes  int                   // max_header_bytes: a larger request line and headers get 431
	DefaultMode     pipeline.Mode         // cache_mode: the mode of requests that do not set one
	ShutdownTimeout time.Duration         // shutdown_timeout_seconds: how long Shutdown waits for requests in flight
	Activity        *actors.Activity      // told of every request, for the idle flush; nil = nobody listens
	AdminToken      string                // admin_token: when set, the admin API wants it as a Bearer token
	Stats           func() any            // the figures GET /stats renders as JSON; nil = no /stats route
	Metrics         func(io.Writer)       // writes GET /metrics (Prometheus text format); nil = no route
	Dashboard       func(io.Writer) error // writes GET /dashboard (HTML); nil = no route
	// Log, when it is enabled for debug (-v), gets one line per request; at info level, none.
	Log *slog.Logger
	// Observe, when set, is told of every answered request on the cached routes: its route, the answer
	// and the time from arrival to the answer's headers. It runs on the request's goroutine: keep it cheap.
	Observe func(kind pipeline.Kind, resp *pipeline.Response, took time.Duration)
	// ClientKeys (client_keys), when any, are the Bearer tokens API requests must present; /stats, /metrics
	// and /dashboard then want one of them or the admin token.
	ClientKeys []ClientKey
	// Listen is the address the server listens on: on a loopback one, requests for a Host that is not a
	// loopback name or address are refused (DNS rebinding). "" = not known, no Host check.
	Listen string
	// Batches, when set, answers the Batch API (/v1/files, /v1/batches); request bodies are then streamed,
	// so that an upload is never held whole in memory. nil = no such routes.
	Batches *batch.Manager
}

// DefaultConfig is the front end's configuration with every default.
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 32 << 20, MaxHeaderBytes: 64 << 10, DefaultMode: pipeline.ModeReadWrite, ShutdownTimeout: 30 * time.Second}
}

// Health reports whether the proxy can do its job. nil: healthy, /healthz answers 200 {"status":"ok"}.
// An error that is a *Down: it cannot answer at all, 503 {"status":"down","reason":..}. Any other error:
// it still answers, degraded (a store it cannot write, every endpoint ejected), 200
// {"status":"degraded","reason":..}, so that a load balancer does not take out every instance behind a
// shared disk or store that fails.
type Health func() error

// Down is the Health error of a proxy that cannot answer requests at all.
type Down struct{ Reason string }

func (d *Down) Error() string { return d.Reason }

// Server is the HTTP front end. New builds it; Serve runs it on a listener; Shutdown stops it.
type Server struct {
	cfg    Config
	pipe   *pipeline.Pipeline
	health Health
	srv    *fasthttp.Server
	debug  bool // log a line per request (decided once: the check is not free)

	loopback bool        // Config.Listen is a loopback address: only loopback Hosts are served
	keys     []clientKey // Config.ClientKeys
}

// New builds the front end over pipe.
func New(cfg Config, pipe *pipeline.Pipeline, health Health) *Server {
	d := DefaultConfig()
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = d.MaxBodyBytes
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = d.ShutdownTimeout
	}
	s := &Server{cfg: cfg, pipe: pipe, health: health, loopback: loopbackBind(cfg.Listen), keys: newClientKeys(cfg.ClientKeys)}
	s.debug = cfg.Log != nil && cfg.Log.Enabled(context.Background(), slog.LevelDebug)
	r := router.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.HandleOPTIONS = false
	r.NotFound = s.passThrough // any other path under /v1/ goes upstream uncached; the rest is a 404
	r.MethodNotAllowed = methodNotAllowed
	get := func(path string, h fasthttp.RequestHandler) {
		r.GET(path, h)
		r.HEAD(path, h) // HTTP asks for HEAD wherever GET is; fasthttp leaves the body out
	}
	for _, prefix := range []string{"/v1", ""} {
		r.POST(prefix+"/chat/completions", s.cached(pipeline.KindChat))
		r.POST(prefix+"/completions", s.cached(pipeline.KindCompletion))
		get(prefix+"/models", s.cached(pipeline.KindModels))
		r.POST(prefix+"/embeddings", s.cached(pipeline.KindEmbedding))
		r.POST(prefix+"/responses", s.cached(pipeline.KindResponses))
		get(prefix+"/responses/{id}", s.cached(pipeline.KindResponseByID))
		r.DELETE(prefix+"/responses/{id}", s.cached(pipeline.KindResponseByID))
	}
	get("/healthz", s.healthz)
	if cfg.Stats != nil {
		get("/stats", s.stats)
	}
	if cfg.Metrics != nil {
		get("/metrics", s.metrics)
	}
	if cfg.Dashboard != nil {
		get("/dashboard", s.dashboard)
	}
	if cfg.Batches != nil {
		s.batchRoutes(r, get)
	}
	r.POST("/cache/delete", s.cacheDelete)
	r.POST("/cache/flushall", s.cacheFlushAll)
	s.srv = &fasthttp.Server{
		Handler:               s.guard(r.Handler),
		ErrorHandler:          s.transportError,
		Name:                  "llmcache",
		MaxRequestBodySize:    cfg.MaxBodyBytes,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
		Logger:                quietLogger{}, // errors reach clients as OpenAI error bodies; no log line per request
		// fasthttp would read the clock before every handler for RequestCtx.Time; the cached routes read
		// it themselves (Request.Arrived), so an eager read is one more per memory hit (~0.1 µs here).
		LazyRequestTime: true,
		ReadTimeout:     5 * time.Minute,
		IdleTimeout:     2 * time.Minute,
		// Evaluation jobs open hundreds of keep-alive connections; the default concurrency is ample.

		// fasthttp reads a request's line and headers within one buffer per connection, so its size is the
		// limit on them (fasthttp's default of 4 KiB refused a 5 KB bearer token). Each open client
		// connection holds one such buffer.
		ReadBufferSize: cfg.MaxHeaderBytes,

		// With the Batch API, bodies are streamed: the handler reads them. An upload is read as it comes,
		// under its own limit; every other body is held to max_body_bytes by guard (readBody).
		StreamRequestBody: cfg.Batches != nil,
		// fasthttp would otherwise parse a multipart body into memory and temporary files of its own before
		// any handler runs, with no limit of ours; and a multipart body passed through (an audio upload) is
		// forwarded as the client sent it.
		DisablePreParseMultipartForm: true,
	}
	return s
}

// guard runs before every route: it refuses requests for a foreign Host on a loopback bind.
func (s *Server) guard(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if e := s.hostRefusal(ctx); e != nil {
			writeError(ctx, e)
			return
		}
		if s.srv.StreamRequestBody && !isUpload(ctx) {
			if e := s.readBody(ctx); e != nil {
				ctx.SetConnectionClose() // the rest of the body is not read
				writeError(ctx, e)
				return
			}
		}
		next(ctx)
	}
}

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(lfListener{Listener: ln, writeTimeout: clientWriteTimeout})
}

// Shutdown stops accepting connections and waits up to ShutdownTimeout for requests in flight to be answered.
func (s *Server) Shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	return s.srv.ShutdownWithContext(ctx)
}

// transportError maps fasthttp's errors while reading a request to OpenAI-style answers; its own answers
// to oversized headers and bodies are plain text.
func (s *Server) transportError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	if errors.As(err, &small) {
		writeError(ctx, &pipeline.Error{Status: 431, Type: "invalid_request_error", Code: "request_headers_too_large",
			Message: "the request line and headers are larger than max_header_bytes (" + strconv.Itoa(s.cfg.MaxHeaderBytes) + " bytes)"})
		return
	}
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		writeError(ctx, &pipeline.Error{Status: 413, Type: "invalid_request_error", Code: "request_too_large",
			Message: "request body is larger than max_body_bytes (" + strconv.Itoa(s.cfg.MaxBodyBytes) + " bytes)"})
		return
	}
	if errors.Is(err, errBareLF) {
		writeError(ctx, &pipeline.Error{Status: 400, Type: "invalid_request_error", Code: "bad_line_ending",
			Message: "cannot read the HTTP request: its header lines must end with CRLF, and the header block with an empty CRLF line; a bare LF ended it"})
		return
	}
	writeError(ctx, &pipeline.Error{Status: 400, Type: "invalid_request_error", Message: "cannot read the HTTP request: " + err.Error()})
}

func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	err := s.health()
	if err == nil {
		ctx.SetBodyString(`{"status":"ok"}`)
		return
	}
	reason, _ := json.Marshal(err.Error())
	var down *Down
	if errors.As(err, &down) {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(`{"status":"down","reason":` + string(reason) + `}`)
		return
	}
	ctx.SetBodyString(`{"status":"degraded","reason":` + string(reason) + `}`)
}

func (s *Server) stats(ctx *fasthttp.RequestCtx) {
	if !s.watcher(ctx) {
		return
	}
	out, err := json.MarshalIndent(s.cfg.Stats(), "", "  ")
	if err != nil {
		writeError(ctx, &pipeline.Error{Status: 500, Type: "server_error", Message: "cannot render stats: " + err.Error()})
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}

func (s *Server) metrics(ctx *fasthttp.RequestCtx) {
	if !s.watcher(ctx) {
		return
	}
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	s.cfg.Metrics(ctx)
}

func (s *Server) dashboard(ctx *fasthttp.RequestCtx) {
	if !s.watcher(ctx) {
		return
	}
	var b bytes.Buffer
	if err := s.cfg.Dashboard(&b); err != nil {
		writeError(ctx, &pipeline.Error{Status: 500, Type: "server_error", Message: "cannot render the dashboard: " + err.Error()})
		return
	}
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(b.Bytes())
}

// logRequest is the -v line of one cached-route request.
func (s *Server) logRequest(ctx *fasthttp.RequestCtx, r *pipeline.Request) {
	attrs := []slog.Attr{slog.String("method", string(ctx.Method())), slog.String("path", string(ctx.Path())),
		slog.Int("status", r.Resp.Status), slog.String("cache", r.Resp.Cache), slog.String("source", r.Resp.Source.String()),
		slog.Duration("took", time.Since(r.Arrived))}
	if r.Resp.Err != nil {
		attrs = append(attrs, slog.String("error", r.Resp.Err.Message))
	}
	s.cfg.Log.LogAttrs(context.Background(), slog.LevelDebug, "request", attrs...)
}

// cached is the handler of the cached routes: one message per request through the pipeline.
func (s *Server) cached(kind pipeline.Kind) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		var tenant *pipeline.Tenant
		if len(s.keys) > 0 {
			if tenant = s.tenant(ctx); tenant == nil {
				refuseNoKey(ctx, errNoClientKey)
				return
			}
		}
		r := pipeline.Acquire()
		r.Kind = kind
		r.Tenant = tenant
		if kind == pipeline.KindResponseByID {
			responseByID(ctx, r)
		}
		r.Arrived = time.Now()
		if s.cfg.Activity != nil {
			s.cfg.Activity.Touch(r.Arrived)
		}
		// fasthttp's buffers live only until this handler returns: the body and headers are copied.
		var bad *pipeline.Error
		if r.Body, bad = appendBody(r.Body[:0], ctx); bad != nil {
			ctx.SetConnectionClose() // the body was not read to its end
			writeError(ctx, bad)
			pipeline.Release(r)
			return
		}
		r.Controls = pipeline.DefaultControls(s.cfg.DefaultMode)
		if bad = readHeaders(ctx, r, tenant != nil); bad != nil {
			writeError(ctx, bad)
			pipeline.Release(r)
			return
		}
		s.pipe.Submit(r)
		<-r.Done()
		writeResponse(ctx, r)
		if s.cfg.Observe != nil {
			s.cfg.Observe(kind, &r.Resp, time.Since(r.Arrived))
		}
		if s.debug {
			s.logRequest(ctx, r)
		}
		if live := r.Resp.Live; live != nil {
			// fasthttp calls the stream writer after this handler returns: r lives until the stream ends.
			// A client that goes away only ends its copy; the upstream call goes on and is stored.
			dropUsage := r.Resp.DropUsage
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				live.CopyTo(w, dropUsage)
				pipeline.Release(r)
			})
			return
		}
		pipeline.Release(r)
	}
}

// responseByID fills the fields of a GET or DELETE /v1/responses/{id}: the method (HEAD is a GET), the id,
// the raw query (passed upstream as it came) and whether it asks for the response as a stream.
func responseByID(ctx *fasthttp.RequestCtx, r *pipeline.Request) {
	r.Method = "GET"
	if ctx.IsDelete() {
		r.Method = "DELETE"
	}
	r.ResponseID, _ = ctx.UserValue("id").(string)
	r.Query = string(ctx.URI().QueryString())
	r.Stream = string(ctx.QueryArgs().Peek("stream")) == "true"
}

// inbound sorts one request's headers into cache controls and headers to forward. Its visit func is made
// once per pooled object: a closure made per request would allocate on the hit path.
type inbound struct {
	r   *pipeline.Request
	bad *pipeline.Error // the first invalid control
	hop [][]byte        // the Connection header's values when they name headers, which are hop-by-hop then
	// dropAuth keeps Authorization back: it holds a client key, which must never reach an upstream.
	dropAuth bool
	visit    func(k, v []byte)
}

var inboundPool = sync.Pool{New: func() any {
	in := &inbound{}
	in.visit = in.header
	return in
}}

// readHeaders sorts the request's headers into r's controls and forwarded headers, keeping Authorization
// back when dropAuth (it holds a client key), and returns the first invalid control, if any.
func readHeaders(ctx *fasthttp.RequestCtx, r *pipeline.Request, dropAuth bool) *pipeline.Error {
	in := inboundPool.Get().(*inbound)
	in.r, in.bad, in.hop = r, nil, namedHeaders(ctx.Request.Header.PeekAll("Connection"))
	in.dropAuth = dropAuth
	//lint:ignore SA1019 All() is the replacement, but its range-over-func closure allocates per request.
	ctx.Request.Header.VisitAll(in.visit)
	bad := in.bad
	in.r, in.bad, in.hop, in.dropAuth = nil, nil, nil, false
	inboundPool.Put(in)
	return bad
}

func (in *inbound) header(k, v []byte) {
	switch headerClass(k) {
	case headerControl:
		if e := in.r.Controls.ApplyHeader(k, v); e != nil && in.bad == nil {
			in.bad = e
		}
	case headerForward:
		if in.hop != nil && tokenListed(in.hop, k) {
			return
		}
		if in.dropAuth && len(k) == len("authorization") && lowerEq(k, "authorization") {
			return
		}
		in.r.AddHeader(k, v)
	}
}

// The headers every cached answer carries, named as fasthttp would normalize them: SetCanonical takes
// them as they are, where Set copies and normalizes the name each time (a tenth of a memory hit's own CPU).
var (
	headerCacheKey    = []byte("X-Cache-Key")
	headerCache       = []byte("X-Cache")
	headerCacheSource = []byte("X-Cache-Source")
	headerCacheStatus = []byte("Cache-Status")
)

// stringBytes views s as bytes without copying, for fasthttp's header setters: they copy the value before
// they change or keep anything, so the view is only read, and only during the call.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func writeResponse(ctx *fasthttp.RequestCtx, r *pipeline.Request) {
	resp := &r.Resp
	h := &ctx.Response.Header
	if resp.HasKey {
		var buf [64]byte
		hex.Encode(buf[:], r.Key[:])
		h.SetCanonical(headerCacheKey, buf[:])
	}
	if resp.Cache != "" {
		h.SetCanonical(headerCache, stringBytes(resp.Cache))
	}
	if resp.Source != pipeline.SourceNone {
		h.SetCanonical(headerCacheSource, stringBytes(resp.Source.String()))
	}
	if resp.CacheStatus != "" {
		h.SetCanonical(headerCacheStatus, stringBytes(resp.CacheStatus))
	}
	if resp.Items != "" {
		h.Set("X-Cache-Items", resp.Items)
	}
	if resp.Trimmed > 0 {
		h.Set("X-Context-Trimmed", strconv.Itoa(resp.Trimmed))
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
	} else {
		h.SetContentType("application/json")
	}
	if resp.Live != nil {
		h.Set("Cache-Control", "no-cache")
		return
	}
	// The body is immutable (a cached entry or a fresh upstream answer), so it is sent without a copy.
	ctx.Response.SetBodyRaw(resp.Body)
}

// quietLogger drops fasthttp's per-connection log lines (an oversized body, a client that hung up).
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}
