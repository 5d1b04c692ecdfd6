package pipeline

import (
	"fmt"
	"time"

	json "github.com/goccy/go-json"

	"llmcache/pipeline/wire"
)

// modelsFetchTimeout bounds one endpoint's answer to GET /models: a listing must not hang behind a slow
// endpoint for the ten minutes a completion may take.
const modelsFetchTimeout = 10 * time.Second

// modelsActor serves GET /v1/models: the union of what every endpoint lists, plus the configured model
// overrides, kept for models_ttl_seconds. It alone owns the list. Requests that arrive while it fetches
// wait in its queue and get the fresh list, so a burst makes one round of upstream calls.
type modelsActor struct {
	p         *Pipeline
	in        chan *Request
	list      []byte // the last list built, nil before the first success
	fetched   time.Time
	ttl       time.Duration
	overrides []string
}

type modelEntry struct {
	ID string `json:"id"`
}

func newModelsActor(p *Pipeline) *modelsActor {
	a := &modelsActor{p: p, in: make(chan *Request, 1024), ttl: p.cfg.ModelsTTL}
	seen := map[string]bool{}
	for _, e := range p.cfg.Endpoints {
		if e.Model != "" && !seen[e.Model] {
			seen[e.Model] = true
			a.overrides = append(a.overrides, e.Model)
		}
	}
	return a
}

// run serves until quit closes, then answers what is still queued. a.in is never closed, for the reason
// keyCh is not.
func (a *modelsActor) run(quit <-chan struct{}) {
	for {
		select {
		case r := <-a.in:
			a.serve(r)
		case <-quit:
			for {
				select {
				case r := <-a.in:
					a.serve(r)
				default:
					return
				}
			}
		}
	}
}

func (a *modelsActor) serve(r *Request) {
	if a.list != nil && time.Since(a.fetched) < a.ttl {
		a.p.stats.count(KindModels, OutcomeMemoryHit)
		r.Resp = Response{Status: 200, Body: a.list, ContentType: "application/json", Cache: "HIT", Source: "memory", CacheStatus: "llmcache; hit"}
		r.finish()
		return
	}
	list, err := a.fetch(r)
	switch {
	case err == nil:
		a.list, a.fetched = list, time.Now()
		a.p.stats.count(KindModels, OutcomeMiss)
		r.Resp = Response{Status: 200, Body: list, ContentType: "application/json", Cache: "MISS", Source: "upstream", CacheStatus: "llmcache; fwd=miss; stored"}
		r.finish()
	case a.list != nil:
		a.p.stats.count(KindModels, OutcomeMemoryHit) // stale, but served from what is kept
		r.Resp = Response{Status: 200, Body: a.list, ContentType: "application/json", Cache: "STALE", Source: "memory", CacheStatus: "llmcache; hit; detail=stale"}
		r.finish()
	default:
		a.p.stats.count(KindModels, OutcomeError)
		r.fail(&Error{Status: 502, Type: "server_error", Code: "upstream_unreachable", Message: "cannot list models: " + err.Error()})
	}
}

// fetch asks every endpoint for its models and builds the union, in the order first seen: each model
// object as its endpoint sent it, then the configured overrides that no endpoint listed. It fails only
// when no endpoint answered with a list.
func (a *modelsActor) fetch(r *Request) ([]byte, error) {
	client := clientHeaders(r)
	var (
		objects []json.RawMessage
		seen    = map[string]bool{}
		lastErr error
		anyOK   bool
	)
	for i := range a.p.cfg.Endpoints {
		ep := a.p.cfg.Endpoints[i] // a copy: the listing gets its own timeout
		ep.Timeout = min(ep.Timeout, modelsFetchTimeout)
		req := wire.Request{Target: &ep.Target, Method: "GET", URL: wire.RouteURL(ep.URL, "/models"), Header: a.p.upstreamHeaders(client, &ep)}
		var resp wire.Response
		if err := a.p.transport.Do(&req, &resp); err != nil {
			lastErr = err
			continue
		}
		var listing struct {
			Data []json.RawMessage `json:"data"`
		}
		if resp.Status != 200 || json.Unmarshal(resp.Body, &listing) != nil {
			lastErr = fmt.Errorf("endpoint %s answered status %d without a models list", ep.Name, resp.Status)
			continue
		}
		anyOK = true
		for _, obj := range listing.Data {
			var m modelEntry
			if json.Unmarshal(obj, &m) != nil || m.ID == "" || seen[m.ID] {
				continue
			}
			seen[m.ID] = true
			objects = append(objects, obj)
		}
	}
	if !anyOK {
		return nil, lastErr
	}
	for _, id := range a.overrides {
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
