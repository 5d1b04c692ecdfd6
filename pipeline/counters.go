package pipeline

import "sync/atomic"

// Outcome is how a request was answered, for /stats and /metrics.
type Outcome uint8

const (
	OutcomeMemoryHit Outcome = iota
	OutcomeDBHit
	OutcomeMiss      // fetched upstream and (when useful and allowed) stored
	OutcomeCoalesced // answered by an identical request's upstream call
	OutcomeRefresh   // no-cache or write_only: fetched and stored regardless of the cache
	OutcomeBypass    // mode off: fetched, not stored
	OutcomePartial   // embeddings: some items cached, the rest fetched
	OutcomeError
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"memory_hit", "db_hit", "miss", "coalesced", "refresh", "bypass", "partial", "error"}

func (o Outcome) String() string { return outcomeNames[o] }

// NumKinds bounds Kind values, for arrays indexed by route.
const NumKinds = int(KindModels) + 1

// RouteName names a route in /stats and /metrics labels.
func RouteName(k Kind) string {
	switch k {
	case KindChat:
		return "chat"
	case KindCompletion:
		return "completions"
	case KindEmbedding:
		return "embeddings"
	case KindModels:
		return "models"
	}
	return "other"
}

// counters are the pipeline's figures. The stages add to them with atomic adds, which never block and
// cost about what a channel send would without its contention; the stats actor samples them.
type counters struct {
	off         bool // Config.NoStats
	requests    [NumKinds][NumOutcomes]atomic.Int64
	tokensSaved atomic.Int64 // upstream total_tokens of the stored answers that hits served

	upstreamCalls, upstreamErrors, retries, memInsertDrops, touchDrops, dbReadErrors atomic.Int64

	trimRuns, trimmed, trimDropped, trimOverflows atomic.Int64 // context trimming: bodies counted, cut, messages dropped, too long
}

func (c *counters) count(k Kind, o Outcome) {
	if !c.off && int(k) < NumKinds {
		c.requests[k][o].Add(1)
	}
}

// hit counts a hit and the tokens its answer cost when it was fetched.
func (c *counters) hit(k Kind, o Outcome, tokens int64) {
	c.count(k, o)
	if tokens > 0 && !c.off {
		c.tokensSaved.Add(tokens)
	}
}

// Counts is a snapshot of the pipeline's counters.
type Counts struct {
	Requests         [NumKinds][NumOutcomes]int64 // by route (Kind) and outcome
	TokensSaved      int64
	UpstreamCalls    int64
	UpstreamErrors   int64 // failed attempts, retried or not
	Retries          int64
	UpstreamInFlight int64
	Queued           int64 // calls waiting for an upstream slot or a retry
	MemInsertDrops   int64 // answers the memory stage had no room to take (they are still on disk)
	TouchDrops       int64 // hit-count updates dropped because the writer's queue was full
	DBReadErrors     int64 // SQLite reads that failed (served as misses)
	MemoryEntries    int64
	MemoryBytes      int64

	TrimRuns, Trimmed, TrimDropped, TrimOverflows int64
}

// Outcome sums one outcome over every route.
func (c Counts) Outcome(o Outcome) int64 {
	var n int64
	for k := range c.Requests {
		n += c.Requests[k][o]
	}
	return n
}

// answers sums outcomes over the routes that carry model answers: the models listing is left out of the
// hit rate, which is about what the cache saves.
func (c Counts) answers(os ...Outcome) int64 {
	var n int64
	for _, k := range []Kind{KindChat, KindCompletion, KindEmbedding} {
		for _, o := range os {
			n += c.Requests[k][o]
		}
	}
	return n
}

// Hits is memory plus SQLite hits of model answers (chat, completions, embeddings).
func (c Counts) Hits() int64 { return c.answers(OutcomeMemoryHit, OutcomeDBHit) }

// Fetched is the model answers fetched upstream for their own request: the hit rate's other side.
func (c Counts) Fetched() int64 {
	return c.answers(OutcomeMiss, OutcomeRefresh, OutcomeBypass, OutcomePartial)
}

// Counts returns a snapshot of the counters.
func (p *Pipeline) Counts() Counts {
	s := &p.stats
	c := Counts{
		TokensSaved: s.tokensSaved.Load(), UpstreamCalls: s.upstreamCalls.Load(), UpstreamErrors: s.upstreamErrors.Load(),
		Retries: s.retries.Load(), UpstreamInFlight: p.dispatch.inFlightGauge.Load(), Queued: p.dispatch.queuedGauge.Load(),
		MemInsertDrops: s.memInsertDrops.Load(), TouchDrops: s.touchDrops.Load(), DBReadErrors: s.dbReadErrors.Load(),
		TrimRuns: s.trimRuns.Load(), Trimmed: s.trimmed.Load(), TrimDropped: s.trimDropped.Load(), TrimOverflows: s.trimOverflows.Load(),
	}
	for k := range s.requests {
		for o := range s.requests[k] {
			c.Requests[k][o] = s.requests[k][o].Load()
		}
	}
	for _, sh := range p.shards {
		c.MemoryEntries += sh.published.Load()
		c.MemoryBytes += sh.publishedBytes.Load()
	}
	return c
}
