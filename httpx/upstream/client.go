// Package upstream holds the transports that carry the pipeline's calls to upstream endpoints.
package upstream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"llmcache/pipeline"
)

// Client is the built-in transport: one fasthttp HostClient per endpoint, keeping connections alive.
type Client struct {
	mu    sync.Mutex
	hosts map[string]*fasthttp.HostClient // by endpoint name; guarded by mu (taken once per upstream call)
}

// New returns an empty client; host clients are made on first use.
func New() *Client { return &Client{hosts: make(map[string]*fasthttp.HostClient)} }

// maxResponseBytes bounds one upstream answer held in memory.
const maxResponseBytes = 256 << 20

func (c *Client) host(ep *pipeline.Endpoint, u *url.URL) *fasthttp.HostClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.hosts[ep.Name]; h != nil {
		return h
	}
	addr := u.Host
	isTLS := u.Scheme == "https"
	if u.Port() == "" {
		if isTLS {
			addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	connect := ep.ConnectTimeout
	h := &fasthttp.HostClient{
		Addr:                          addr,
		IsTLS:                         isTLS,
		TLSConfig:                     &tls.Config{InsecureSkipVerify: ep.InsecureTLS, ServerName: u.Hostname()},
		Dial:                          func(a string) (net.Conn, error) { return fasthttp.DialTimeout(a, connect) },
		MaxConns:                      4096, // the dispatcher bounds calls in flight; this must not
		MaxIdleConnDuration:           90 * time.Second,
		MaxResponseBodySize:           maxResponseBytes,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
	}
	c.hosts[ep.Name] = h
	return h
}

// Do implements pipeline.Transport.
func (c *Client) Do(req *pipeline.UpstreamRequest, resp *pipeline.UpstreamResponse) error {
	freq, fresp, hc, err := c.prepare(req)
	if err != nil {
		return err
	}
	defer fasthttp.ReleaseRequest(freq)
	defer fasthttp.ReleaseResponse(fresp)
	if err := hc.DoDeadline(freq, fresp, time.Now().Add(req.Endpoint.Timeout)); err != nil {
		return callError(req, err)
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

// Stream implements pipeline.Transport. The whole-call deadline covers the body too: fasthttp keeps the
// connection's read deadline while the body streams.
func (c *Client) Stream(req *pipeline.UpstreamRequest, sink pipeline.StreamSink) error {
	freq, fresp, hc, err := c.prepare(req)
	if err != nil {
		return err
	}
	defer fasthttp.ReleaseRequest(freq)
	defer fasthttp.ReleaseResponse(fresp)
	fresp.StreamBody = true
	if err := hc.DoDeadline(freq, fresp, time.Now().Add(req.Endpoint.Timeout)); err != nil {
		return callError(req, err)
	}
	defer fresp.CloseBodyStream()
	sink.Header(fresp.StatusCode(), string(fresp.Header.ContentType()), string(fresp.Header.Peek("Retry-After")))
	body := fresp.BodyStream()
	if body == nil {
		sink.Data(fresp.Body())
		return nil
	}
	buf := make([]byte, 16<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			sink.Data(buf[:n])
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return callError(req, err)
		}
	}
}

func (c *Client) prepare(req *pipeline.UpstreamRequest) (*fasthttp.Request, *fasthttp.Response, *fasthttp.HostClient, error) {
	u, err := url.Parse(req.URL)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: bad endpoint URL %q: %v", pipeline.ErrUpstreamUnreachable, req.URL, err)
	}
	hc := c.host(req.Endpoint, u)
	freq := fasthttp.AcquireRequest()
	freq.SetRequestURI(req.URL)
	freq.Header.SetMethod(req.Method)
	for _, h := range req.Header {
		freq.Header.Add(h[0], h[1])
	}
	freq.Header.SetContentType("application/json")
	freq.Header.Set("Accept-Encoding", "identity")
	freq.SetBody(req.Body)
	return freq, fasthttp.AcquireResponse(), hc, nil
}

// callError maps a fasthttp error to the pipeline's kinds: a timeout (504) or no answer (502).
func callError(req *pipeline.UpstreamRequest, err error) error {
	var ne net.Error
	if errors.Is(err, fasthttp.ErrTimeout) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w after %s", pipeline.ErrUpstreamTimeout, req.Endpoint.Timeout)
	}
	return fmt.Errorf("%w: %v", pipeline.ErrUpstreamUnreachable, err)
}
