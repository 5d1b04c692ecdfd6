package pipeline

import (
	"bytes"
	"sync"

	"llmcache/pipeline/sse"
)

// LiveStream is an upstream SSE answer as it arrives, shared by every streaming client of one flight: each
// reads it from its first event, so a client that joins late still gets the whole stream, then the rest live.
//
// It is the one piece of state shared between goroutines without an actor: the call goroutine appends,
// the front end's stream writers read. A mutex guards it; the wake channel lets readers wait.
type LiveStream struct {
	mu     sync.Mutex
	events [][]byte      // raw events, append-only; guarded by mu
	ended  bool          // guarded by mu
	wake   chan struct{} // closed when events grow or the stream ends, then replaced; guarded by mu
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
	l.ended = true
	close(l.wake)
	l.mu.Unlock()
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

// streamRecorder is the StreamSink of a streamed upstream call. An SSE answer with status 200 goes live
// (every streaming waiter is answered with the LiveStream at once) and is assembled for storage; any other
// answer is buffered whole and handled like a non-streamed one.
type streamRecorder struct {
	c       *call
	started chan<- *call // the dispatcher's: it answers the streaming waiters when the stream goes live

	status                  int
	contentType, retryAfter string
	body                    []byte // a non-SSE answer, buffered

	split   sse.Splitter
	asm     *sse.Assembler
	asmErr  error
	sawData bool
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
	s.sawData = true
	s.split.Feed(p, func(ev []byte) {
		ev = bytes.Clone(ev)
		s.c.live.append(ev)
		if s.asmErr == nil {
			s.asmErr = s.asm.Event(ev)
		}
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
