package pipeline

import (
	"bytes"
	"sync"
	"time"

	"llmcache/pipeline/sse"
)

// LiveStream is an upstream SSE answer as it arrives, shared by every streaming client of one flight: each
// reads it from its first event, so a client that joins late still gets the whole stream, then the rest live.
//
// It is a log with one writer (the caller's goroutine) and many readers (the front end's stream writers),
// guarded by a mutex; wake lets readers wait for more. Once a stream grows past max_answer_bytes it stops
// being kept for late joiners (unbuffered): events every reader has written are let go, and nobody new may
// join.
type LiveStream struct {
	mu         sync.Mutex
	events     [][]byte      // raw events from the base-th on; guarded by mu
	base       int           // events let go from the front (unbuffered); guarded by mu
	readers    []*LiveReader // each reader's position; guarded by mu
	unbuffered bool          // guarded by mu
	opened     bool          // the scheduler has joined the flight's streaming clients; guarded by mu
	ended      bool          // guarded by mu
	endedAt    time.Time     // when end was called; guarded by mu
	wake       chan struct{} // closed when events grow or the stream ends, then replaced; guarded by mu
}

func newLiveStream() *LiveStream { return &LiveStream{wake: make(chan struct{})} }

func (l *LiveStream) append(ev []byte) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	if l.unbuffered {
		l.release()
	}
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
}

// stopKeeping turns the stream unbuffered: it is passed through, not kept for anyone who has not joined.
func (l *LiveStream) stopKeeping() {
	l.mu.Lock()
	l.unbuffered = true
	l.release()
	l.mu.Unlock()
}

// opened records that the clients waiting when the stream went live have joined it: until then nothing
// may be let go, since they have not read anything yet.
func (l *LiveStream) open() {
	l.mu.Lock()
	l.opened = true
	if l.unbuffered {
		l.release()
	}
	l.mu.Unlock()
}

// release lets go of the events every reader has written. mu must be held.
func (l *LiveStream) release() {
	if !l.opened {
		return
	}
	low := l.base + len(l.events)
	for _, r := range l.readers {
		low = min(low, r.next)
	}
	if n := low - l.base; n > 0 {
		clear(l.events[:n])
		l.events = l.events[n:]
		l.base = low
	}
}

// joinable reports whether a new client may still join: not once the stream stopped being kept.
func (l *LiveStream) joinable() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.unbuffered
}

// end closes the stream; tail (an error event when the upstream broke off, or the held-back [DONE]) comes last.
func (l *LiveStream) end(tail []byte) {
	l.mu.Lock()
	if len(tail) > 0 {
		l.events = append(l.events, tail)
	}
	l.ended, l.endedAt = true, time.Now()
	close(l.wake)
	l.mu.Unlock()
}

// endedBefore reports whether the stream had ended before t. Its clients have [DONE] (or the error event)
// a moment before the scheduler forgets the flight; a request that arrived after that must not join it:
// had the answer been stored, that request would have found it.
func (l *LiveStream) endedBefore(t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ended && l.endedAt.Before(t)
}

// StreamWriter is where a client's stream goes (fasthttp hands a *bufio.Writer).
type StreamWriter interface {
	Write(p []byte) (int, error)
	Flush() error
}

// LiveReader is one client's place in a LiveStream. It is made when the client is answered (join), so that
// a stream that stops being kept still holds every event this client has not written yet.
type LiveReader struct {
	l    *LiveStream
	next int // the next event to write; guarded by l.mu
}

// join adds a reader at the stream's start.
func (l *LiveStream) join() *LiveReader {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &LiveReader{l: l, next: l.base}
	l.readers = append(l.readers, r)
	return r
}

// leave takes r out of the stream's readers.
func (l *LiveStream) leave(r *LiveReader) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.readers {
		if x == r {
			l.readers = append(l.readers[:i], l.readers[i+1:]...)
			break
		}
	}
	if l.unbuffered {
		l.release()
	}
}

// CopyTo writes the stream to w as it arrives, flushing after each batch of events, leaving out the usage
// chunk when dropUsage (Response.DropUsage). It returns when the stream has ended or w fails, which is how a
// client that went away shows; the upstream call goes on and its answer is still stored.
func (r *LiveReader) CopyTo(w StreamWriter, dropUsage bool) error {
	l := r.l
	defer l.leave(r)
	for {
		l.mu.Lock()
		events, ended, wake := l.events[r.next-l.base:], l.ended, l.wake
		l.mu.Unlock()
		for _, ev := range events {
			if dropUsage && sse.IsUsageChunk(ev) {
				continue
			}
			if _, err := w.Write(ev); err != nil {
				return err
			}
		}
		if len(events) > 0 {
			if err := w.Flush(); err != nil {
				return err
			}
			l.mu.Lock()
			r.next += len(events)
			l.mu.Unlock()
		}
		if ended && len(events) == 0 {
			return nil
		}
		if !ended {
			<-wake
		}
	}
}

// cutEvent ends a client's stream when the upstream's broke off, so that SDKs raise an error instead of
// taking a truncated answer for a whole one.
var cutEvent = []byte("event: error\ndata: {\"error\":{\"message\":\"the upstream stream broke off before it finished\",\"type\":\"server_error\",\"param\":null,\"code\":\"upstream_stream_cut\"}}\n\n")

// streamRecorder is the wire.StreamSink of a streamed upstream call. An SSE answer with status 200 goes live
// (the scheduler answers every streaming waiter with the LiveStream at once) and is assembled for storage;
// any other answer is buffered whole and settled like a non-streamed one.
type streamRecorder struct {
	c      *call
	trim   trimmed  // what the attempt sent, for the live event
	report reporter // the scheduler
	limit  int64    // max_answer_bytes: past it the stream is passed through, not assembled or kept

	status                  int
	contentType, retryAfter string
	body                    []byte // a non-SSE answer, buffered

	live       *LiveStream
	split      sse.Splitter
	asm        streamAssembler
	asmErr     error
	bytes      int64 // of the live stream so far
	overflowed bool  // it grew past limit
	// done holds the [DONE] event (a Responses stream's final event) and anything after it back from the live
	// stream until the answer is stored: a client that sends the same request the moment it reads [DONE]
	// must find it.
	done []byte
}

func newStreamRecorder(c *call, report reporter, limit int64, t trimmed) *streamRecorder {
	return &streamRecorder{c: c, report: report, limit: limit, trim: t}
}

func (s *streamRecorder) Header(status int, contentType, retryAfter string) {
	s.status, s.contentType, s.retryAfter = status, contentType, retryAfter
	if status == 200 && isEventStream(contentType) {
		s.asm = newStreamAssembler(s.c.kind)
		s.live = newLiveStream()
		s.report.wentLive(liveEvent{c: s.c, live: s.live, trim: s.trim})
	}
}

func (s *streamRecorder) Data(p []byte) {
	if s.live == nil {
		s.body = append(s.body, p...)
		return
	}
	s.bytes += int64(len(p))
	if !s.overflowed && s.bytes > s.limit {
		s.overflowed = true
		s.asm = nil // nothing past here is kept: the assembled half would be thrown away
		s.live.stopKeeping()
	}
	s.split.Feed(p, func(ev []byte) {
		ev = bytes.Clone(ev)
		if s.asm != nil && s.asmErr == nil {
			s.asmErr = s.asm.Event(ev)
		}
		if s.done == nil && !isStreamEnd(s.c.kind, ev) {
			s.live.append(ev)
			return
		}
		s.done = append(s.done, ev...)
	})
}

// result is the assembled answer, or why there is none. A stream that grew past the limit is whole when it
// ended with [DONE] (or its final typed event), but has no assembled answer.
func (s *streamRecorder) result() (body []byte, ok bool, reason string) {
	if s.split.Pending() {
		return nil, false, "the stream ended inside an event"
	}
	if s.overflowed {
		return nil, s.done != nil, "the stream ended without its last event"
	}
	if s.asmErr != nil {
		return nil, false, s.asmErr.Error()
	}
	return s.asm.Result()
}

func isEventStream(contentType string) bool {
	return len(contentType) >= 17 && equalFold([]byte(contentType[:17]), "text/event-stream")
}

func sseKind(k Kind) sse.Kind {
	if k == KindCompletion {
		return sse.Completion
	}
	return sse.Chat
}

// replay answers a streaming request from a stored (non-streamed) answer: the SSE the SDKs expect,
// synthesised from it.
func replay(r *Request, body []byte) ([]byte, error) {
	if r.Kind == KindResponses || r.Kind == KindResponseByID {
		// The response goes out about three times: in progress (without output), item by item, whole.
		return sse.SynthesizeResponse(make([]byte, 0, len(body)*3+2048), body)
	}
	// A replay is about five times the stored body (each piece repeats the chunk envelope).
	return sse.Synthesize(make([]byte, 0, len(body)*5+512), sseKind(r.Kind), body, r.includeUsage)
}
