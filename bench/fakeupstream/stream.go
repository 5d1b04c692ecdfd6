package fakeupstream

import (
	"bufio"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// events is a list of ready-to-send SSE events ("data: ...\n\n") stored in
// one buffer.
type events struct {
	buf  []byte
	ends []int
	// cutLimit is the number of leading events that carry neither a
	// finish_reason nor usage nor [DONE]; X-Fake-Cut-After never sends more.
	cutLimit int
}

// mark ends the event appended to buf since the previous mark.
func (e *events) mark() { e.ends = append(e.ends, len(e.buf)) }

// markContent marks an event and counts it as cuttable.
func (e *events) markContent() {
	e.mark()
	e.cutLimit = len(e.ends)
}

func (e *events) addDone() {
	e.buf = append(e.buf, "data: [DONE]\n\n"...)
	e.mark()
}

func (e *events) at(i int) []byte {
	start := 0
	if i > 0 {
		start = e.ends[i-1]
	}
	return e.buf[start:e.ends[i]]
}

var eventsPool = sync.Pool{New: func() any { return new(events) }}

func getEvents() *events {
	e := eventsPool.Get().(*events)
	e.buf, e.ends, e.cutLimit = e.buf[:0], e.ends[:0], 0
	return e
}

func putEvents(e *events) {
	if cap(e.buf) > 1<<20 {
		return
	}
	eventsPool.Put(e)
}

// stream sends ev as the response: flushed one event at a time with
// rc.chunkDelay between events (and HoldStreams' pause after the first), or
// cut after rc.cutAfter events. It takes
// over the request's in-flight accounting and ev.
func (s *Server) stream(ctx *fasthttp.RequestCtx, ev *events, rc reqControls) {
	if rc.cutAfter >= 0 {
		s.streamCut(ctx, ev, rc, min(rc.cutAfter, ev.cutLimit))
		return
	}
	ctx.Response.Header.SetContentTypeBytes(ctEventStream)
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	delay := rc.chunkDelay
	s.wg.Add(1)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer s.wg.Done()
		defer s.end()
		defer putEvents(ev)
		for i := range ev.ends {
			if i == 1 && !s.waitHold() {
				return
			}
			if i > 0 && !s.sleep(delay) {
				return
			}
			if _, err := w.Write(ev.at(i)); err != nil {
				return
			}
			if err := w.Flush(); err != nil {
				return
			}
		}
	})
}

var cutHead = []byte("HTTP/1.1 200 OK\r\nServer: fakeupstream\r\nContent-Type: text/event-stream\r\n" +
	"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")

// streamCut takes over the connection, writes a chunked SSE response with the
// first n events and closes the connection without finishing the body.
func (s *Server) streamCut(ctx *fasthttp.RequestCtx, ev *events, rc reqControls, n int) {
	raw := ctx.Conn()
	delay := rc.chunkDelay
	s.wg.Add(1)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer s.wg.Done()
		defer s.end()
		defer s.forgetConn(raw)
		defer putEvents(ev)
		defer raw.Close()
		_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
		if _, err := c.Write(cutHead); err != nil {
			return
		}
		var chunk []byte
		for i := 0; i < n; i++ {
			if i == 1 && !s.waitHold() {
				return
			}
			if i > 0 && !s.sleep(delay) {
				return
			}
			e := ev.at(i)
			chunk = strconv.AppendInt(chunk[:0], int64(len(e)), 16)
			chunk = append(chunk, '\r', '\n')
			chunk = append(chunk, e...)
			chunk = append(chunk, '\r', '\n')
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
		// End with a FIN in the middle of the chunked body: the client sees
		// an unexpected EOF, never a terminating chunk or [DONE].
		if cw, ok := raw.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	})
}
