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
// It is the one piece of state shared between goroutines without an actor: the call goroutine appends,
// the front end's stream writers read. A mutex guards it; the wake channel lets readers wait.
type LiveStream struct {
	mu      sync.Mutex
	events  [][]byte      // raw events, append-only; guarded by mu
	ended   bool          // guarded by mu
	endedAt time.Time     // when end was called; guarded by mu
	wake    chan struct{} // closed when events grow or the stream ends, then replaced; guarded by mu
}

func newLiveStream() *LiveStream { return &LiveStream{wake: make(chan struct{})} }

func (l *LiveStream) append(ev []byte) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
}

// end closes the stream; tail (an error event, when the upstream broke off) is delivered last.
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
// a moment before the dispatcher forgets the flight; a request that arrived after that must not join it:
// had the answer been stored, that request would have found it in memory.
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

// CopyTo writes the stream to w as it arrives, flushing after each batch of events. It returns when the
// stream has ended or w fails, which is how a client that went away shows; the upstream call goes on and
// its answer is still stored.
func (l *LiveStream) CopyTo(w StreamWriter) error {
	next := 0
	for {
		l.mu.Lock()
		events, ended, wake := l.events[next:], l.ended, l.wake
		l.mu.Unlock()
		for _, ev := range events {
			if _, err := w.Write(ev); err != nil {
				return err
			}
		}
		next += len(events)
		if len(events) > 0 {
			if err := w.Flush(); err != nil {
				return err
			}
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
// (every streaming waiter is answered with the LiveStream at once) and is assembled for storage; any other
// answer is buffered whole and handled like a non-streamed one.
type streamRecorder struct {
	c       *call
	started chan<- *call // the dispatcher's: it answers the streaming waiters when the stream goes live

	status                  int
	contentType, retryAfter string
	body                    []byte // a non-SSE answer, buffered

	split  sse.Splitter
	asm    *sse.Assembler
	asmErr error
	// done holds the [DONE] event (and anything after it) back from the live stream until the answer is
	// stored: a client that sends the same request the moment it reads [DONE] must find it in memory.
	done []byte
}

func (s *streamRecorder) Header(status int, contentType, retryAfter string) {
	s.status, s.contentType, s.retryAfter = status, contentType, retryAfter
	if status == 200 && isEventStream(contentType) {
		s.asm = sse.NewAssembler(sseKind(s.c.kind))
		s.c.live = newLiveStream()
		s.started <- s.c
	}
}

func (s *streamRecorder) Data(p []byte) {
	if s.c.live == nil {
		s.body = append(s.body, p...)
		return
	}
	s.split.Feed(p, func(ev []byte) {
		ev = bytes.Clone(ev)
		if s.asmErr == nil {
			s.asmErr = s.asm.Event(ev)
		}
		if s.done == nil {
			if data, _, ok := sse.Data(ev); !ok || string(bytes.TrimSpace(data)) != "[DONE]" {
				s.c.live.append(ev)
				return
			}
		}
		s.done = append(s.done, ev...)
	})
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
	// A replay is about five times the stored body (each piece repeats the chunk envelope).
	return sse.Synthesize(make([]byte, 0, len(body)*5+512), sseKind(r.Kind), body, r.includeUsage)
}
