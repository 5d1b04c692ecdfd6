package pipeline

import "errors"

// Transport sends one request to an upstream endpoint. The pipeline declares it so that it never imports the
// HTTP packages; main hands it the transport from httpx/upstream. Do may be called from many goroutines.
type Transport interface {
	// Do fills resp with the upstream's answer, whatever its status. It returns an error only when no
	// complete answer arrived: wrapping ErrUpstreamTimeout for a timeout, ErrUpstreamUnreachable otherwise.
	Do(req *UpstreamRequest, resp *UpstreamResponse) error
	// Stream sends req and hands the answer to sink as it arrives: Header once, then Data for each piece of
	// the body as read. It returns nil when the body ended, or an error (wrapping ErrUpstreamTimeout or
	// ErrUpstreamUnreachable) when no answer came or the body broke off.
	Stream(req *UpstreamRequest, sink StreamSink) error
}

// StreamSink receives a streamed upstream answer. Its methods are called from the goroutine that called
// Stream, in order.
type StreamSink interface {
	Header(status int, contentType, retryAfter string)
	Data(p []byte) // p is valid only during the call
}

// UpstreamRequest is one call to an endpoint.
type UpstreamRequest struct {
	Endpoint *Endpoint // for its timeouts and TLS setting, and so transports may keep a client per endpoint
	Method   string
	URL      string
	Header   [][2]string // complete: the transport adds only Content-Type, Content-Length and Accept-Encoding: identity
	Body     []byte
}

// UpstreamResponse is an endpoint's answer. Body must be a fresh slice that the transport never reuses:
// it may become a cached entry shared by many requests.
type UpstreamResponse struct {
	Status      int
	ContentType string
	RetryAfter  string
	Body        []byte
}

var (
	// ErrUpstreamTimeout marks a call that ran past its endpoint's timeout (answered 504).
	ErrUpstreamTimeout = errors.New("upstream timed out")
	// ErrUpstreamUnreachable marks a call that got no answer: refused, reset, DNS, TLS (answered 502).
	ErrUpstreamUnreachable = errors.New("upstream unreachable")
)

// endpointBase returns the endpoint URL ending in /v1, to which a route's path is appended. Users write the
// URL as an OpenAI base_url ("http://host:1234/v1") or as the server's root ("http://host:1234").
func endpointBase(url string) string {
	for len(url) > 0 && url[len(url)-1] == '/' {
		url = url[:len(url)-1]
	}
	if len(url) >= 3 && url[len(url)-3:] == "/v1" {
		return url
	}
	return url + "/v1"
}
