package main

import (
	"encoding/hex"
	"strconv"
	"testing"
)

// Versions: entries are stamped max(cache_version, endpoint.version); with
// cache_override_mode an entry below either is a miss whose fresh answer replaces it (nothing deleted up
// front); without it every entry is served.

// version returns the version column of the entry stored under keyHex.
func (d *cacheDB) version(keyHex string) (int64, bool) {
	d.t.Helper()
	key, err := hex.DecodeString(keyHex)
	if err != nil || len(key) != 32 {
		d.t.Fatalf("bad key %q", keyHex)
	}
	st, _, err := d.c.Prepare(`SELECT version FROM entries WHERE key = ?1`)
	if err != nil {
		d.t.Fatalf("cannot read version: %v", err)
	}
	defer st.Close()
	if err := st.BindBlob(1, key); err != nil {
		d.t.Fatal(err)
	}
	if !st.Step() {
		if err := st.Err(); err != nil {
			d.t.Fatalf("cannot read version: %v", err)
		}
		return 0, false
	}
	return st.ColumnInt64(0), true
}

// waitVersion waits until the row under keyHex is on disk with version want.
func (d *cacheDB) waitVersion(what, keyHex string, want int64) {
	d.t.Helper()
	var got int64
	var ok bool
	waitFor(d.t, what+": row with version "+strconv.FormatInt(want, 10), func() bool {
		got, ok = d.version(keyHex)
		return ok && got == want
	})
}

var versionPrompts = []string{"versions one", "versions two", "versions three"}

// fillVersions sends each of versionPrompts once (each a MISS) and waits until every row is on disk with
// version want. It returns the keys.
func fillVersions(t *testing.T, p *testProxy, d *cacheDB, want int64) []string {
	t.Helper()
	keys := make([]string, len(versionPrompts))
	for i, c := range versionPrompts {
		r, b := p.Post("/v1/chat/completions", chatBody(c))
		expectCache(t, "fill "+c, r, b, 200, "MISS")
		keys[i] = cacheKey(t, r)
	}
	for i, k := range keys {
		d.waitVersion("fill "+versionPrompts[i], k, want)
	}
	return keys
}

// expectRefetch checks that each old entry is a MISS once (one upstream call, row replaced with version
// want, the row count unchanged) and a HIT afterwards.
func expectRefetch(t *testing.T, p *testProxy, d *cacheDB, keys []string, want int64) {
	t.Helper()
	rows := d.count()
	for i, c := range versionPrompts {
		calls := p.Fake.CallsTo("chat")
		r, b := p.Post("/v1/chat/completions", chatBody(c))
		expectCache(t, "stale "+c, r, b, 200, "MISS")
		if k := cacheKey(t, r); k != keys[i] {
			t.Fatalf("%s: key changed with the version: %s, was %s", c, k, keys[i])
		}
		expectCalls(t, p, calls+1)
		if err := checkEcho(b, c); err != nil {
			t.Fatal(err)
		}
		d.waitVersion("refetch "+c, keys[i], want)
		d.mustRow(keys[i], b)
		if n := d.count(); n != rows {
			t.Fatalf("after refetching %q: %d rows, want %d (the fresh answer replaces the old row)", c, n, rows)
		}

		r, b2 := p.Post("/v1/chat/completions", chatBody(c))
		expectCache(t, "fresh "+c, r, b2, 200, "HIT")
		if string(b2) != string(b) {
			t.Fatalf("%s: hit body differs from the refetched answer", c)
		}
		expectCalls(t, p, calls+1)
	}
}

// expectHits checks that every prompt is served from the cache without an upstream call, and that the
// rows keep version want.
func expectHits(t *testing.T, p *testProxy, d *cacheDB, keys []string, want int64) {
	t.Helper()
	calls := p.Fake.CallsTo("chat")
	for i, c := range versionPrompts {
		r, b := p.Post("/v1/chat/completions", chatBody(c))
		expectCache(t, "old "+c, r, b, 200, "HIT")
		if err := checkEcho(b, c); err != nil {
			t.Fatal(err)
		}
		if v, ok := d.version(keys[i]); !ok || v != want {
			t.Fatalf("%s: row version %d (present %v), want %d", c, v, ok, want)
		}
	}
	expectCalls(t, p, calls)
}

// TestE2EVersionsOverrideCacheVersion: with cache_override_mode, raising cache_version makes every old
// entry a miss once; its fresh answer replaces the row (version 1) and is served from then on, also after
// another restart.
func TestE2EVersionsOverrideCacheVersion(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.CacheOverrideMode = true })
	d := openCacheDB(t, p.DBPath)
	keys := fillVersions(t, p, d, 0)
	expectCalls(t, p, int64(len(versionPrompts)))

	p.cfg.CacheVersion = 1
	p.Restart()
	// Gradual update: nothing is deleted up front.
	if n := d.count(); n != len(keys) {
		t.Fatalf("right after the restart with cache_version = 1: %d rows, want %d", n, len(keys))
	}
	for i, k := range keys {
		if v, ok := d.version(k); !ok || v != 0 {
			t.Fatalf("%s: before any request, row version %d (present %v), want the old 0", versionPrompts[i], v, ok)
		}
	}
	expectRefetch(t, p, d, keys, 1)

	// The refreshed rows are current for the next process too.
	p.Restart()
	expectHits(t, p, d, keys, 1)
}

// TestE2EVersionsOverrideEndpointVersion: with cache_override_mode, raising the version of the endpoint
// that answered makes its entries misses once; the rows are stamped with the endpoint's version.
func TestE2EVersionsOverrideEndpointVersion(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.CacheOverrideMode = true; c.CacheVersion = 1 })
	d := openCacheDB(t, p.DBPath)
	keys := fillVersions(t, p, d, 1)

	p.cfg.APIEndpoints[0].Version = 2
	p.Restart()
	if n := d.count(); n != len(keys) {
		t.Fatalf("right after the restart with version = 2: %d rows, want %d", n, len(keys))
	}
	expectRefetch(t, p, d, keys, 2)

	p.Restart()
	expectHits(t, p, d, keys, 2)
}

// TestE2EVersionsNoOverride: without cache_override_mode, entries of an older cache_version or endpoint
// version are served as they are; versions are only recorded.
func TestE2EVersionsNoOverride(t *testing.T) {
	p := newTestProxy(t, nil)
	d := openCacheDB(t, p.DBPath)
	keys := fillVersions(t, p, d, 0)

	p.cfg.CacheVersion = 1
	p.Restart()
	expectHits(t, p, d, keys, 0)

	p.cfg.APIEndpoints[0].Version = 3
	p.Restart()
	expectHits(t, p, d, keys, 0)

	// A new entry is stamped with max(cache_version, endpoint version).
	r, b := p.Post("/v1/chat/completions", chatBody("versions new"))
	expectCache(t, "new", r, b, 200, "MISS")
	d.waitVersion("new entry", cacheKey(t, r), 3)
}

// TestE2EVersionsEnvironment: CACHE_VERSION and CACHE_OVERRIDE_MODE in the environment override the
// file: the real binary, whose file says cache_version = 0 and no override, refetches an old entry once.
func TestE2EVersionsEnvironment(t *testing.T) {
	fake, dbPath, cfgPath := binFixture(t, "cache_version = 0\ncache_override_mode = false", "")
	const content = "versions from the environment"

	p := startBin(t, cfgPath)
	r := send(loadClient, p.chatURL(), chatBody(content))
	if r.err != nil || r.status != 200 || r.header.Get("X-Cache") != "MISS" {
		t.Fatalf("first: status %d, X-Cache %q, err %v", r.status, r.header.Get("X-Cache"), r.err)
	}
	key := r.header.Get("X-Cache-Key")
	p.stop()
	d := openCacheDB(t, dbPath)
	if v, ok := d.version(key); !ok || v != 0 {
		t.Fatalf("row version %d (present %v), want 0", v, ok)
	}

	// Control: the file alone serves the old entry.
	p = startBin(t, cfgPath)
	r = send(loadClient, p.chatURL(), chatBody(content))
	if r.err != nil || r.status != 200 || r.header.Get("X-Cache") != "HIT" {
		t.Fatalf("with the file alone: status %d, X-Cache %q, err %v; want a HIT", r.status, r.header.Get("X-Cache"), r.err)
	}
	p.stop()
	if got := fake.CallsTo("chat"); got != 1 {
		t.Fatalf("upstream chat calls = %d, want 1", got)
	}

	p = startBin(t, cfgPath, "CACHE_VERSION=1", "CACHE_OVERRIDE_MODE=true")
	r = send(loadClient, p.chatURL(), chatBody(content))
	if r.err != nil || r.status != 200 || r.header.Get("X-Cache") != "MISS" {
		t.Fatalf("with CACHE_VERSION=1 CACHE_OVERRIDE_MODE=true: status %d, X-Cache %q, err %v; want a MISS (refetch)",
			r.status, r.header.Get("X-Cache"), r.err)
	}
	if got := fake.CallsTo("chat"); got != 2 {
		t.Fatalf("upstream chat calls = %d, want 2 (one refetch)", got)
	}
	r = send(loadClient, p.chatURL(), chatBody(content))
	if r.err != nil || r.status != 200 || r.header.Get("X-Cache") != "HIT" {
		t.Fatalf("after the refetch: status %d, X-Cache %q, err %v; want a HIT", r.status, r.header.Get("X-Cache"), r.err)
	}
	if got := fake.CallsTo("chat"); got != 2 {
		t.Fatalf("upstream chat calls = %d, want 2", got)
	}
	p.stop()
	if v, ok := d.version(key); !ok || v != 1 {
		t.Fatalf("after the refetch, row version %d (present %v), want 1", v, ok)
	}
}
