package redisstore

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"llmcache/db"
)

// Flights across instances. After a miss in memory and in the store, the instance that leads the miss's
// local flight takes the key's lock (SET NX PX, LockTTL, renewed while its call runs) and reads the entry
// once more in the same round trip, before calling upstream. An instance that finds the lock held waits,
// on the events channel, for "stored" or "none" (the leader let go), or for the lock's expiry (the leader
// died), then reads again and competes for the lock; LockTimeout bounds its whole wait, after which it
// goes upstream itself.
//
// A leader whose answer is stored lets go only once the writer has written it (WriteBatch calls written):
// a follower told "stored" must find it.
type flights struct {
	mu      sync.Mutex
	waiters map[db.Key]*waitList // followers of this instance, by key; guarded by mu
	held    map[db.Key]*lease    // locks this instance holds; guarded by mu
	ends    []*lease             // leases ended without an answer to store, to let go; guarded by mu
	wake    chan struct{}        // tells the renewer that ends has some
	seq     atomic.Uint64        // lock tokens
}

// waitList is the followers of one key on this instance: ch closes when they should look again.
type waitList struct {
	ch chan struct{}
	n  int
}

func (f *flights) init() {
	f.waiters = make(map[db.Key]*waitList)
	f.held = make(map[db.Key]*lease)
	f.wake = make(chan struct{}, 1)
}

// wait registers a follower of k; call unwait with the list when done.
func (f *flights) wait(k db.Key) *waitList {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.waiters[k]
	if w == nil {
		w = &waitList{ch: make(chan struct{})}
		f.waiters[k] = w
	}
	w.n++
	return w
}

func (f *flights) unwait(k db.Key, w *waitList) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w.n--; w.n == 0 && f.waiters[k] == w {
		delete(f.waiters, k)
	}
}

// notify wakes k's followers.
func (f *flights) notify(k db.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w := f.waiters[k]; w != nil {
		close(w.ch)
		delete(f.waiters, k)
	}
}

// wakeAll wakes every follower: the events connection dropped, and their messages may be lost.
func (f *flights) wakeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, w := range f.waiters {
		close(w.ch)
		delete(f.waiters, k)
	}
}

// releaseScript lets go of a lock if it is still ours, and tells every instance whether the entry is there.
// It runs on the entry's node (one hash slot), after any write of it sent before.
var releaseLua = newScript(`local ok = redis.call('EXISTS', KEYS[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if ok == 1 then redis.call('PUBLISH', ARGV[2], 'stored ' .. ARGV[3]) else redis.call('PUBLISH', ARGV[2], 'none ' .. ARGV[3]) end
return ok`)

// renewScript extends a lock if it is still ours; 0 when it is not (it expired, and another took it).
var renewLua = newScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`)

// lease is a lock this instance holds. It implements db.Lease.
type lease struct {
	s       *Store
	key     db.Key
	hex     string
	token   string
	storing atomic.Int64 // unix ms when Storing was called; 0 before
	ended   atomic.Bool
	awaited atomic.Bool // another instance waits for this flight (its "await" event came)
}

func (l *lease) call() scriptCall {
	return scriptCall{keys: []string{l.s.lockKey(l.hex), l.s.entryKey(l.hex)}, args: []string{l.token, l.s.channel(), l.hex}}
}

// Storing implements db.Lease: the answer is on its way to the writer; the lock goes once it is written
// (or, should it never be, once LockTimeout has passed: followers stop waiting by then anyway).
func (l *lease) Storing() {
	l.storing.CompareAndSwap(0, time.Now().UnixMilli())
	if l.awaited.Load() {
		l.s.flushSoon() // someone waits elsewhere: do not keep them for the writer's batch
	}
}

// awaited is told that another instance waits for k's flight: when this instance leads it, its answer is
// written as soon as it is stored, not when the writer's batch fills (flush_interval_ms).
func (f *flights) awaited(s *Store, k db.Key) {
	f.mu.Lock()
	l := f.held[k]
	f.mu.Unlock()
	if l == nil {
		return
	}
	l.awaited.Store(true)
	if l.storing.Load() != 0 { // Storing came first: it did not see the mark
		s.flushSoon()
	}
}

// SetFlushSoon gives the store the writer's FlushSoon, which a flight awaited by another instance calls.
func (s *Store) SetFlushSoon(fn func()) { s.flushSoonFn.Store(&fn) }

func (s *Store) flushSoon() {
	if fn := s.flushSoonFn.Load(); fn != nil {
		(*fn)()
	}
}

// End implements db.Lease: the flight is over. Unless its answer is being stored, the lock goes now, and
// the followers are told.
func (l *lease) End() {
	if l.storing.Load() != 0 || l.ended.Swap(true) {
		return
	}
	f := &l.s.flights
	f.mu.Lock()
	if f.held[l.key] == l {
		delete(f.held, l.key)
	}
	f.ends = append(f.ends, l)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Lead implements the pipeline's FlightLocks: it returns a lease when this instance should call upstream
// holding the key's lock, an entry when the store has one usable says yes to (found at once, or after
// another instance's flight), or neither once LockTimeout has passed (the caller goes upstream without the
// lock). An error means the store could not be asked: the caller goes upstream without the lock.
func (s *Store) Lead(ctx context.Context, key *db.Key, usable func(*db.Entry) bool) (db.Lease, *db.Entry, error) {
	h := keyHex(key)
	ek, lk := s.entryKey(h), s.lockKey(h)
	deadline := time.Now().Add(s.opts.LockTimeout)
	waited, retries := false, 0
	for {
		c, err := s.c()
		if err != nil {
			s.figures.flightErrors.Add(1)
			return nil, nil, err
		}
		// Registered before asking: a "stored" sent between this round trip and the wait below still wakes it.
		w := s.flights.wait(*key)
		token := s.origin + ":" + strconv.FormatUint(s.flights.seq.Add(1), 36)
		cctx, cancel := s.ctx()
		began := time.Now()
		res := c.DoMulti(cctx,
			c.B().Set().Key(lk).Value(token).Nx().PxMilliseconds(s.opts.LockTTL.Milliseconds()).Build(),
			c.B().Hmget().Key(ek).Field("m", "b", "n", "t").Build(),
			c.B().Pttl().Key(lk).Build())
		cancel()
		s.figures.read(time.Since(began))
		acquired, err := res[0].AsBool()
		if valkey.IsValkeyNil(err) {
			acquired, err = false, nil
		}
		var e *db.Entry
		if err == nil {
			vals, rerr := res[1].ToArray()
			if rerr == nil {
				e = &db.Entry{}
				var found bool
				found, rerr = s.decodeEntry(key, vals, e)
				if !found || rerr != nil {
					e = nil
				}
			}
			switch {
			case rerr == nil:
			case errors.Is(rerr, errGarbage) || isServerError(rerr):
				s.readFailed(key, rerr) // garbage (another type at the key, say): as good as absent; the fresh answer replaces it
			default:
				err = rerr
			}
		}
		ttl, terr := res[2].AsInt64()
		if err == nil {
			err = terr
		}
		if err != nil {
			s.flights.unwait(*key, w)
			if acquired {
				s.releaseNow(c, &lease{s: s, key: *key, hex: h, token: token})
			}
			s.figures.flightErrors.Add(1)
			// A slow answer from a store still up (a loaded client, a busy server) is asked again, within
			// the wait's bound: going upstream at once would pay for an answer another instance may be
			// fetching. A store known to be down fails the next round at once.
			if errors.Is(err, errDown) || time.Until(deadline) <= 0 {
				return nil, nil, err
			}
			retries++
			if err := s.pause(ctx, min(time.Duration(retries)*50*time.Millisecond, time.Second)); err != nil {
				return nil, nil, err
			}
			continue
		}
		if e != nil && usable(e) {
			s.flights.unwait(*key, w)
			if acquired {
				// Nothing to fetch after all: let go at once (its followers read the same entry).
				s.releaseNow(c, &lease{s: s, key: *key, hex: h, token: token})
			}
			if waited {
				s.figures.flightsFromStore.Add(1)
			}
			return nil, e, nil
		}
		if acquired {
			s.flights.unwait(*key, w)
			s.figures.flightsLed.Add(1)
			return s.flights.hold(&lease{s: s, key: *key, hex: h, token: token}), nil, nil
		}
		if !waited {
			waited = true
			s.figures.flightsWaited.Add(1)
			// Tell the leader's instance someone waits, so that it writes the answer at once. Best effort.
			pctx, pcancel := s.ctx()
			c.Do(pctx, c.B().Publish().Channel(s.channel()).Message("await "+h).Build())
			pcancel()
		}
		left := time.Until(deadline)
		if left <= 0 {
			s.flights.unwait(*key, w)
			s.figures.flightTimeouts.Add(1)
			return nil, nil, nil
		}
		pause := left
		switch {
		case ttl > 0:
			pause = min(pause, time.Duration(ttl)*time.Millisecond+20*time.Millisecond) // its expiry: the leader died
		case ttl == -2:
			pause = 0 // let go between our two commands: compete again now
		}
		err = nil
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-w.ch:
			case <-t.C:
			case <-ctx.Done():
				err = ctx.Err()
			case <-s.quit:
				err = db.ErrClosed
			}
			t.Stop()
		}
		s.flights.unwait(*key, w)
		if err != nil {
			return nil, nil, err
		}
	}
}

// pause waits d, or less when ctx ends or the store closes.
func (s *Store) pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return db.ErrClosed
	}
}

// hold records l as held: the renewer keeps it alive.
func (f *flights) hold(l *lease) *lease {
	f.mu.Lock()
	f.held[l.key] = l
	f.mu.Unlock()
	return l
}

// releaseNow lets go of l and tells the followers, in the caller's goroutine.
func (s *Store) releaseNow(c valkey.Client, l *lease) {
	ctx, cancel := s.ctx()
	defer cancel()
	releaseLua.run(ctx, c, []scriptCall{l.call()})
}

// written is told by WriteBatch which entries it wrote: the locks held for them go now, with "stored".
func (f *flights) written(ctx context.Context, s *Store, c valkey.Client, keys []db.Key) {
	if len(keys) == 0 {
		return
	}
	var done []*lease
	f.mu.Lock()
	for _, k := range keys {
		if l := f.held[k]; l != nil && l.storing.Load() != 0 {
			delete(f.held, k)
			done = append(done, l)
		}
	}
	f.mu.Unlock()
	if len(done) == 0 {
		return
	}
	calls := make([]scriptCall, len(done))
	for i, l := range done {
		calls[i] = l.call()
	}
	// Best effort: a lock not let go here expires by itself, and its followers look again then.
	releaseLua.run(ctx, c, calls)
}

// renewer renews the held locks every third of their TTL and lets go of ended ones as soon as they end.
// It is the store's goroutine; Close ends it, letting go of whatever is still held.
func (f *flights) renewer(s *Store) {
	tick := time.NewTicker(s.opts.LockTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-s.quit:
			f.mu.Lock()
			ends := f.ends
			for _, l := range f.held {
				ends = append(ends, l)
			}
			f.ends, f.held = nil, map[db.Key]*lease{}
			f.mu.Unlock()
			f.release(s, ends)
			return
		case <-f.wake:
			f.mu.Lock()
			ends := f.ends
			f.ends = nil
			f.mu.Unlock()
			f.release(s, ends)
		case <-tick.C:
			f.renew(s)
		}
	}
}

func (f *flights) release(s *Store, ls []*lease) {
	if len(ls) == 0 {
		return
	}
	s.mu.Lock()
	c := s.client
	s.mu.Unlock()
	if c == nil {
		return // they expire by themselves
	}
	calls := make([]scriptCall, len(ls))
	for i, l := range ls {
		calls[i] = l.call()
	}
	ctx, cancel := s.ctx()
	defer cancel()
	releaseLua.run(ctx, c, calls)
}

func (f *flights) renew(s *Store) {
	limit := time.Now().Add(-s.opts.LockTimeout).UnixMilli()
	var ls []*lease
	f.mu.Lock()
	for k, l := range f.held {
		if at := l.storing.Load(); at != 0 && at < limit {
			delete(f.held, k) // its answer never reached the store: let the lock expire
			continue
		}
		ls = append(ls, l)
	}
	f.mu.Unlock()
	if len(ls) == 0 {
		return
	}
	c, err := s.c()
	if err != nil {
		return
	}
	calls := make([]scriptCall, len(ls))
	ttl := strconv.FormatInt(s.opts.LockTTL.Milliseconds(), 10)
	for i, l := range ls {
		calls[i] = scriptCall{keys: []string{s.lockKey(l.hex)}, args: []string{l.token, ttl}}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	for i, r := range renewLua.run(ctx, c, calls) {
		if n, err := r.AsInt64(); err == nil && n == 0 {
			// Lost: it expired (a pause longer than its TTL) and may be another's now.
			f.mu.Lock()
			if f.held[ls[i].key] == ls[i] {
				delete(f.held, ls[i].key)
			}
			f.mu.Unlock()
		}
	}
}
