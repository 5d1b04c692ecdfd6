package pipeline

import (
	"runtime"
	"sync/atomic"
	"testing"

	"llmcache/db"
	"llmcache/pipeline/wire"
)

// gatedWriter is the fake writer with Put held at a gate: the test sees the put arrive and lets it go. It
// records a delete that runs while a put is held: the store and the delete were not ordered.
type gatedWriter struct {
	fakeWriter
	entered  chan struct{}
	gate     chan struct{}
	putting  *atomic.Bool
	overlaps *atomic.Int64
}

func (w gatedWriter) Put(e *db.Entry) {
	w.putting.Store(true)
	w.entered <- struct{}{}
	<-w.gate
	w.fakeWriter.Put(e)
	w.putting.Store(false)
}

func (w gatedWriter) Do(fn func(db.Store) (int64, error)) (int64, error) {
	if w.putting.Load() {
		w.overlaps.Add(1)
	}
	return w.fakeWriter.Do(fn)
}

// TestDeleteWaitsForAStoreUnderWay: a delete that arrives while an answer is being stored (handed to the
// writer, not yet in memory) is carried out after the store, so it removes the answer from both: the next
// request for it is a miss.
func TestDeleteWaitsForAStoreUnderWay(t *testing.T) {
	tr := &fakeTransport{script: func(n int, _ *wire.Request) answer { return chatAnswer(n) }}
	cfg := DefaultConfig()
	ep := DefaultEndpoint("http://a.test")
	cfg.Endpoints = []Endpoint{ep}
	store := newFakeStore()
	w := gatedWriter{fakeWriter: fakeWriter{store}, entered: make(chan struct{}), gate: make(chan struct{}),
		putting: new(atomic.Bool), overlaps: new(atomic.Int64)}
	p, err := New(cfg, store, w, tr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()

	probe := newRequest(chat("deleted as it is stored"), false)
	probe.Controls.Mode = ModeReadOnly
	p.Submit(probe)
	key := (<-probe.Done()).Key
	first := sendAsync(p, newRequest(chat("deleted as it is stored"), false))
	<-w.entered // the answer is on its way to the writer, not yet in memory
	deleted := make(chan error, 1)
	go func() {
		_, err := p.Delete(Selection{Keys: []Key{key}})
		deleted <- err
	}()
	// Give the delete every chance to run now; it must wait for the store instead.
	for range 1000 {
		runtime.Gosched()
	}
	close(w.gate)
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	expectStatus(t, "the miss", <-first, 200)
	r := newRequest(chat("deleted as it is stored"), false)
	r.Controls.Mode = ModeReadOnly
	p.Submit(r)
	<-r.Done()
	if n := w.overlaps.Load(); n > 0 {
		t.Errorf("the delete ran while the answer was being stored")
	}
	if r.Resp.Status != 404 || store.len() != 0 {
		t.Fatalf("after the delete: status %d, %d entries in the store; want a 404 cache_miss and none", r.Resp.Status, store.len())
	}
}

// TestDeleteDropsRecentAnswers: with the memory layer off, an answer stored a moment ago is served from the
// scheduler's recent answers (covering the writer's delay) — but not after a delete.
func TestDeleteDropsRecentAnswers(t *testing.T) {
	tr := &fakeTransport{script: func(n int, _ *wire.Request) answer { return chatAnswer(n) }}
	// The store never shows the answer: as if the writer had not written it yet.
	cfg := DefaultConfig()
	cfg.MemoryEnabled = false
	cfg.Endpoints = []Endpoint{DefaultEndpoint("http://a.test")}
	store := newFakeStore()
	p, err := New(cfg, store, discardWriter{fakeWriter{store}}, tr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	expectStatus(t, "the miss", send(p, chat("kept a moment")), 200)
	again := send(p, chat("kept a moment"))
	if again.Resp.Cache != "HIT" || tr.calls.Load() != 1 {
		t.Fatalf("a repeat right after: X-Cache %q after %d calls; want a HIT from the recent answers", again.Resp.Cache, tr.calls.Load())
	}
	if _, err := p.Delete(Selection{Keys: []Key{again.Key}}); err != nil {
		t.Fatal(err)
	}
	after := send(p, chat("kept a moment"))
	if after.Resp.Cache != "MISS" || tr.calls.Load() != 2 {
		t.Fatalf("after the delete: X-Cache %q after %d calls; want a MISS and a new call", after.Resp.Cache, tr.calls.Load())
	}
}

// discardWriter accepts puts without writing them: the store stays empty.
type discardWriter struct{ fakeWriter }

func (discardWriter) Put(*db.Entry) {}
