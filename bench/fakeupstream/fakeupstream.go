// Package fakeupstream is a fake OpenAI-compatible LLM server that listens on
// real TCP (normally loopback). It is shared by the end-to-end tests, the
// benchmarks and the demo mode of llmcache.
//
// Answers are deterministic functions of the request, except for the response
// ids ("chatcmpl-fake-<seq>", "cmpl-fake-<seq>", "resp_fake_<seq>"), which come from a per-server
// counter so every upstream answer is unique: a client that sees the same id
// twice has been served from a cache.
//
// Routes (each also without the /v1 prefix): POST /v1/chat/completions,
// POST /v1/completions, POST /v1/embeddings, GET /v1/models, POST /v1/responses
// and GET and DELETE /v1/responses/{id} (responses.go), and three that a
// caching proxy passes through: POST /v1/moderations, POST
// /v1/audio/transcriptions (multipart/form-data) and POST /v1/audio/speech
// (binary audio/mpeg). Other paths give 404 and a wrong method 405, with
// OpenAI error bodies.
//
// Chat content is "echo: " + the last message's content (up to 200 bytes),
// then filler words up to Options.AnswerBytes (or, with Options.Text,
// paragraphs of that text). The last user message selects
// special answers: "TOOL:..." a get_weather tool call, "EMPTY" an empty
// content, "REFUSE..." a refusal, "THINK:..." an answer with
// reasoning_content.
//
// Legacy completions answer every prompt of a prompt array (strings or
// token-id lists), n choices each, prompt-major (prompt i's choices have
// indexes i*n to i*n+n-1). The generated text is cut to max_tokens pseudo
// tokens (words), with finish_reason "length" then; with echo it follows the
// prompt after a space, and max_tokens 0 echoes the prompt alone (the
// loglikelihood request of lm-evaluation-harness). logprobs gives one entry
// per pseudo token, the first echoed one null.
//
// Behaviour can be changed per server (SetLatency, SetChunkDelay, FailNext,
// HangUpNext, HoldStreams) or per request with headers:
//
//	X-Fake-Delay-Ms: N        extra latency for this request
//	X-Fake-Status: N          answer status N with an OpenAI error body
//	X-Fake-Cut-After: N       streams: send N events, then drop the connection
//	X-Fake-Chunk-Delay-Ms: N  delay between SSE events for this request
//	X-Fake-Indent: 1 or 0     indent this answer, or not, whatever Options.Indent says
//
// With Options.Indent the server lays out every JSON body it writes itself
// (answers, model lists, error bodies) the way api.openai.com does: answers
// indented by two spaces, error bodies by four, "key": value, a newline at the
// end. SSE data lines stay compact, as OpenAI's are. A body given to FailNext
// is sent as given.
//
// FailNext and HangUpNext act at once; X-Fake-Status waits for the latency
// first. The package imports nothing from the llmcache module.
package fakeupstream

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// DefaultAnswerBytes is the content length used when Options.AnswerBytes is 0.
// With ChatRequest bodies it makes a non-streamed chat response about 1.3 KB.
const DefaultAnswerBytes = 1000

// MaxRecorded is how many requests Requests (and calls EmbeddingInputs) keep.
const MaxRecorded = 10000

// Options configures a Server. The zero value is usable.
type Options struct {
	Latency     time.Duration // wait before answering (non-stream) or before the first SSE chunk
	ChunkDelay  time.Duration // wait between SSE chunks
	AnswerBytes int           // approximate length of chat/completion content; 0 = DefaultAnswerBytes
	Models      []string      // ids returned by GET /v1/models; default {"fake-model"}
	Addr        string        // listen address; default "127.0.0.1:0"
	// Indent lays out non-streamed JSON bodies as api.openai.com does (see the
	// package comment); false writes them compact.
	Indent bool
	// Text, when set, is natural-language text (paragraphs separated by blank
	// lines) that chat and completion answers are drawn from instead of the
	// echo and filler words: about AnswerBytes of consecutive paragraphs chosen
	// by a hash of the prompt, in a chat answer shaped like api.openai.com's
	// today (its id, annotations, usage details, service tier). For figures
	// that depend on the answers' bytes (compression); see GoDocText.
	Text []byte
}

// Route names accepted by CallsTo.
const (
	RouteChat        = "chat"
	RouteCompletions = "completions"
	RouteEmbeddings  = "embeddings"
	RouteModels      = "models"
	RouteResponses   = "responses"       // POST /v1/responses
	RouteResponseIDs = "responses_by_id" // GET and DELETE /v1/responses/{id}
	RouteModerations = "moderations"
	RouteAudio       = "audio" // transcriptions and speech
)

type route int

const (
	routeUnknown route = iota
	routeChat
	routeCompletions
	routeEmbeddings
	routeModels
	routeResponses
	routeResponseByID
	routeModerations
	routeTranscriptions
	routeSpeech
	numRoutes
)

// Server is a running fake upstream. All methods are safe for concurrent use.
type Server struct {
	srv  *fasthttp.Server
	ln   net.Listener
	addr string
	url  string

	answerBytes int
	indent      bool
	filler      string   // precomputed filler words, at least answerBytes long
	paragraphs  []string // Options.Text split into paragraphs; nil: echo and filler
	modelsBody  []byte

	latency    atomic.Int64 // nanoseconds
	chunkDelay atomic.Int64 // nanoseconds

	seq         atomic.Int64
	calls       atomic.Int64
	routeCalls  [numRoutes]atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64

	hangN    atomic.Int64
	failN    atomic.Int64
	failSpec atomic.Pointer[failSpec]

	holdMu sync.Mutex
	hold   chan struct{} // non-nil while HoldStreams is in force; ReleaseStreams closes it
	held   atomic.Int64  // streams waiting on hold now

	rec recorder

	embMu     sync.Mutex
	embInputs ring[[]string]

	responses keptResponses // the responses issued with store not false, by id

	// connection tracking, so Close can drop keep-alive and streaming
	// connections instead of waiting for them.
	connMu  sync.Mutex
	conns   map[net.Conn]struct{}
	closing bool

	wg         sync.WaitGroup // connection goroutines, stream writers, hijack handlers
	done       chan struct{}  // closed by Close after connections are closed
	acceptDone chan struct{}  // closed when the accept loop returns
	closeOnce  sync.Once
	closeErr   error
}

type failSpec struct {
	status int
	body   []byte
	given  bool // body came from the test, so it goes out exactly as given
	header map[string]string
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// Start listens on opts.Addr (default "127.0.0.1:0") and serves in a goroutine
// owned by the returned Server. Stop it with Close.
func Start(opts Options) (*Server, error) {
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		ln:          ln,
		addr:        dialAddr(ln.Addr()),
		answerBytes: opts.AnswerBytes,
		indent:      opts.Indent,
		conns:       make(map[net.Conn]struct{}),
		done:        make(chan struct{}),
		acceptDone:  make(chan struct{}),
	}
	s.url = "http://" + s.addr
	if s.answerBytes <= 0 {
		s.answerBytes = DefaultAnswerBytes
	}
	s.filler = makeFiller(s.answerBytes + 64)
	if len(opts.Text) > 0 {
		if s.paragraphs = splitParagraphs(opts.Text); len(s.paragraphs) == 0 {
			_ = ln.Close()
			return nil, errors.New("fakeupstream: Options.Text has no words")
		}
	}
	models := opts.Models
	if len(models) == 0 {
		models = []string{"fake-model"}
	}
	s.modelsBody = buildModelsBody(models)
	s.latency.Store(int64(opts.Latency))
	s.chunkDelay.Store(int64(opts.ChunkDelay))
	s.rec.init(MaxRecorded)
	s.embInputs.init(MaxRecorded)

	s.srv = &fasthttp.Server{
		Handler:                      s.handle,
		Name:                         "fakeupstream",
		Logger:                       nopLogger{},
		ConnState:                    s.connState,
		ReadBufferSize:               16 << 10,
		MaxRequestBodySize:           64 << 20,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
	}
	go s.acceptLoop()
	return s, nil
}

// dialAddr is the address clients use to reach a listener: an unspecified
// listen IP (":0", "0.0.0.0:0", "[::]:0") becomes 127.0.0.1.
func dialAddr(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok && (ta.IP == nil || ta.IP.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(ta.Port))
	}
	return a.String()
}

// acceptLoop accepts connections and serves each in its own goroutine with
// fasthttp's ServeConn, so every goroutine serving this server is tracked by
// s.wg (fasthttp's Serve would leave a worker-pool cleaner running for up to
// 10 s after it stops).
func (s *Server) acceptLoop() {
	defer close(s.acceptDone)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-s.done:
				return
			case <-time.After(10 * time.Millisecond): // e.g. too many open files
			}
			continue
		}
		s.connMu.Lock()
		if s.closing {
			s.connMu.Unlock()
			_ = c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.connMu.Unlock()
		go func() {
			defer s.wg.Done()
			err := s.srv.ServeConn(c)
			if errors.Is(err, fasthttp.ErrConcurrencyLimit) {
				s.forgetConn(c) // rejected before any ConnState callback
			}
		}()
	}
}

// URL returns the base URL, "http://127.0.0.1:PORT" (without /v1).
func (s *Server) URL() string { return s.url }

// Addr returns the listen address, "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.addr }

// Close stops accepting, closes every open connection (including keep-alive
// connections and streams in progress) and waits for the server's goroutines.
// It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		err := s.ln.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		s.closeErr = err
		<-s.acceptDone // no new connections after this
		s.connMu.Lock()
		s.closing = true
		for c := range s.conns {
			_ = c.Close()
		}
		s.connMu.Unlock()
		close(s.done) // wakes handlers and stream writers that are sleeping
		s.wg.Wait()
	})
	return s.closeErr
}

func (s *Server) connState(c net.Conn, st fasthttp.ConnState) {
	// A hijacked connection stays in s.conns until its hijack handler
	// is done with it (the handler calls forgetConn).
	if st == fasthttp.StateClosed {
		s.forgetConn(c)
	}
}

func (s *Server) forgetConn(c net.Conn) {
	s.connMu.Lock()
	delete(s.conns, c)
	s.connMu.Unlock()
}

// Calls returns the number of API requests received on all routes (including
// unknown routes) since Start or the last ResetCounters.
func (s *Server) Calls() int64 { return s.calls.Load() }

// CallsTo returns the number of requests received on one route: "chat",
// "completions", "embeddings", "models", "responses", "responses_by_id",
// "moderations" or "audio". Other names give 0.
func (s *Server) CallsTo(name string) int64 {
	switch name {
	case RouteChat:
		return s.routeCalls[routeChat].Load()
	case RouteCompletions:
		return s.routeCalls[routeCompletions].Load()
	case RouteEmbeddings:
		return s.routeCalls[routeEmbeddings].Load()
	case RouteModels:
		return s.routeCalls[routeModels].Load()
	case RouteResponses:
		return s.routeCalls[routeResponses].Load()
	case RouteResponseIDs:
		return s.routeCalls[routeResponseByID].Load()
	case RouteModerations:
		return s.routeCalls[routeModerations].Load()
	case RouteAudio:
		return s.routeCalls[routeTranscriptions].Load() + s.routeCalls[routeSpeech].Load()
	}
	return 0
}

// InFlight returns the number of requests being handled now (a stream counts
// until its last event is written).
func (s *Server) InFlight() int64 { return s.inFlight.Load() }

// MaxInFlight returns the high-water mark of InFlight since Start or the last
// ResetCounters.
func (s *Server) MaxInFlight() int64 { return s.maxInFlight.Load() }

// ResetCounters zeroes Calls and CallsTo, sets MaxInFlight to the current
// InFlight, and forgets the recorded requests and embedding inputs. Response
// ids keep increasing.
func (s *Server) ResetCounters() {
	s.calls.Store(0)
	for i := range s.routeCalls {
		s.routeCalls[i].Store(0)
	}
	s.maxInFlight.Store(s.inFlight.Load())
	s.rec.reset()
	s.embMu.Lock()
	s.embInputs.reset()
	s.embMu.Unlock()
}

// SetLatency changes Options.Latency for later requests.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// SetChunkDelay changes Options.ChunkDelay for later requests.
func (s *Server) SetChunkDelay(d time.Duration) { s.chunkDelay.Store(int64(d)) }

// FailNext makes the next n requests (any route) answer status with body and
// the given extra headers (for example Retry-After), at once, without
// latency. An empty body gives the OpenAI error body
// {"error":{"message":"fake failure","type":"server_error","param":null,"code":null}}
// (indented under Options.Indent); a body given is sent exactly as given.
// Content-Type is application/json unless header sets it. A later call
// replaces an earlier one; n <= 0 cancels.
func (s *Server) FailNext(n int, status int, body string, header map[string]string) {
	spec := &failSpec{status: status, body: []byte(body), given: body != ""}
	if body == "" {
		spec.body = fakeFailure
	}
	if len(header) > 0 {
		spec.header = make(map[string]string, len(header))
		for k, v := range header {
			spec.header[k] = v
		}
	}
	s.failSpec.Store(spec)
	s.failN.Store(int64(max(n, 0)))
}

// HangUpNext makes the next n requests (any route) close their TCP connection
// without sending anything. n <= 0 cancels.
func (s *Server) HangUpNext(n int) { s.hangN.Store(int64(max(n, 0))) }

// HoldStreams makes every stream (cut or not) stop after its first event
// until ReleaseStreams or Close, so that a test can act while a stream is
// known to be under way (clients joining it, a client leaving) instead of
// guessing with a chunk delay how long it lasts. A held stream counts as in
// flight. Streams already past their first event go on.
func (s *Server) HoldStreams() {
	s.holdMu.Lock()
	if s.hold == nil {
		s.hold = make(chan struct{})
	}
	s.holdMu.Unlock()
}

// ReleaseStreams lets every held stream go on; later streams are not held.
func (s *Server) ReleaseStreams() {
	s.holdMu.Lock()
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
	s.holdMu.Unlock()
}

// Held returns the number of streams stopped by HoldStreams now.
func (s *Server) Held() int64 { return s.held.Load() }

// waitHold waits while streams are held; it reports false when the server
// is closing.
func (s *Server) waitHold() bool {
	s.holdMu.Lock()
	h := s.hold
	s.holdMu.Unlock()
	if h == nil {
		return true
	}
	s.held.Add(1)
	defer s.held.Add(-1)
	select {
	case <-h:
		return true
	case <-s.done:
		return false
	}
}

// take decrements c if positive and reports whether it did.
func take(c *atomic.Int64) bool {
	for {
		n := c.Load()
		if n <= 0 {
			return false
		}
		if c.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func (s *Server) begin() {
	n := s.inFlight.Add(1)
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			return
		}
	}
}

func (s *Server) end() { s.inFlight.Add(-1) }

// sleep waits d, or less if the server is closing; it reports whether the
// full wait happened.
func (s *Server) sleep(d time.Duration) bool {
	if d <= 0 {
		select {
		case <-s.done:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

func routeOf(path []byte) route {
	switch string(path) {
	case "/v1/chat/completions", "/chat/completions":
		return routeChat
	case "/v1/completions", "/completions":
		return routeCompletions
	case "/v1/embeddings", "/embeddings":
		return routeEmbeddings
	case "/v1/models", "/models":
		return routeModels
	case "/v1/moderations", "/moderations":
		return routeModerations
	case "/v1/audio/transcriptions", "/audio/transcriptions":
		return routeTranscriptions
	case "/v1/audio/speech", "/audio/speech":
		return routeSpeech
	case "/v1/responses", "/responses":
		return routeResponses
	}
	for _, prefix := range []string{"/v1/responses/", "/responses/"} {
		if id, ok := strings.CutPrefix(string(path), prefix); ok && id != "" && !strings.Contains(id, "/") {
			return routeResponseByID
		}
	}
	return routeUnknown
}

var (
	hdrDelay      = []byte("X-Fake-Delay-Ms")
	hdrStatus     = []byte("X-Fake-Status")
	hdrCutAfter   = []byte("X-Fake-Cut-After")
	hdrChunkDelay = []byte("X-Fake-Chunk-Delay-Ms")
	hdrIndent     = []byte("X-Fake-Indent")
)

// headerInt returns the non-negative integer value of header k, or -1.
func headerInt(ctx *fasthttp.RequestCtx, k []byte) int {
	v := ctx.Request.Header.PeekBytes(k)
	if len(v) == 0 {
		return -1
	}
	n, err := fasthttp.ParseUint(v)
	if err != nil {
		return -1
	}
	return n
}

// reqControls are the per-request settings derived from server state and
// X-Fake-* headers.
type reqControls struct {
	delay      time.Duration // before the answer or the first event
	chunkDelay time.Duration
	cutAfter   int // -1: no cut
}

func (s *Server) controls(ctx *fasthttp.RequestCtx) reqControls {
	c := reqControls{
		delay:      time.Duration(s.latency.Load()),
		chunkDelay: time.Duration(s.chunkDelay.Load()),
		cutAfter:   -1,
	}
	if n := headerInt(ctx, hdrDelay); n > 0 {
		c.delay += time.Duration(n) * time.Millisecond
	}
	if n := headerInt(ctx, hdrChunkDelay); n >= 0 {
		c.chunkDelay = time.Duration(n) * time.Millisecond
	}
	c.cutAfter = headerInt(ctx, hdrCutAfter)
	return c
}

var (
	ctJSON        = []byte("application/json")
	ctEventStream = []byte("text/event-stream")
	fakeFailure   = appendError(nil, "fake failure", "server_error", "", "")
)

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	rt := routeOf(ctx.Path())
	s.calls.Add(1)
	s.routeCalls[rt].Add(1)
	s.begin()
	s.rec.add(ctx)

	// async is set when a stream writer or hijack handler takes over the
	// request; it then calls s.end itself.
	async := false
	defer func() {
		if !async {
			s.end()
		}
	}()

	// Deferred after the s.end above, so it runs first: whichever branch set
	// the body, it is laid out before the request counts as finished.
	indent, given := s.indent, false
	if n := headerInt(ctx, hdrIndent); n >= 0 {
		indent = n != 0
	}
	defer func() {
		if indent && !given {
			indentBody(ctx)
		}
	}()

	if take(&s.hangN) {
		async = true
		s.hangUp(ctx)
		return
	}
	if take(&s.failN) {
		if spec := s.failSpec.Load(); spec != nil {
			given = spec.given
			ctx.Response.Header.SetContentTypeBytes(ctJSON)
			for k, v := range spec.header {
				ctx.Response.Header.Set(k, v)
			}
			ctx.SetStatusCode(spec.status)
			ctx.SetBody(spec.body)
			return
		}
	}

	method := ctx.Method()
	switch rt {
	case routeUnknown:
		writeError(ctx, fasthttp.StatusNotFound,
			"Invalid URL ("+string(method)+" "+string(ctx.Path())+")", "invalid_request_error", "", "")
		return
	case routeModels:
		if string(method) != fasthttp.MethodGet {
			methodNotAllowed(ctx, fasthttp.MethodGet)
			return
		}
	case routeResponseByID:
		if string(method) != fasthttp.MethodGet && string(method) != fasthttp.MethodDelete {
			methodNotAllowed(ctx, "GET, DELETE")
			return
		}
	default:
		if string(method) != fasthttp.MethodPost {
			methodNotAllowed(ctx, fasthttp.MethodPost)
			return
		}
	}

	rc := s.controls(ctx)
	if st := headerInt(ctx, hdrStatus); st >= 100 && st <= 999 {
		if !s.sleep(rc.delay) {
			closingAnswer(ctx)
			return
		}
		ctx.Response.Header.SetContentTypeBytes(ctJSON)
		ctx.SetStatusCode(st)
		ctx.SetBody(fakeFailure)
		return
	}

	switch rt {
	case routeChat:
		async = s.handleChat(ctx, rc)
	case routeCompletions:
		async = s.handleCompletions(ctx, rc)
	case routeEmbeddings:
		s.handleEmbeddings(ctx, rc)
	case routeResponses:
		async = s.handleResponses(ctx, rc)
	case routeResponseByID:
		s.handleResponseByID(ctx, rc)
	case routeModerations:
		s.handleModerations(ctx, rc)
	case routeTranscriptions:
		s.handleTranscriptions(ctx, rc)
	case routeSpeech:
		s.handleSpeech(ctx, rc)
	case routeModels:
		if !s.sleep(rc.delay) {
			closingAnswer(ctx)
			return
		}
		ctx.Response.Header.SetContentTypeBytes(ctJSON)
		ctx.SetBody(s.modelsBody)
	}
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	writeError(ctx, fasthttp.StatusMethodNotAllowed,
		"Method "+string(ctx.Method())+" not allowed for "+string(ctx.Path())+"; use "+allow,
		"invalid_request_error", "", "")
}

// closingAnswer is used when the server closes while a request waits.
func closingAnswer(ctx *fasthttp.RequestCtx) {
	ctx.SetConnectionClose()
	writeError(ctx, fasthttp.StatusServiceUnavailable, "server closing", "server_error", "", "")
}

func writeError(ctx *fasthttp.RequestCtx, status int, msg, typ, param, code string) {
	ctx.Response.Header.SetContentTypeBytes(ctJSON)
	ctx.SetStatusCode(status)
	ctx.SetBody(appendError(nil, msg, typ, param, code))
}

// hangUp takes over the connection and closes it without answering. The
// caller must not call s.end.
func (s *Server) hangUp(ctx *fasthttp.RequestCtx) {
	raw := ctx.Conn()
	s.wg.Add(1)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(net.Conn) {
		defer s.wg.Done()
		defer s.end()
		_ = raw.Close()
		s.forgetConn(raw)
	})
}
