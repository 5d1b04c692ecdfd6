package pipeline

import (
	"errors"
	"fmt"
	"sync"
	"time"

	json "github.com/goccy/go-json"
)

// models is the stage that answers GET /v1/models: the union of what every endpoint lists, plus the
// configured model overrides, kept for models_ttl_seconds. Its goroutine alone owns the list. Requests that
// arrive while it fetches wait in its queue and get the fresh list, so a burst makes one round of upstream
// calls. Each endpoint is asked through the scheduler, under the same limits, health and retries as every
// other upstream call (an ejected endpoint is not asked).
type models struct {
	cfg       *Config
	sched     *scheduler
	in        chan *Request
	quit      chan struct{}
	wg        sync.WaitGroup
	list      []byte // the last list built, nil before the first success
	fetched   time.Time
	overrides []string
}

type modelEntry struct {
	ID string `json:"id"`
}

func newModels(cfg *Config, sched *scheduler) *models {
	m := &models{cfg: cfg, sched: sched, in: make(chan *Request, 1024), quit: make(chan struct{})}
	seen := map[string]bool{}
	for _, e := range cfg.Endpoints {
		if e.Model != "" && !seen[e.Model] {
			seen[e.Model] = true
			m.overrides = append(m.overrides, e.Model)
		}
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.run()
	}()
	return m
}

func (m *models) submit(r *Request) {
	if !enqueue(m.in, r, r.Arrived.Add(m.cfg.QueueTimeout)) {
		r.fail(errOverloaded)
	}
}

// stop answers what is queued and ends the goroutine; it comes before the scheduler stops.
func (m *models) stop() {
	close(m.quit)
	m.wg.Wait()
}

// run serves until quit closes, then answers what is still queued. m.in is never closed: a handler past the
// front end's shutdown timeout must not panic on a closed channel.
func (m *models) run() {
	for {
		select {
		case r := <-m.in:
			m.serve(r)
		case <-m.quit:
			for {
				select {
				case r := <-m.in:
					m.serve(r)
				default:
					return
				}
			}
		}
	}
}

func (m *models) serve(r *Request) {
	if m.list != nil && time.Since(m.fetched) < m.cfg.ModelsTTL {
		r.Resp = Response{Status: 200, Body: m.list, ContentType: "application/json", Cache: "HIT", Source: SourceMemory,
			CacheStatus: "llmcache; hit", Outcome: OutcomeMemoryHit}
		r.finish()
		return
	}
	list, err := m.fetch(r)
	switch {
	case err == nil:
		m.list, m.fetched = list, time.Now()
		r.Resp = Response{Status: 200, Body: list, ContentType: "application/json", Cache: "MISS", Source: SourceUpstream,
			CacheStatus: "llmcache; fwd=miss; stored", Outcome: OutcomeMiss}
		r.finish()
	case m.list != nil:
		// Stale, but served from what is kept.
		r.Resp = Response{Status: 200, Body: m.list, ContentType: "application/json", Cache: "STALE", Source: SourceMemory,
			CacheStatus: "llmcache; hit; detail=stale", Outcome: OutcomeMemoryHit}
		r.finish()
	default:
		r.fail(upstreamError(502, "upstream_unreachable", "cannot list models: "+err.Error()))
	}
}

// fetch asks every endpoint for its models at once and builds the union, in configuration order and then
// the order first seen: each model object as its endpoint sent it, then the configured overrides that no
// endpoint listed. It fails only when no endpoint answered with a list.
func (m *models) fetch(r *Request) ([]byte, error) {
	header := r.forwardHeaders()
	asks := make([]*Request, len(m.sched.endpoints))
	for i, ep := range m.sched.endpoints {
		q := Acquire()
		q.Kind, q.Arrived = KindModels, time.Now()
		asks[i] = q
		c := &call{kind: KindModels, pin: ep, header: header, enqueued: q.Arrived, waiters: []*Request{q}}
		if !m.sched.submit(c) {
			q.fail(errOverloaded)
		}
	}
	var (
		objects []json.RawMessage
		seen    = map[string]bool{}
		errs    []error
	)
	for i, q := range asks {
		<-q.Done()
		resp := q.Resp
		Release(q)
		if resp.Err != nil || resp.Status != 200 {
			errs = append(errs, fmt.Errorf("endpoint %s: %s", m.sched.endpoints[i].cfg.Name, describe(&resp)))
			continue
		}
		var listing struct {
			Data []json.RawMessage `json:"data"`
		}
		json.Unmarshal(resp.Body, &listing) // the caller checked it is a list
		for _, obj := range listing.Data {
			var me modelEntry
			if json.Unmarshal(obj, &me) != nil || me.ID == "" || seen[me.ID] {
				continue
			}
			seen[me.ID] = true
			objects = append(objects, obj)
		}
	}
	if len(errs) == len(asks) {
		return nil, errors.Join(errs...)
	}
	for _, id := range m.overrides {
		if !seen[id] {
			obj, _ := json.Marshal(map[string]any{"id": id, "object": "model", "created": 0, "owned_by": "llmcache"})
			objects = append(objects, obj)
		}
	}
	if objects == nil {
		objects = []json.RawMessage{}
	}
	return json.Marshal(struct {
		Object string            `json:"object"`
		Data   []json.RawMessage `json:"data"`
	}{"list", objects})
}

// describe says why an answer is not a models list.
func describe(r *Response) string {
	if r.Err != nil {
		return r.Err.Message
	}
	return fmt.Sprintf("answered status %d", r.Status)
}

// isModelList reports whether body is a JSON object with a "data" array.
func isModelList(body []byte) bool {
	var listing struct {
		Data []json.RawMessage `json:"data"`
	}
	return json.Unmarshal(body, &listing) == nil && listing.Data != nil
}
