package redisstore

import (
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"

	"llmcache/db"
)

// Events travel on one pub/sub channel, as text:
//
//	drop <origin> <key hex> <key hex>...   drop these keys from your memory layer (an admin delete)
//	dropall <origin>                       drop everything (a flush, or a filter: memory entries do not
//	                                       record namespace or model)
//	stored <key hex> | none <key hex>      a flight lock was let go: the answer is in the store, or not
//	await <key hex>                        an instance waits for this key's flight: its leader writes
//	                                       the answer at once rather than with the writer's next batch
//
// An instance ignores its own drops (it dropped them already). The subscription has a connection of its
// own; when it drops, this instance may miss a drop, so its memory layer is emptied, then again once the
// subscription is back (entries read while it was down may have been deleted meanwhile).
type events struct {
	mu     sync.Mutex
	onDrop func(keys []db.Key, all bool) // set by Listen; guarded by mu
	ready  chan struct{}                 // closed after Listen's first subscription attempt
	once   sync.Once                     // closes ready
}

func (ev *events) init() { ev.ready = make(chan struct{}) }

func (ev *events) tried() { ev.once.Do(func() { close(ev.ready) }) }

// dropChunk bounds the keys of one drop message.
const dropChunk = 1000

// Listen subscribes to the other instances' events: drop messages go to onDrop (the memory layer), and a
// subscription that drops calls onDrop(nil, true). It returns after the first attempt to subscribe (at most
// a few seconds), and keeps the subscription up, reconnecting, until Close.
func (s *Store) Listen(onDrop func(keys []db.Key, all bool)) {
	s.events.mu.Lock()
	s.events.onDrop = onDrop
	s.events.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.subscribeLoop()
	}()
	select {
	case <-s.events.ready:
	case <-time.After(s.opts.OpTimeout + time.Second):
	}
}

func (s *Store) drop(keys []db.Key, all bool) {
	s.events.mu.Lock()
	fn := s.events.onDrop
	s.events.mu.Unlock()
	if fn != nil {
		fn(keys, all)
	}
}

// subscribeLoop keeps the events subscription up. The store is "down" (calls fail at once) from a failed
// attempt to subscribe until one succeeds: a subscription that drops while the store still answers (a
// killed connection, a stall) is taken up again at once, without failing the calls meanwhile.
func (s *Store) subscribeLoop() {
	backoff := time.Duration(0)
	for {
		subscribed, err := s.subscribeOnce()
		if s.closed.Load() {
			return
		}
		// Whatever was deleted while nobody listened may still be in memory; waiting followers may have
		// missed their leader's message.
		s.figures.memoryResets.Add(1)
		s.drop(nil, true)
		s.flights.wakeAll()
		if subscribed {
			s.log.Warn("the shared store's events connection dropped; the memory layer was emptied", "store", s.where, "err", err)
			backoff = 0
		} else {
			s.setDown(err)
			s.events.tried()
			backoff = min(max(2*backoff, 100*time.Millisecond), 2*time.Second)
		}
		select {
		case <-s.quit:
			return
		case <-time.After(backoff):
		}
	}
}

// subscribeOnce subscribes and delivers events until the connection drops or the store closes; subscribed
// says whether the subscription came up.
func (s *Store) subscribeOnce() (subscribed bool, err error) {
	c, err := s.connect()
	if err != nil {
		return false, err
	}
	dc, release := c.Dedicate()
	defer release()
	wait := dc.SetPubSubHooks(valkey.PubSubHooks{OnMessage: func(m valkey.PubSubMessage) { s.handle(m.Message) }})
	ctx, cancel := s.ctx()
	err = dc.Do(ctx, dc.B().Subscribe().Channel(s.channel()).Build()).Error()
	cancel()
	if err != nil {
		return false, err
	}
	// The other connections may be ones the outage broke, still unnoticed (calls failed fast meanwhile):
	// a PING finds them out, so that the first write after the recovery does not fail on one.
	for range 3 {
		ctx, cancel := s.ctx()
		err = c.Do(ctx, c.B().Ping().Build()).Error()
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		return false, err
	}
	s.setUp()
	// Anything read from the store before now may have been deleted unheard.
	s.drop(nil, true)
	s.flights.wakeAll()
	s.events.tried()
	select {
	case err = <-wait:
	case <-s.quit:
		return true, db.ErrClosed
	}
	if err == nil {
		err = errDown
	}
	return true, err
}

// handle takes one event. It runs on the subscription's goroutine.
func (s *Store) handle(msg string) {
	verb, rest, _ := strings.Cut(msg, " ")
	switch verb {
	case "stored", "none", "await":
		var k db.Key
		if len(rest) != 64 {
			return
		}
		if _, err := hex.Decode(k[:], []byte(rest)); err != nil {
			return
		}
		if verb == "await" {
			s.flights.awaited(s, k)
		} else {
			s.flights.notify(k)
		}
	case "drop", "dropall":
		origin, list, _ := strings.Cut(rest, " ")
		if origin == s.origin {
			return
		}
		s.figures.dropsReceived.Add(1)
		if verb == "dropall" {
			s.drop(nil, true)
			return
		}
		keys := make([]db.Key, 0, len(list)/65+1)
		for _, h := range strings.Fields(list) {
			var k db.Key
			if len(h) == 64 {
				if _, err := hex.Decode(k[:], []byte(h)); err == nil {
					keys = append(keys, k)
					continue
				}
			}
			s.drop(nil, true) // a drop we cannot read: drop everything rather than keep a deleted answer
			return
		}
		s.drop(keys, false)
	}
}

// publishDrop tells the other instances to drop keys (all: everything) from their memory layers.
func (ev *events) publishDrop(s *Store, c valkey.Client, keys []db.Key, all bool) error {
	ctx, cancel := s.ctx()
	defer cancel()
	var msgs []string
	if all {
		msgs = []string{"dropall " + s.origin}
	}
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), dropChunk)]
		keys = keys[len(chunk):]
		var b strings.Builder
		b.WriteString("drop ")
		b.WriteString(s.origin)
		for i := range chunk {
			b.WriteByte(' ')
			b.WriteString(keyHex(&chunk[i]))
		}
		msgs = append(msgs, b.String())
	}
	cmds := make(valkey.Commands, len(msgs))
	for i, m := range msgs {
		cmds[i] = c.B().Publish().Channel(s.channel()).Message(m).Build()
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	s.figures.dropsSent.Add(int64(len(msgs)))
	return nil
}
