// Package upstream holds the transports that carry the pipeline's calls to upstream endpoints: Client, the
// built-in one on fasthttp, and Curl, which runs the curl binary (use_curl).
package upstream

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"llmcache/pipeline/wire"
)

// Client is the built-in transport: fasthttp HostClients per endpoint, keeping connections alive.
type Client struct {
	proxy func(*url.URL) (*url.URL, error) // nil URL = direct
	cas   caFiles

	mu    sync.Mutex
	hosts map[string]*hostClients // by endpoint name; guarded by mu (taken once per upstream call)
}

// hostClients are one endpoint's two HostClients, which share a dialer.
type hostClients struct {
	// pooled carries every call first, on a kept-alive connection when it has an idle one.
	pooled *fasthttp.HostClient
	// fresh carries the one resend of a call that failed on a connection before any byte of the answer: a
	// new connection, never an idle one, which after an upstream restart would be just as dead. Its calls
	// go out with Connection: close, so its pool stays empty.
	fresh *fasthttp.HostClient
}

// New returns a client that always connects directly, whatever the proxy environment says.
func New() *Client { return NewWithOptions(Options{}) }

// NewWithOptions returns a client; its per-endpoint host clients are made on first use.
func NewWithOptions(opts Options) *Client {
	return &Client{proxy: opts.proxyFunc(), hosts: make(map[string]*hostClients)}
}

// Check validates what each endpoint's first call would otherwise find wrong: its URL, the proxy settings,
// its ca_file. Main calls it at start so that a bad ca_file stops the server instead of failing every call.
func (c *Client) Check(endpoints []wire.Target) error {
	return checkEndpoints(endpoints, func(ep *wire.Target) error {
		if _, err := resolveTarget(ep.URL, c.proxy); err != nil {
			return err
		}
		if ep.CAFile != "" {
			_, err := c.cas.pool(ep.CAFile)
			return err
		}
		return nil
	})
}

const (
	// maxResponseBytes bounds one upstream answer held in memory.
	maxResponseBytes = 256 << 20
	// streamChunk is the most a Stream hands its sink at once.
	streamChunk = 16 << 10
)

var streamBufs = sync.Pool{New: func() any { b := make([]byte, streamChunk); return &b }}

func (c *Client) host(req *wire.Request) (*hostClients, error) {
	ep := req.Target
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.hosts[ep.Name]; h != nil {
		return h, nil
	}
	t, err := resolveTarget(req.URL, c.proxy)
	if err != nil {
		return nil, err
	}
	var roots *x509.CertPool // nil: the system's
	if ep.CAFile != "" {
		if roots, err = c.cas.pool(ep.CAFile); err != nil {
			return nil, err
		}
	}
	d := newDialer(t, ep, roots)
	hostClient := func() *fasthttp.HostClient {
		return &fasthttp.HostClient{
			Addr:                          t.addr,
			IsTLS:                         t.isTLS, // the dialer hands over conns that are TLS already
			DialTimeout:                   d.dial,
			Transport:                     eofSplitter{},
			RetryIfErr:                    neverRetry,
			MaxConns:                      4096, // the dispatcher bounds calls in flight; this must not
			MaxIdleConnDuration:           90 * time.Second,
			MaxResponseBodySize:           maxResponseBytes,
			NoDefaultUserAgentHeader:      true,
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
		}
	}
	h := &hostClients{pooled: hostClient(), fresh: hostClient()}
	c.hosts[ep.Name] = h
	return h, nil
}

// CloseIdle closes the endpoint's idle kept-alive connections; calls in flight keep theirs. The pipeline
// calls it when it ejects the endpoint: an upstream that failed may be restarting, and the probe after the
// cool-down must not go out on a connection from before.
func (c *Client) CloseIdle(t *wire.Target) {
	c.mu.Lock()
	h := c.hosts[t.Name]
	c.mu.Unlock()
	if h != nil {
		h.pooled.CloseIdleConnections()
	}
}

// eofSplitter is the HostClient's transport: fasthttp's, with its io.EOF split in two. fasthttp reports
// io.EOF both for a connection closed before any byte of the answer (a kept-alive one the upstream closed
// while idle) and for a chunked body cut short when it reads the body whole; only the first may be resent.
type eofSplitter struct{}

var (
	errUnanswered = errors.New("upstream closed the connection without answering")
	errBrokeOff   = errors.New("upstream closed the connection mid-answer: unexpected EOF")
)

func (eofSplitter) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	retry, err := fasthttp.DefaultTransport.RoundTrip(hc, req, resp)
	switch {
	case err == nil:
		return retry, nil
	case resp.Header.ContentLength() != 0:
		// The headers were read (fasthttp reset them before the attempt): part of the answer came, so the
		// call must not be resent.
		if err == io.EOF {
			err = errBrokeOff
		}
		return false, err
	case err == io.EOF:
		return retry, errUnanswered
	}
	return retry, err
}

// neverRetry keeps fasthttp from resending calls itself (it would resend GETs through the same pool):
// send resends a stale connection's call, on a fresh one.
func neverRetry(*fasthttp.Request, int, error) (resetTimeout, retry bool) { return false, false }

// unanswered reports whether a call failed before any byte of the answer came, in the ways a kept-alive
// connection the upstream closed while idle fails: a write into it (EPIPE, ECONNRESET) or a read that
// meets its end (uvicorn, in front of vLLM among others, closes idle connections after 5 s, well before
// our 90 s; a restarted upstream closes them all). Timeouts are not among them.
func unanswered(err error) bool {
	return err == errUnanswered || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// send makes one call through the endpoint's pool, and when it fails as a dead kept-alive connection
// does, sends it once more on a new connection, as net/http does for reused ones: the upstream saw
// nothing of the first attempt that it answered. The pool may hold more connections just as dead (an
// upstream restart kills them all), so the resend never takes one from it.
func send(h *hostClients, freq *fasthttp.Request, fresp *fasthttp.Response, deadline time.Time) error {
	err := h.pooled.DoDeadline(freq, fresp, deadline)
	if err == nil || !unanswered(err) {
		return err
	}
	freq.SetConnectionClose()
	return h.fresh.DoDeadline(freq, fresp, deadline)
}

// Do implements pipeline's Transport.
func (c *Client) Do(req *wire.Request, resp *wire.Response) error {
	h, freq, fresp, err := c.prepare(req)
	if err != nil {
		return err
	}
	defer fasthttp.ReleaseRequest(freq)
	defer fasthttp.ReleaseResponse(fresp)
	deadline := time.Now().Add(req.Target.Timeout)
	if err := send(h, freq, fresp, deadline); err != nil {
		return callError(req.Target, deadline, err)
	}
	resp.Status = fresp.StatusCode()
	resp.ContentType = string(fresp.Header.ContentType())
	resp.RetryAfter = string(fresp.Header.Peek("Retry-After"))
	resp.Body = slices.Clone(fresp.Body()) // fresp is pooled; the answer may become a cached entry
	if resp.Body == nil {
		resp.Body = []byte{}
	}
	return nil
}

// Stream implements pipeline's Transport. DoDeadline returns once the headers are in; the body is then read
// under the call's deadline, which timedConn left on the connection.
func (c *Client) Stream(req *wire.Request, sink wire.StreamSink) error {
	h, freq, fresp, err := c.prepare(req)
	if err != nil {
		return err
	}
	defer fasthttp.ReleaseRequest(freq)
	defer fasthttp.ReleaseResponse(fresp)
	fresp.StreamBody = true
	deadline := time.Now().Add(req.Target.Timeout)
	if err := send(h, freq, fresp, deadline); err != nil {
		return callError(req.Target, deadline, err)
	}
	defer fresp.CloseBodyStream()
	sink.Header(fresp.StatusCode(), string(fresp.Header.ContentType()), string(fresp.Header.Peek("Retry-After")))
	body := fresp.BodyStream()
	if body == nil {
		sink.Data(fresp.Body())
		return nil
	}
	bp := streamBufs.Get().(*[]byte)
	defer streamBufs.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			sink.Data(buf[:n])
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return callError(req.Target, deadline, err)
		}
	}
}

func (c *Client) prepare(req *wire.Request) (*hostClients, *fasthttp.Request, *fasthttp.Response, error) {
	h, err := c.host(req)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", wire.ErrUnreachable, err)
	}
	freq := fasthttp.AcquireRequest()
	freq.SetRequestURI(req.URL)
	freq.Header.SetMethod(req.Method)
	for _, h := range req.Header {
		freq.Header.Add(h[0], h[1])
	}
	ct := req.ContentType
	if ct == "" {
		ct = "application/json"
	}
	freq.Header.SetContentType(ct)
	freq.Header.Set("Accept-Encoding", "identity")
	freq.SetBodyRaw(req.Body) // no copy: req.Body outlives freq, which is released before Do/Stream returns
	return h, freq, fasthttp.AcquireResponse(), nil
}

// callError maps a fasthttp error to the pipeline's kinds, a timeout (504) or no answer (502), naming the
// timeout that fired.
func callError(ep *wire.Target, deadline time.Time, err error) error {
	switch {
	case errors.Is(err, wire.ErrTimeout) || errors.Is(err, wire.ErrUnreachable):
		return err // from the dialer, which named it
	case !isTimeout(err):
		return fmt.Errorf("%w: %v", wire.ErrUnreachable, err)
	case time.Now().Before(deadline):
		// The one deadline earlier than the call's is the first-byte deadline timedConn set.
		return fmt.Errorf("%w: no first byte within %s", wire.ErrTimeout, ep.FirstByteTimeout)
	default:
		return fmt.Errorf("%w: call exceeded timeout %s", wire.ErrTimeout, ep.Timeout)
	}
}
