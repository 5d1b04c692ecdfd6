package pipeline

import "llmcache/pipeline/wire"

// Transport sends one request to an upstream endpoint. The pipeline declares it so that it never imports the
// HTTP packages; main hands it a transport from httpx/upstream, which speaks the wire package's types. Do
// and Stream may be called from many goroutines.
type Transport interface {
	// Do fills resp with the upstream's answer, whatever its status. It returns an error only when no
	// complete answer arrived: wrapping wire.ErrTimeout for a timeout, wire.ErrUnreachable otherwise.
	Do(req *wire.Request, resp *wire.Response) error
	// Stream sends req and hands the answer to sink as it arrives: Header once, then Data for each piece of
	// the body as read. It returns nil when the body ended, or an error (wrapping wire.ErrTimeout or
	// wire.ErrUnreachable) when no answer came or the body broke off.
	Stream(req *wire.Request, sink wire.StreamSink) error
}
