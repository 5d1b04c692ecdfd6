package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"llmcache/bench/fakeupstream"
	"llmcache/db/redisstore/redistest"
)

// sharedStore is a real redis-server for the shared-store tests: standalone, or a three-node cluster.
type sharedStore struct {
	t       *testing.T
	server  *redistest.Server  // standalone
	cluster *redistest.Cluster // or cluster
}

func newSharedStore(t *testing.T, cluster bool, opts redistest.Options) *sharedStore {
	t.Helper()
	if cluster {
		return &sharedStore{t: t, cluster: redistest.StartCluster(t)}
	}
	return &sharedStore{t: t, server: redistest.Start(t, opts)}
}

// configure points c at the store.
func (s *sharedStore) configure(c *fileConfig) {
	c.Store.Backend = "redis"
	if s.cluster != nil {
		c.Store.RedisAddrs, c.Store.RedisCluster = s.cluster.Addrs(), true
		return
	}
	c.Store.RedisURL = s.server.URL()
}

// cli runs redis-cli on the store (following cluster redirections).
func (s *sharedStore) cli(args ...string) string {
	s.t.Helper()
	var out string
	var err error
	if s.cluster != nil {
		out, err = s.cluster.Nodes[0].CLI(append([]string{"-c"}, args...)...)
	} else {
		out, err = s.server.CLI(args...)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// entryKey is the store's key of the entry with X-Cache-Key k.
func entryKey(k string) string { return "llmcache:e:{" + k + "}" }

// eachShape runs fn on a standalone store and on a cluster.
func eachShape(t *testing.T, fn func(t *testing.T, s *sharedStore)) {
	t.Run("standalone", func(t *testing.T) { fn(t, newSharedStore(t, false, redistest.Options{})) })
	t.Run("cluster", func(t *testing.T) { fn(t, newSharedStore(t, true, redistest.Options{})) })
}

// newSharedProxies starts n proxies sharing store, each with its own SQLite file (unused) and port, all in
// front of one fake upstream (returned), so that its call count is the whole fleet's.
func newSharedProxies(t *testing.T, n int, store *sharedStore, fakeOpts fakeupstream.Options, mutate func(i int, c *fileConfig)) ([]*testProxy, *fakeupstream.Server) {
	t.Helper()
	fake := startFake(t, fakeOpts)
	var out []*testProxy
	for i := range n {
		cfg := defaultConfig()
		cfg.Listen = "127.0.0.1:0"
		cfg.DatabaseURL = filepath.Join(t.TempDir(), "cache.db")
		cfg.APIEndpoints = []endpointConfig{{Name: "fake", URL: fake.URL(), Weight: 1}}
		cfg.UseCurl = os.Getenv("LLMCACHE_TEST_TRANSPORT") == "curl"
		store.configure(&cfg)
		if mutate != nil {
			mutate(i, &cfg)
		}
		p := &testProxy{t: t, cfg: cfg, Fake: fake, DBPath: cfg.DatabaseURL}
		p.start()
		t.Cleanup(func() { p.Stop() })
		out = append(out, p)
	}
	return out, fake
}

// sharedFigures decodes /stats store.shared.
type sharedFigures struct {
	Backend string `json:"backend"`
	Entries int64  `json:"entries"`
	Shared  struct {
		Up            bool   `json:"up"`
		LastError     string `json:"last_error"`
		ReadErrors    int64  `json:"read_errors"`
		DecodeErrors  int64  `json:"decode_errors"`
		Puts          int64  `json:"puts"`
		FlightsLed    int64  `json:"flights_led"`
		FlightsWaited int64  `json:"flights_waited"`
		FromStore     int64  `json:"flights_from_store"`
		DropsSent     int64  `json:"invalidations_sent"`
		DropsReceived int64  `json:"invalidations_received"`
		MemoryResets  int64  `json:"memory_resets"`
	} `json:"shared"`
}

func getShared(t *testing.T, p *testProxy) sharedFigures {
	t.Helper()
	_, body := p.Get("/stats")
	var s struct {
		Store sharedFigures `json:"store"`
	}
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("/stats: %v: %s", err, body)
	}
	return s.Store
}

// hitCount reads an entry's hit count from the store.
func (s *sharedStore) hitCount(key string) int64 {
	n, _ := strconv.ParseInt(s.cli("hget", entryKey(key), "n"), 10, 64)
	return n
}

func redistestOptions() redistest.Options { return redistest.Options{} }
