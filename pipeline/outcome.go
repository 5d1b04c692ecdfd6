package pipeline

import "sync/atomic"

// Outcome is how a request was answered. The stage that answers sets it on the Response, once; /stats,
// /metrics, the dashboard, the summary log line and the request-duration histogram all read that value.
type Outcome uint8

const (
	OutcomeMemoryHit Outcome = iota // answered from the memory layer (or an answer stored a moment ago)
	OutcomeDBHit                    // answered from SQLite
	OutcomeMiss                     // fetched upstream for this request (stored when useful and allowed)
	OutcomeCoalesced                // answered by an identical request's upstream call
	OutcomeRefresh                  // no-cache or write_only: fetched and stored regardless of the cache
	OutcomeBypass                   // mode off: fetched, not stored
	OutcomePartial                  // embeddings or batched prompts: some items cached, the rest fetched
	OutcomeError                    // answered with an error status, whoever produced it
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"memory_hit", "db_hit", "miss", "coalesced", "refresh", "bypass", "partial", "error"}

func (o Outcome) String() string { return outcomeNames[o] }

// counters are the pipeline's figures. Stages add to them with atomic adds, which never block and cost
// about what a channel send would without its contention; the stats actor samples them.
type counters struct {
	off         bool // Config.NoStats
	requests    [NumKinds][NumOutcomes]atomic.Int64
	tokensSaved atomic.Int64 // upstream total_tokens of the stored answers that hits served

	upstreamCalls, upstreamErrors, retries, touchDrops, dbReadErrors, tooLarge atomic.Int64

	trimRuns, trimmed, trimDropped, trimOverflows atomic.Int64 // context trimming: bodies counted, cut, messages dropped, too long
}

// answered counts one request by its answer's outcome: the one place requests are counted.
func (c *counters) answered(k Kind, resp *Response) {
	if c.off || int(k) >= NumKinds {
		return
	}
	o := resp.Outcome
	if resp.Err != nil || resp.Status >= 400 {
		o = OutcomeError
	}
	c.requests[k][o].Add(1)
	if resp.tokens > 0 && (o == OutcomeMemoryHit || o == OutcomeDBHit) {
		c.tokensSaved.Add(resp.tokens)
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
	Queued           int64  // calls waiting for an upstream slot or a retry
	Waiting          int64  // requests waiting for an upstream call's answer: each call's leader and followers
	TouchDrops       int64  // hit-count updates dropped because the writer's queue was full
	DBReadErrors     int64  // SQLite reads that failed (served as misses)
	TooLarge         int64  // answers over max_answer_bytes: passed to the client, not stored
	ReadsSkipped     int64  // SQLite reads a miss skipped: the filter of the keys on disk said the key is not there
	KeyFilter        string // that filter: "off" (the store offers none), "loading" or "ready"
	MemoryEntries    int64
	MemoryBytes      int64

	TrimRuns, Trimmed, TrimDropped, TrimOverflows int64
}

// Outcome sums one outcome over every route.
func (c *Counts) Outcome(o Outcome) int64 {
	var n int64
	for k := range c.Requests {
		n += c.Requests[k][o]
	}
	return n
}

// Total is every request answered, on every route and with every outcome.
func (c *Counts) Total() int64 {
	var n int64
	for o := range NumOutcomes {
		n += c.Outcome(o)
	}
	return n
}

// answers sums outcomes over the routes that carry model answers: the models listing and responses looked
// up by id are left out of the hit rate, which is about what the cache saves.
func (c *Counts) answers(os ...Outcome) int64 {
	var n int64
	for _, k := range []Kind{KindChat, KindCompletion, KindEmbedding, KindResponses} {
		for _, o := range os {
			n += c.Requests[k][o]
		}
	}
	return n
}

// Hits is memory plus SQLite hits of model answers (chat, completions, embeddings, responses).
func (c *Counts) Hits() int64 { return c.answers(OutcomeMemoryHit, OutcomeDBHit) }

// Fetched is the model answers fetched upstream for their own request: the hit rate's other side.
func (c *Counts) Fetched() int64 {
	return c.answers(OutcomeMiss, OutcomeRefresh, OutcomeBypass, OutcomePartial)
}

// HitRate is the one definition of the hit rate: Hits / (Hits + Fetched), over chat, completions,
// embeddings and responses (POST /v1/responses; a response looked up by id is left out, like the models
// listing). Coalesced requests and errors are on neither side (a coalesced request neither hit the
// cache nor cost a call of its own). ok is false when nothing counts yet.
func HitRate(hits, fetched int64) (rate float64, ok bool) {
	if hits+fetched == 0 {
		return 0, false
	}
	return float64(hits) / float64(hits+fetched), true
}

// HitRate is HitRate over these counts.
func (c *Counts) HitRate() (float64, bool) { return HitRate(c.Hits(), c.Fetched()) }
