package pipeline

import (
	"context"

	"llmcache/db"
)

// FlightLocks is what the pipeline needs of a store shared by several instances to make identical misses on
// all of them one upstream call (db/redisstore implements it). Only the local leader of a flight asks, so
// local flights stay as they are.
type FlightLocks interface {
	// Lead returns a lease when this instance should call upstream holding the key's lock, an entry (fresh,
	// the caller's) when the store holds an answer usable accepts (at once, or once another instance's
	// flight stored it), or neither when its wait passed lock_timeout_seconds. An error means the store
	// could not be asked. In the last two cases the caller goes upstream without the lock.
	Lead(ctx context.Context, key *db.Key, usable func(*db.Entry) bool) (db.Lease, *db.Entry, error)
}

// Forget drops keys (all: every entry) from the memory layer and the answers kept outside it, ordered with
// stores like a delete: another instance deleted them from the shared store, or this instance may have
// missed such a message (its events connection dropped).
func (p *Pipeline) Forget(keys []Key, all bool) { p.storer.forget(keys, all) }

// fromStore asks the shared store's flight lock before a's first upstream attempt. It returns true when the
// store answered (res is the answer: a hit, nothing sent upstream); otherwise res.lease is the lock held,
// or nil when the call goes without one.
func (cl *caller) fromStore(a *attempt, res *attemptResult) bool {
	c := a.c
	epoch := cl.storer.current()
	usable := func(e *db.Entry) bool {
		now := nowMillis()
		return (e.ExpiresAt == 0 || now < e.ExpiresAt) && cl.cfg.usable(&c.controls, e.CreatedAt, e.Version, e.Endpoint, now)
	}
	lease, e, err := cl.cfg.Flights.Lead(cl.ctx, &c.key, usable)
	if err != nil || e == nil {
		res.lease = lease
		return false
	}
	m := memEntryOf(c.key, e)
	m.tokens = usageTokens(m.body)
	cl.storer.remember(m, epoch)
	cl.touch.add(&m.key, nowMillis())
	res.outcome = outcomeFromStore
	res.resp = Response{Status: 200, Body: m.body, ContentType: m.contentType, Cache: "HIT", Source: SourceStore, CacheStatus: "llmcache; hit",
		HasKey: true, Outcome: OutcomeDBHit, tokens: m.tokens}
	return true
}
