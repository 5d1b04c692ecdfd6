package pipeline

import (
	"time"

	"llmcache/db"
)

// call is one flight: an upstream call and everyone waiting for it. It is made by the request that missed
// (the leader) and then owned by the scheduler (under its mutex); the caller that runs an attempt reads only
// the fields fixed at creation, and everything an attempt learns comes back as an attemptResult.
type call struct {
	// Fixed when the call is made.
	key                  Key
	kind                 Kind
	body                 []byte // the upstream body before the endpoint's model override
	modelStart, modelEnd int    // the model value in body
	coalesce             bool   // identical requests may join it
	stream               bool   // the leader streams, so the upstream call streams
	controls             Controls
	asked                string      // the model the client asked for
	header               [][2]string // the leader's headers to forward (a streaming leader is released early)
	emb                  *embCall    // embeddings: the items, the cached vectors and what is asked upstream
	pin                  *endpointState
	method, route, query string // KindResponseByID: GET or DELETE, "/responses/{id}" and the client's query
	enqueued             time.Time
	// Also fixed at creation: the prompts of a batched completions request (the cached choices and what is
	// asked upstream), the route of a request passed through.
	prompts *promptCall
	pass    *PassThrough

	// Owned by the scheduler: read and written only under its mutex.
	waiters   []*Request // not answered yet; waiters[0] is the leader until the call goes live
	live      *LiveStream
	attempts  int
	failedOn  uint64         // endpoints (by index) whose failure count this call already raised: a request counts once
	avoid     *endpointState // where the last attempt failed: a retry goes elsewhere when it can
	readyAt   time.Time      // when a retry may start
	minWindow int            // a chat too long for smaller windows goes only to endpoints with one this large
	trim      trimmed        // the last attempt's trimmed body, for a retry on the same window
	last      *attemptResult // the last attempt's result
	led       bool           // the shared store's flight lock was asked (once per call)
	lease     db.Lease       // the shared store's flight lock, held until the call ends; nil without one
}

// attempt is what the scheduler hands a caller: one try of c on ep.
type attempt struct {
	c     *call
	ep    *endpointState
	probe bool     // this attempt probes an endpoint back from its rest
	n     int      // 1 for the first attempt
	trim  trimmed  // a previous attempt's trimmed body, reused when the window and model are the same
	led   bool     // the shared store's flight lock was asked already (call.led)
	lease db.Lease // call.lease
}

// attemptResult is what an attempt learned; it travels back to the scheduler as a value.
type attemptResult struct {
	c          *call
	ep         *endpointState
	probe      bool
	outcome    outcome
	resp       Response  // the answer as the leader gets it
	retryAfter string    // the answer's Retry-After
	stored     bool      // the answer was handed to the writer and the memory stage
	remembered bool      // a live stream's stored answer is in the recent answers already (storedLive)
	epoch      int64     // the storer's epoch it was stored in
	entry      *memEntry // what was stored, for the recent answers
	trim       trimmed
	minWindow  int      // set when the chat did not fit ep's window
	cut        bool     // a live stream that reached its clients: never retried
	unshared   bool     // a live stream passed through without being kept (too large): no whole answer for other waiters
	led        bool     // the shared store's flight lock was asked in this attempt or before
	lease      db.Lease // the lock held, if any
}

// trimmed is a chat body cut to fit one window under one model override.
type trimmed struct {
	window  int
	model   string
	body    []byte
	dropped int
}

// liveEvent tells the scheduler that c's streamed answer is arriving: its streaming waiters get it now.
type liveEvent struct {
	c    *call
	live *LiveStream
	trim trimmed // what the attempt sent: the live stream's clients are told how many messages it dropped
}
