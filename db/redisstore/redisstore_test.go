package redisstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"llmcache/db"
	"llmcache/db/redisstore/redistest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t *testing.T, o Options) *Store {
	t.Helper()
	if o.Log == nil {
		o.Log = quiet
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func key(i int) db.Key { return sha256.Sum256([]byte("k" + strconv.Itoa(i))) }

func entry(i int) *db.Entry {
	return &db.Entry{Key: key(i), Body: []byte(`{"answer":` + strconv.Itoa(i) + `}`), ContentType: "application/json", Kind: "chat",
		Namespace: "ns" + strconv.Itoa(i%2), Model: "m" + strconv.Itoa(i%3), Endpoint: "ep", UpstreamModel: "um", Version: 3,
		CreatedAt: 1000 + int64(i)}
}

func get(t *testing.T, s *Store, k db.Key) (*db.Entry, bool) {
	t.Helper()
	r, _ := s.OpenReader()
	var e db.Entry
	found, err := r.Get(&k, &e)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	return &e, found
}

func write(t *testing.T, s *Store, b *db.Batch) {
	t.Helper()
	if err := s.WriteBatch(b); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
}

// stores are the two shapes every test runs on: a standalone server and a three-node cluster.
func stores(t *testing.T, fn func(t *testing.T, o Options, cli func(args ...string) string)) {
	t.Run("standalone", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{})
		fn(t, Options{URL: srv.URL()}, func(args ...string) string {
			out, err := srv.CLI(args...)
			if err != nil {
				t.Fatal(err)
			}
			return out
		})
	})
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t)
		fn(t, Options{Addrs: cl.Addrs(), Cluster: true}, func(args ...string) string {
			if args[0] == "client" { // connections are per node: every node's
				var out []string
				for _, n := range cl.Nodes {
					o, err := n.CLI(args...)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, o)
				}
				return strings.Join(out, "\n")
			}
			out, err := cl.Nodes[0].CLI(append([]string{"-c"}, args...)...)
			if err != nil {
				t.Fatal(err)
			}
			return out
		})
	})
}

func TestPutGetTouchExpire(t *testing.T) {
	stores(t, func(t *testing.T, o Options, cli func(...string) string) {
		s := open(t, o)
		var b db.Batch
		for i := range 50 {
			b.Puts = append(b.Puts, entry(i))
		}
		exp := entry(99)
		exp.ExpiresAt = time.Now().Add(time.Hour).UnixMilli()
		b.Puts = append(b.Puts, exp)
		write(t, s, &b)
		for i := range 50 {
			e, found := get(t, s, key(i))
			want := entry(i)
			if !found || string(e.Body) != string(want.Body) || e.Namespace != want.Namespace || e.Model != want.Model ||
				e.Version != 3 || e.CreatedAt != want.CreatedAt || e.Kind != "chat" || e.UpstreamModel != "um" || e.HitCount != 0 {
				t.Fatalf("entry %d: found %v, %+v", i, found, e)
			}
		}
		if _, found := get(t, s, key(1000)); found {
			t.Fatal("an absent key was found")
		}
		// The TTL is the store's own expiry.
		ttl, _ := strconv.ParseInt(cli("pttl", s.entryKey(keyHex(&exp.Key))), 10, 64)
		if ttl < 3500_000 || ttl > 3600_000 {
			t.Fatalf("entry with a TTL of an hour has PTTL %d", ttl)
		}
		if got := cli("pttl", s.entryKey(keyHex(&b.Puts[0].Key))); got != "-1" {
			t.Fatalf("entry without TTL has PTTL %s", got)
		}
		// Hit counts add up; a touch of an absent key makes no entry.
		write(t, s, &db.Batch{Touches: []db.Touch{{Key: key(1), Hits: 2, At: 5000}, {Key: key(1000), Hits: 1, At: 1}}})
		write(t, s, &db.Batch{Touches: []db.Touch{{Key: key(1), Hits: 3, At: 4000}}})
		if e, _ := get(t, s, key(1)); e.HitCount != 5 || e.LastHitAt != 5000 {
			t.Fatalf("hits %d at %d, want 5 at 5000", e.HitCount, e.LastHitAt)
		}
		if got := cli("exists", s.entryKey(keyHex(new(key(1000))))); got != "0" {
			t.Fatalf("a touch made an entry for an absent key: exists %s", got)
		}
		// A fresh answer replaces the entry, its hits and its expiry.
		fresh := entry(99)
		fresh.Body = []byte(`{"fresh":true}`)
		write(t, s, &db.Batch{Puts: []*db.Entry{fresh}})
		if e, _ := get(t, s, key(99)); string(e.Body) != `{"fresh":true}` || e.ExpiresAt != 0 {
			t.Fatalf("replaced entry: %+v", e)
		}
		if got := cli("pttl", s.entryKey(keyHex(&exp.Key))); got != "-1" {
			t.Fatalf("a replaced entry kept the old TTL: PTTL %s", got)
		}
		st, err := s.Stats()
		if err != nil || st.Entries != 51 || st.FileBytes <= 0 {
			t.Fatalf("Stats = %+v, %v; want 51 keys and some bytes", st, err)
		}
	})
}

func TestGarbageIsAMissAndAnError(t *testing.T) {
	stores(t, func(t *testing.T, o Options, cli func(...string) string) {
		s := open(t, o)
		write(t, s, &db.Batch{Puts: []*db.Entry{entry(1), entry(2), entry(3)}})
		r, _ := s.OpenReader()
		k1, k2, k3, k4 := key(1), key(2), key(3), key(4)
		cli("hset", s.entryKey(keyHex(&k1)), "b", `{"answer":9}`)          // the body changed under its record
		cli("set", s.entryKey(keyHex(&k3)), "not a hash")                  // another type at the key
		cli("hset", s.entryKey(keyHex(&k4)), "m", "LLE1garbage", "b", "x") // a record that does not decode
		for _, k := range []db.Key{k1, k3, k4} {
			var e db.Entry
			found, err := r.Get(&k, &e)
			if found || err == nil {
				t.Fatalf("garbage at %x: found %v, err %v", k[:4], found, err)
			}
		}
		if got := s.figures.decodeErrors.Load(); got != 3 {
			t.Fatalf("decode errors = %d, want 3", got)
		}
		// A record copied under another key is refused too.
		c, _ := s.c()
		ctx := context.Background()
		rec, _ := c.Do(ctx, c.B().Hget().Key(s.entryKey(keyHex(&k2))).Field("m").Build()).ToString()
		body, _ := c.Do(ctx, c.B().Hget().Key(s.entryKey(keyHex(&k2))).Field("b").Build()).ToString()
		if err := c.Do(ctx, c.B().Hset().Key(s.entryKey(keyHex(new(key(7))))).FieldValue().FieldValue("m", rec).FieldValue("b", body).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		var e db.Entry
		if found, err := r.Get(new(key(7)), &e); found || !errors.Is(err, errGarbage) {
			t.Fatalf("a record under another key: found %v, err %v", found, err)
		}
		// The writer replaces garbage with a fresh answer.
		write(t, s, &db.Batch{Puts: []*db.Entry{entry(3)}})
		if e, found := get(t, s, k3); !found || string(e.Body) != `{"answer":3}` {
			t.Fatalf("garbage not replaced: %v %q", found, e.Body)
		}
	})
}

func TestDeleteAndExportImport(t *testing.T) {
	stores(t, func(t *testing.T, o Options, cli func(...string) string) {
		s := open(t, o)
		var b db.Batch
		for i := range 30 {
			b.Puts = append(b.Puts, entry(i))
		}
		write(t, s, &b)
		if n, err := s.Delete(db.Filter{Keys: []db.Key{key(0), key(1), key(1000)}}); err != nil || n != 2 {
			t.Fatalf("delete keys = %d, %v; want 2", n, err)
		}
		ns := "ns1"
		// ns1 holds the odd entries; m0 those divisible by 3: odd and divisible by 3 below 30, 1 excepted.
		if n, err := s.Delete(db.Filter{Namespace: &ns, Model: "m0"}); err != nil || n != 5 {
			t.Fatalf("delete ns1+m0 = %d, %v; want 5", n, err)
		}
		if n, err := s.Delete(db.Filter{OlderThan: 1010}); err != nil || n != 6 {
			t.Fatalf("delete older than = %d, %v; want 6 (2..9 without 3 and 9)", n, err)
		}
		var exported []db.ExportedEntry
		if err := s.Export(nil, func(e *db.ExportedEntry) error {
			x := *e
			x.Body = append([]byte(nil), e.Body...)
			exported = append(exported, x)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(exported) != 17 {
			t.Fatalf("exported %d entries, want 17", len(exported))
		}
		kinds, nss, err := s.Breakdown()
		if err != nil || len(kinds) != 1 || kinds[0].Entries != 17 || len(nss) != 2 {
			t.Fatalf("breakdown %v %v %v", kinds, nss, err)
		}
		if n, err := s.Delete(db.Filter{All: true}); err != nil || n != 17 {
			t.Fatalf("delete all = %d, %v", n, err)
		}
		if err := s.Import(exported); err != nil {
			t.Fatal(err)
		}
		for _, x := range exported {
			var k db.Key
			copy(k[:], mustHex(t, x.Key))
			if e, found := get(t, s, k); !found || string(e.Body) != string(x.Body) || e.CreatedAt != x.CreatedAt {
				t.Fatalf("imported %s: %v %+v", x.Key, found, e)
			}
		}
	})
}

func mustHex(t *testing.T, h string) []byte {
	t.Helper()
	var k db.Key
	for i := range k {
		n, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		if err != nil {
			t.Fatal(err)
		}
		k[i] = byte(n)
	}
	return k[:]
}

// dropLog records the drops an instance is told about.
type dropLog struct {
	mu    sync.Mutex
	keys  []db.Key
	alls  int
	calls int
}

func (d *dropLog) on(keys []db.Key, all bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if all {
		d.alls++
	}
	d.keys = append(d.keys, keys...)
}

func (d *dropLog) snapshot() ([]db.Key, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]db.Key(nil), d.keys...), d.alls
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeletesReachOtherInstances(t *testing.T) {
	stores(t, func(t *testing.T, o Options, cli func(...string) string) {
		a, b := open(t, o), open(t, o)
		var da, dbl dropLog
		a.Listen(da.on)
		b.Listen(dbl.on)
		_, allsAtStart := dbl.snapshot()
		write(t, a, &db.Batch{Puts: []*db.Entry{entry(1), entry(2)}})
		if _, err := a.Delete(db.Filter{Keys: []db.Key{key(1)}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "b to be told to drop key 1", func() bool { k, _ := dbl.snapshot(); return len(k) == 1 && k[0] == key(1) })
		ns := "ns0"
		if _, err := a.Delete(db.Filter{Namespace: &ns}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "b to drop everything after a filter delete", func() bool { _, n := dbl.snapshot(); return n == allsAtStart+1 })
		if k, _ := da.snapshot(); len(k) != 0 {
			t.Fatalf("a was told its own drop: %d keys", len(k))
		}
		// An instance whose events connection drops empties its memory, and again once it is back.
		cli("client", "kill", "type", "pubsub")
		waitFor(t, "b to drop everything when its subscription dropped", func() bool { _, n := dbl.snapshot(); return n >= allsAtStart+3 })
		waitFor(t, "b to be up again", func() bool { return b.Health() == nil })
	})
}

func TestFlightsAcrossInstances(t *testing.T) {
	stores(t, func(t *testing.T, o Options, cli func(...string) string) {
		o.LockTTL = 600 * time.Millisecond
		a, b := open(t, o), open(t, o)
		a.Listen(func([]db.Key, bool) {})
		b.Listen(func([]db.Key, bool) {})
		ctx := context.Background()
		any := func(*db.Entry) bool { return true }
		k := key(1)
		la, e, err := a.Lead(ctx, &k, any)
		if la == nil || e != nil || err != nil {
			t.Fatalf("first Lead = %v, %v, %v; want a lease", la, e, err)
		}
		type result struct {
			l   db.Lease
			e   *db.Entry
			err error
		}
		got := make(chan result, 1)
		go func() {
			l, e, err := b.Lead(ctx, &k, any)
			got <- result{l, e, err}
		}()
		waitFor(t, "b to wait", func() bool { return b.figures.flightsWaited.Load() == 1 })
		// The leader outlives its lock's TTL several times: renewed, b keeps waiting.
		time.Sleep(3 * o.LockTTL) // a duration to outlive, not a wait for a condition
		select {
		case r := <-got:
			t.Fatalf("b stopped waiting while a held the lock: %+v", r)
		default:
		}
		la.Storing()
		la.End()
		write(t, a, &db.Batch{Puts: []*db.Entry{entry(1)}})
		r := <-got
		if r.l != nil || r.e == nil || string(r.e.Body) != `{"answer":1}` || r.err != nil {
			t.Fatalf("follower got %+v; want the stored entry", r)
		}
		// A leader that ends without an answer hands the lock to a follower.
		k2 := key(2)
		la, _, _ = a.Lead(ctx, &k2, any)
		go func() {
			l, e, err := b.Lead(ctx, &k2, any)
			got <- result{l, e, err}
		}()
		waitFor(t, "b to wait again", func() bool { return b.figures.flightsWaited.Load() == 2 })
		la.End()
		if r := <-got; r.l == nil || r.e != nil || r.err != nil {
			t.Fatalf("follower after a leader without answer got %+v; want the lock", r)
		} else {
			r.l.End()
		}
		// A leader that dies (its lock no longer renewed) lets a follower take over once the lock expires.
		k3 := key(3)
		cli("set", a.lockKey(keyHex(&k3)), "dead-instance:1", "px", "500")
		began := time.Now()
		l, e, err := b.Lead(ctx, &k3, any)
		if l == nil || e != nil || err != nil {
			t.Fatalf("after a dead leader: %v %v %v; want the lock", l, e, err)
		}
		if took := time.Since(began); took > 10*time.Second {
			t.Fatalf("took over after %v", took)
		}
		l.End()
		// lock_timeout bounds the whole wait: past it, go upstream without the lock.
		c := open(t, Options{URL: o.URL, Addrs: o.Addrs, LockTimeout: 300 * time.Millisecond, LockTTL: 10 * time.Second})
		k4 := key(4)
		cli("set", a.lockKey(keyHex(&k4)), "slow-instance:1", "px", "10000")
		l, e, err = c.Lead(ctx, &k4, any)
		if l != nil || e != nil || err != nil || c.figures.flightTimeouts.Load() != 1 {
			t.Fatalf("past lock_timeout: %v %v %v", l, e, err)
		}
	})
}

func TestUnreachableStoreFailsFast(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s := open(t, Options{URL: srv.URL()})
	var d dropLog
	s.Listen(d.on)
	write(t, s, &db.Batch{Puts: []*db.Entry{entry(1)}})
	srv.Stop()
	waitFor(t, "the store to be seen down", func() bool { return s.Health() != nil })
	r, _ := s.OpenReader()
	var e db.Entry
	k := key(1)
	began := time.Now()
	if found, err := r.Get(&k, &e); found || err == nil {
		t.Fatalf("Get on a stopped store: %v %v", found, err)
	}
	if err := s.WriteBatch(&db.Batch{Puts: []*db.Entry{entry(2)}}); err == nil {
		t.Fatal("WriteBatch on a stopped store succeeded")
	}
	if took := time.Since(began); took > time.Second {
		t.Fatalf("calls on a store known to be down took %v", took)
	}
	if !strings.Contains(s.Health().Error(), srv.Addr) {
		t.Fatalf("health: %v", s.Health())
	}
	srv.Restart()
	waitFor(t, "the store to be back", func() bool { return s.Health() == nil })
	write(t, s, &db.Batch{Puts: []*db.Entry{entry(2)}})
	if _, found := get(t, s, key(2)); !found {
		t.Fatal("write after recovery not found")
	}
}

func TestPasswordNeverInMessages(t *testing.T) {
	const secret = "s3cret-Pa55"
	srv := redistest.Start(t, redistest.Options{Password: secret})
	if _, err := Open(Options{URL: "redis://:wrong-" + secret + "@" + srv.Addr, Log: quiet}); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := Open(Options{URL: "redis://:" + secret + "@bad host:1/", Log: quiet}); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("unparsable URL: %v", err)
	}
	s := open(t, Options{URL: srv.URL()})
	write(t, s, &db.Batch{Puts: []*db.Entry{entry(1)}})
	if strings.Contains(s.Where(), secret) || Redact(srv.URL()) != "redis://:***@"+srv.Addr {
		t.Fatalf("where %q, redacted %q", s.Where(), Redact(srv.URL()))
	}
}
