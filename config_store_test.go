package main

import (
	"strings"
	"testing"
)

// TestStoreConfigValidation: [store] mistakes stop the start with a message naming the key, and never the
// password of a redis_url.
func TestStoreConfigValidation(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(*storeConfig)
		want   string
	}{
		{"backend", func(s *storeConfig) { s.Backend = "postgres" }, "store.backend"},
		{"no url", func(s *storeConfig) { s.Backend = "redis" }, "store.redis_url"},
		{"addrs without cluster", func(s *storeConfig) { s.Backend, s.RedisAddrs = "redis", []string{"127.0.0.1:7000"} }, "store.redis_cluster"},
		{"bad addr", func(s *storeConfig) {
			s.Backend, s.RedisAddrs, s.RedisCluster = "redis", []string{"no-port"}, true
		}, "store.redis_addrs[0]"},
		{"scheme", func(s *storeConfig) { s.Backend, s.RedisURL = "redis", "http://:hunter2@host:6379" }, "store.redis_url"},
		{"unparsable", func(s *storeConfig) { s.Backend, s.RedisURL = "redis", "redis://:hunter2@ho st:6379" }, "store.redis_url"},
		{"prefix", func(s *storeConfig) { s.Backend, s.RedisURL, s.KeyPrefix = "redis", "redis://h:1", "a{b}" }, "store.key_prefix"},
		{"lock timeout", func(s *storeConfig) { s.Backend, s.RedisURL, s.LockTimeoutSeconds = "redis", "redis://h:1", 0 }, "store.lock_timeout_seconds"},
	} {
		cfg := defaultConfig()
		cfg.APIEndpoints = []endpointConfig{{URL: "http://127.0.0.1:1"}}
		c.mutate(&cfg.Store)
		err := cfg.validate()
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v; want an error naming %s without the password", c.name, err, c.want)
		}
	}
	// STORE_BACKEND and REDIS_URL override the file, and compose into the proxy's configuration.
	cfg := defaultConfig()
	cfg.APIEndpoints = []endpointConfig{{URL: "http://127.0.0.1:1"}}
	env := map[string]string{"STORE_BACKEND": "redis", "REDIS_URL": "redis://:hunter2@10.1.2.3:6380/2"}
	if err := applyEnv(&cfg, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	pc, err := cfg.proxyConfig(func(string) string { return "" }, nil)
	if err != nil || pc.Store.Backend != "redis" || pc.Store.Redis.URL != env["REDIS_URL"] || pc.Store.Redis.KeyPrefix != "llmcache:" {
		t.Fatalf("composed store config %+v, %v", pc.Store, err)
	}
	for _, a := range effectiveConfig(&cfg) {
		if s, ok := a.(string); ok && strings.Contains(s, "hunter2") {
			t.Fatalf("the start-up line holds the password: %v", a)
		}
	}
}
