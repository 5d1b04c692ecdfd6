package httpx

import (
	"bytes"
	"io"
	"slices"
	"strconv"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"llmcache/pipeline"
)

// The Batch API's routes (/v1/files, /v1/batches): thin handlers over batch.Manager. Files and batches
// belong to the client key that made them (its namespace; "" for a key without one, and for everyone
// without client keys).

// batchRoutes adds the Batch API's routes to r, with and without /v1, as the other API routes.
func (s *Server) batchRoutes(r *router.Router, get func(string, fasthttp.RequestHandler)) {
	for _, prefix := range []string{"/v1", ""} {
		r.POST(prefix+"/files", s.upload)
		get(prefix+"/files", s.files)
		get(prefix+"/files/{id}", s.file)
		r.DELETE(prefix+"/files/{id}", s.deleteFile)
		get(prefix+"/files/{id}/content", s.fileContent)
		r.POST(prefix+"/batches", s.createBatch)
		get(prefix+"/batches", s.listBatches)
		get(prefix+"/batches/{id}", s.getBatch)
		r.POST(prefix+"/batches/{id}/cancel", s.cancelBatch)
	}
}

// isUpload reports whether ctx is an upload to POST /v1/files, whose body is read as a stream under its
// own limit (max_batch_file_bytes) rather than whole under max_body_bytes.
func isUpload(ctx *fasthttp.RequestCtx) bool {
	if !ctx.IsPost() {
		return false
	}
	p := ctx.Path()
	return string(p) == "/v1/files" || string(p) == "/files"
}

// readBody holds every request other than an upload to max_body_bytes. The server streams request bodies
// (so that an upload is never held whole in memory); it reads a body of known length into memory only when
// the handler asks for it (PostBody), so only a body over the limit, or one sent chunked, is seen to here.
func (s *Server) readBody(ctx *fasthttp.RequestCtx) *pipeline.Error {
	if !ctx.Request.IsBodyStream() {
		return nil
	}
	n := ctx.Request.Header.ContentLength()
	if n > s.cfg.MaxBodyBytes {
		return s.bodyTooLarge()
	}
	if n >= 0 {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(ctx.RequestBodyStream(), int64(s.cfg.MaxBodyBytes)+1))
	if err != nil {
		return &pipeline.Error{Status: 400, Type: "invalid_request_error", Message: "cannot read the request body: " + err.Error()}
	}
	if len(body) > s.cfg.MaxBodyBytes {
		return s.bodyTooLarge()
	}
	ctx.Request.SetBody(body)
	return nil
}

// appendBody appends the request's body to dst. A streamed one (see readBody) is read from its stream
// straight into dst: PostBody would first copy it into fasthttp's own buffer, through a pooled one, which
// costs a memory hit a few per cent of its CPU. Its Content-Length, at most max_body_bytes (readBody), sizes
// dst. A failed read is an error, where PostBody would give its text as the body.
func appendBody(dst []byte, ctx *fasthttp.RequestCtx) ([]byte, *pipeline.Error) {
	stream := ctx.RequestBodyStream()
	if stream == nil {
		return append(dst, ctx.PostBody()...), nil
	}
	dst = slices.Grow(dst, ctx.Request.Header.ContentLength())
	for {
		if len(dst) == cap(dst) {
			dst = slices.Grow(dst, 512)
		}
		n, err := stream.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, &pipeline.Error{Status: 400, Type: "invalid_request_error", Message: "cannot read the request body: " + err.Error()}
		}
	}
}

func (s *Server) bodyTooLarge() *pipeline.Error {
	return &pipeline.Error{Status: 413, Type: "invalid_request_error", Code: "request_too_large",
		Message: "request body is larger than max_body_bytes (" + strconv.Itoa(s.cfg.MaxBodyBytes) + " bytes)"}
}

// owner returns the namespace files and batches of ctx's client key belong to; false (ctx answered) when
// client keys are set and ctx presents none of them.
func (s *Server) owner(ctx *fasthttp.RequestCtx) (string, bool) {
	if len(s.keys) == 0 {
		return "", true
	}
	t := s.tenant(ctx)
	if t == nil {
		refuseNoKey(ctx, errNoClientKey)
		return "", false
	}
	return t.Namespace, true
}

// answerJSON returns what writes a Batch API answer to ctx: the object, or the error.
func answerJSON(ctx *fasthttp.RequestCtx) func(body []byte, e *pipeline.Error) {
	return func(body []byte, e *pipeline.Error) {
		if e != nil {
			writeError(ctx, e)
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}
}

func pathID(ctx *fasthttp.RequestCtx) string {
	id, _ := ctx.UserValue("id").(string)
	return id
}

// queryLimit reads the limit query argument; 0 when absent.
func queryLimit(ctx *fasthttp.RequestCtx) (int, *pipeline.Error) {
	v := ctx.QueryArgs().Peek("limit")
	if len(v) == 0 {
		return 0, nil
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 1 {
		return 0, &pipeline.Error{Status: 400, Type: "invalid_request_error", Param: "limit", Message: "limit must be a whole number of 1 or more"}
	}
	return n, nil
}

func (s *Server) upload(ctx *fasthttp.RequestCtx) {
	owner, ok := s.owner(ctx)
	if !ok {
		return
	}
	if s.cfg.Activity != nil {
		s.cfg.Activity.Touch(ctx.Time())
	}
	var body io.Reader = ctx.RequestBodyStream()
	if body == nil { // a server without streamed bodies (tests driving the handler directly)
		body = bytes.NewReader(ctx.PostBody())
	}
	out, e := s.cfg.Batches.Upload(owner, string(ctx.Request.Header.ContentType()), body)
	if e != nil {
		// What the client still sends is not read: fasthttp drains a little of it, or closes the connection.
		ctx.SetConnectionClose()
	}
	answerJSON(ctx)(out, e)
}

func (s *Server) files(ctx *fasthttp.RequestCtx) {
	owner, ok := s.owner(ctx)
	if !ok {
		return
	}
	limit, e := queryLimit(ctx)
	if e != nil {
		writeError(ctx, e)
		return
	}
	q := ctx.QueryArgs()
	answerJSON(ctx)(s.cfg.Batches.Files(owner, string(q.Peek("purpose")), string(q.Peek("after")), string(q.Peek("order")), limit))
}

func (s *Server) file(ctx *fasthttp.RequestCtx) {
	if owner, ok := s.owner(ctx); ok {
		answerJSON(ctx)(s.cfg.Batches.File(owner, pathID(ctx)))
	}
}

func (s *Server) deleteFile(ctx *fasthttp.RequestCtx) {
	if owner, ok := s.owner(ctx); ok {
		answerJSON(ctx)(s.cfg.Batches.DeleteFile(owner, pathID(ctx)))
	}
}

func (s *Server) fileContent(ctx *fasthttp.RequestCtx) {
	owner, ok := s.owner(ctx)
	if !ok {
		return
	}
	f, size, e := s.cfg.Batches.Content(owner, pathID(ctx))
	if e != nil {
		writeError(ctx, e)
		return
	}
	ctx.SetContentType("application/octet-stream")
	// Streamed from the file, which fasthttp closes once sent: an output file of a large batch is never held
	// whole in memory.
	ctx.SetBodyStream(f, int(size))
}

func (s *Server) createBatch(ctx *fasthttp.RequestCtx) {
	if owner, ok := s.owner(ctx); ok {
		answerJSON(ctx)(s.cfg.Batches.Create(owner, ctx.PostBody()))
	}
}

func (s *Server) listBatches(ctx *fasthttp.RequestCtx) {
	owner, ok := s.owner(ctx)
	if !ok {
		return
	}
	limit, e := queryLimit(ctx)
	if e != nil {
		writeError(ctx, e)
		return
	}
	answerJSON(ctx)(s.cfg.Batches.Batches(owner, string(ctx.QueryArgs().Peek("after")), limit))
}

func (s *Server) getBatch(ctx *fasthttp.RequestCtx) {
	if owner, ok := s.owner(ctx); ok {
		answerJSON(ctx)(s.cfg.Batches.Batch(owner, pathID(ctx)))
	}
}

func (s *Server) cancelBatch(ctx *fasthttp.RequestCtx) {
	if owner, ok := s.owner(ctx); ok {
		answerJSON(ctx)(s.cfg.Batches.Cancel(owner, pathID(ctx)))
	}
}
