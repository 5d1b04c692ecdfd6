// Package wire is the contract between the pipeline and the upstream transports: one call to an endpoint,
// its answer, a sink for streamed answers and the two errors a transport may return. It imports nothing of
// llmcache, so the transports in httpx/upstream depend on it and on nothing else of the pipeline.
package wire

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Target is what a transport needs to know of an endpoint: where it is and how long to wait for it.
type Target struct {
	Name             string        // default: the URL without credentials; names the endpoint in errors
	URL              string        // base URL, as an OpenAI base_url ("http://host:1234/v1") or the server root
	ConnectTimeout   time.Duration // default 10 s
	FirstByteTimeout time.Duration // default 300 s
	Timeout          time.Duration // the whole call; default 600 s
	InsecureTLS      bool          // do not verify the endpoint's certificate
	CAFile           string        // PEM certificates trusted in addition to the system's
}

// Request is one call to an endpoint.
type Request struct {
	Target *Target // for its timeouts and TLS setting, and so transports may keep a client per endpoint
	Method string
	URL    string
	Header [][2]string // complete: the transport adds only Content-Type, Content-Length and Accept-Encoding: identity
	Body   []byte
	// ContentType is the body's Content-Type; "" is application/json, what every cached route sends. A route
	// passed through sends the client's (multipart/form-data for an audio upload).
	ContentType string
}

// Response is an endpoint's answer. Body must be a fresh slice that the transport never reuses: it may
// become a cached entry shared by many requests.
type Response struct {
	Status      int
	ContentType string
	RetryAfter  string
	Body        []byte
}

// StreamSink receives a streamed answer. Its methods are called from the goroutine that called Stream, in
// order.
type StreamSink interface {
	Header(status int, contentType, retryAfter string)
	Data(p []byte) // p is valid only during the call
}

var (
	// ErrTimeout marks a call that ran past its endpoint's timeout (answered 504).
	ErrTimeout = errors.New("upstream timed out")
	// ErrUnreachable marks a call that got no answer: refused, reset, DNS, TLS (answered 502).
	ErrUnreachable = errors.New("upstream unreachable")
)

// CheckBaseURL refuses what cannot be an endpoint's base URL: a scheme other than http or https, no host, a
// fragment, or credentials in the URL (they belong in api_key, which is masked in logs).
func CheckBaseURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("scheme must be http or https")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("no host")
	case u.Opaque != "":
		return errors.New("not a hierarchical URL")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return errors.New("a base URL has no #fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return errors.New("port must be 1 to 65535")
		}
	}
	return nil
}

// RouteURL joins a route ("/chat/completions") to a base URL, after its /v1 path (added when the base does
// not end in it), and keeps the base's query string after the joined path: Azure OpenAI's
// "?api-version=..." goes on every call.
func RouteURL(base, route string) string {
	query := ""
	if i := strings.IndexByte(base, '?'); i >= 0 {
		base, query = base[:i], base[i:]
	}
	base = strings.TrimRight(base, "/")
	if !strings.HasSuffix(base, "/v1") {
		base += "/v1"
	}
	if query == "?" {
		query = ""
	}
	return base + route + query
}
