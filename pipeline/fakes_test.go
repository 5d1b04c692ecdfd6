package pipeline

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"llmcache/db"
	"llmcache/pipeline/wire"
)

// The fakes here stand in for the pipeline's boundaries: the store and the writer (an in-memory map), and
// the upstream transport (answers scripted by the test, each call held until the test lets it go).

// fakeStore is a db.Store over a map; the fake writer writes to it at once.
type fakeStore struct {
	mu      sync.Mutex
	entries map[Key]db.Entry
	deletes int
}

func newFakeStore() *fakeStore { return &fakeStore{entries: map[Key]db.Entry{}} }

func (s *fakeStore) OpenReader() (db.Reader, error) { return fakeReader{s}, nil }
func (s *fakeStore) WriteBatch(b *db.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range b.Puts {
		s.entries[e.Key] = *e
	}
	return nil
}
func (s *fakeStore) Delete(f db.Filter) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deletes++
	var n int64
	for k, e := range s.entries {
		if f.All || slices.Contains(f.Keys, k) || (f.Namespace != nil && *f.Namespace == e.Namespace) {
			delete(s.entries, k)
			n++
		}
	}
	return n, nil
}
func (s *fakeStore) Checkpoint() error          { return nil }
func (s *fakeStore) Optimize() error            { return nil }
func (s *fakeStore) Stats() (db.Stats, error)   { return db.Stats{}, nil }
func (s *fakeStore) Close() error               { return nil }
func (s *fakeStore) put(e *db.Entry)            { s.WriteBatch(&db.Batch{Puts: []*db.Entry{e}}) }
func (s *fakeStore) has(k Key) (ok bool)        { s.mu.Lock(); _, ok = s.entries[k]; s.mu.Unlock(); return ok }
func (s *fakeStore) len() (n int)               { s.mu.Lock(); n = len(s.entries); s.mu.Unlock(); return n }
func (w fakeWriter) TryTouch(t []db.Touch) bool { return true }

type fakeReader struct{ s *fakeStore }

func (r fakeReader) Get(key *Key, e *db.Entry) (bool, error) {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	got, ok := r.s.entries[*key]
	if !ok {
		return false, nil
	}
	body := append(e.Body[:0], got.Body...)
	*e = got
	e.Body = body
	return true, nil
}
func (r fakeReader) GetResponse(id, namespace string, e *db.Entry) (bool, error) {
	r.s.mu.Lock()
	var key Key
	found := false
	for k, x := range r.s.entries {
		if x.ResponseID == id && x.Namespace == namespace {
			key, found = k, true
		}
	}
	r.s.mu.Unlock()
	if !found {
		return false, nil
	}
	return r.Get(&key, e)
}
func (r fakeReader) Close() error { return nil }

// fakeWriter writes every put at once: the pipeline's tests are about its stages, not the writer's batching.
type fakeWriter struct{ s *fakeStore }

func (w fakeWriter) Put(e *db.Entry) { w.s.put(e) }
func (w fakeWriter) Do(fn func(db.Store) (int64, error)) (int64, error) {
	if fn == nil {
		return 0, nil
	}
	return fn(w.s)
}

// answer is what the fake transport answers one call with.
type answer struct {
	status     int
	body       string
	retryAfter string
	err        error    // no answer at all (wraps wire.ErrUnreachable or wire.ErrTimeout)
	events     []string // a streamed answer's SSE events, when status is 200 and the call streams
}

// fakeTransport answers each call with what script returns for it (the call's number from 1, and the
// request). When gated, each call waits at the gate until the test releases it.
type fakeTransport struct {
	script func(n int, req *wire.Request) answer
	gate   chan struct{} // nil: no gate
	calls  atomic.Int64
	mu     sync.Mutex
	seen   []seenCall
}

type seenCall struct {
	endpoint, url string
	body          string
	at            time.Time
}

func (f *fakeTransport) take(req *wire.Request) answer {
	n := int(f.calls.Add(1))
	f.mu.Lock()
	f.seen = append(f.seen, seenCall{endpoint: req.Target.Name, url: req.URL, body: string(req.Body), at: time.Now()})
	f.mu.Unlock()
	if f.gate != nil {
		<-f.gate
	}
	return f.script(n, req)
}

func (f *fakeTransport) calledAt() []seenCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

func (f *fakeTransport) Do(req *wire.Request, resp *wire.Response) error {
	a := f.take(req)
	if a.err != nil {
		return a.err
	}
	*resp = wire.Response{Status: a.status, ContentType: "application/json", RetryAfter: a.retryAfter, Body: []byte(a.body)}
	return nil
}

func (f *fakeTransport) Stream(req *wire.Request, sink wire.StreamSink) error {
	a := f.take(req)
	if a.err != nil {
		return a.err
	}
	if a.status != 200 || a.events == nil {
		sink.Header(a.status, "application/json", a.retryAfter)
		sink.Data([]byte(a.body))
		return nil
	}
	sink.Header(200, "text/event-stream", "")
	for _, ev := range a.events {
		sink.Data([]byte(ev))
	}
	return nil
}

// chatAnswer is an upstream chat answer whose content names n.
func chatAnswer(n int) answer {
	return answer{status: 200, body: fmt.Sprintf(`{"id":"c%d","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"answer %d"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`, n, n)}
}

var errRefused = fmt.Errorf("%w: connection refused", wire.ErrUnreachable)

// testPipeline starts a pipeline over the fakes with endpoints named by names (each weight 1).
func testPipeline(t *testing.T, tr *fakeTransport, mutate func(*Config), names ...string) (*Pipeline, *fakeStore) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.RetryBackoff = 100 * time.Millisecond
	if len(names) == 0 {
		names = []string{"a"}
	}
	for _, n := range names {
		ep := DefaultEndpoint("http://" + n + ".test")
		ep.Name = n
		cfg.Endpoints = append(cfg.Endpoints, ep)
	}
	if mutate != nil {
		mutate(&cfg)
	}
	store := newFakeStore()
	p, err := New(cfg, store, fakeWriter{store}, tr)
	if err != nil {
		t.Fatal(err)
	}
	return p, store
}

// chat is a chat request body whose last message is content.
func chat(content string) string {
	return `{"model":"m","messages":[{"role":"user","content":"` + content + `"}]}`
}

// newRequest makes a request outside the pool: its done channel then belongs to the test's bubble.
func newRequest(body string, stream bool) *Request {
	r := &Request{done: make(chan *Request, 1), Kind: KindChat, Arrived: time.Now(), Body: []byte(body), Controls: DefaultControls(ModeReadWrite)}
	if stream {
		r.Body = []byte(strings.TrimSuffix(body, "}") + `,"stream":true}`)
	}
	return r
}

// send submits a request and waits for its answer.
func send(p *Pipeline, body string) *Request {
	r := newRequest(body, false)
	p.Submit(r)
	return <-r.Done()
}

// sendAsync submits requests in goroutines of their own; their answers arrive on the returned channel.
func sendAsync(p *Pipeline, rs ...*Request) <-chan *Request {
	out := make(chan *Request, len(rs))
	for _, r := range rs {
		go func() {
			p.Submit(r)
			out <- <-r.Done()
		}()
	}
	return out
}

func expectStatus(t *testing.T, what string, r *Request, status int) {
	t.Helper()
	if r.Resp.Status != status {
		msg := ""
		if r.Resp.Err != nil {
			msg = r.Resp.Err.Message
		}
		t.Fatalf("%s: status %d (%s %s), want %d", what, r.Resp.Status, msg, r.Resp.Body, status)
	}
}
