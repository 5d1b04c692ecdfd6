package main

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"llmcache/db/redisstore"

	"llmcache/httpx"
	"llmcache/httpx/proxy"
	"llmcache/pipeline"
	"llmcache/pipeline/wire"
)

// fileConfig is the schema of config.toml. Key names follow the Rust project
// Local_LLM_Cache so its users can move over. Defaults are set in defaultConfig.
type fileConfig struct {
	Listen                 string            `toml:"listen"`
	DatabaseURL            string            `toml:"database_url"`
	CacheMode              string            `toml:"cache_mode"`
	CacheVersion           int64             `toml:"cache_version"`
	CacheOverrideMode      bool              `toml:"cache_override_mode"`
	UseCurl                bool              `toml:"use_curl"`
	UseProxy               bool              `toml:"use_proxy"`
	EnableThinking         *bool             `toml:"enable_thinking"`
	ThinkingField          string            `toml:"thinking_field"`
	CacheHitPoolSize       int               `toml:"cache_hit_pool_size"`
	CacheMissPoolSize      int               `toml:"cache_miss_pool_size"`
	MaxConcurrentRequests  int               `toml:"max_concurrent_requests"`
	QueueTimeoutSeconds    float64           `toml:"queue_timeout_seconds"`
	MaxBodyBytes           int               `toml:"max_body_bytes"`
	MaxAnswerBytes         int64             `toml:"max_answer_bytes"`
	MaxHeaderBytes         int               `toml:"max_header_bytes"`
	ModelsTTLSeconds       float64           `toml:"models_ttl_seconds"`
	MaxEmbeddingInputs     int               `toml:"max_embedding_inputs"`
	ShutdownTimeoutSeconds float64           `toml:"shutdown_timeout_seconds"`
	MaxBatchFileBytes      int64             `toml:"max_batch_file_bytes"`
	BatchDir               string            `toml:"batch_dir"`
	BatchConcurrency       int               `toml:"batch_concurrency"`
	BatchRetentionDays     float64           `toml:"batch_retention_days"`
	AdminToken             string            `toml:"admin_token"`
	ClientKeys             []clientKeyConfig `toml:"client_keys"`
	LogFormat              string            `toml:"log_format"`
	StatsLogInterval       float64           `toml:"stats_log_interval_seconds"`
	MaxRetries             int               `toml:"max_retries"`
	RetryBackoffMs         int               `toml:"retry_backoff_ms"`
	EjectAfter             int               `toml:"eject_after"`
	EjectSeconds           float64           `toml:"eject_seconds"`
	StandbyOnSaturation    bool              `toml:"standby_on_saturation"`
	Cache                  cacheConfig       `toml:"cache"`
	IdleFlush              idleFlushConfig   `toml:"idle_flush"`
	CacheMaintenance       maintenanceConfig `toml:"cache_maintenance"`
	ContextTrim            contextTrimConfig `toml:"context_trim"`
	Store                  storeConfig       `toml:"store"`
	APIHeaders             map[string]string `toml:"api_headers"`
	APIEndpoints           []endpointConfig  `toml:"api_endpoints"`

	// chartTick and chartBucket override the stats actor's sampling for tests (not read from the file).
	chartTick, chartBucket time.Duration
	// batchRetryPause overrides how long a batch line refused as overloaded waits, for tests (not read from
	// the file).
	batchRetryPause time.Duration
	// trainAfter overrides the answers stored before the first compression dictionary is trained, for
	// tests (not read from the file; 0: db.DefaultTrainAfter).
	trainAfter int64
}

type cacheConfig struct {
	Enabled        bool     `toml:"enabled"`
	MaxItems       int      `toml:"max_items"`
	MaxBytes       int64    `toml:"max_bytes"`
	BatchWriteSize int      `toml:"batch_write_size"`
	FlushInterval  int      `toml:"flush_interval_ms"`
	IgnoreFields   []string `toml:"ignore_fields"`

	// MaxPendingBytes bounds the answers waiting for the disk (actors.WriterConfig.MaxPendingBytes).
	MaxPendingBytes int64 `toml:"max_pending_bytes"`
	// CompressBodies stores answers compressed (zstd with a dictionary trained from the cache's own
	// answers); false stores new ones as they are (db.Options.NoCompression).
	CompressBodies bool `toml:"compress_bodies"`
}

// storeConfig is [store]: SQLite (database_url) or a shared Redis/Valkey store.
type storeConfig struct {
	Backend            string   `toml:"backend"`
	RedisURL           string   `toml:"redis_url"`
	RedisAddrs         []string `toml:"redis_addrs"`
	RedisCluster       bool     `toml:"redis_cluster"`
	KeyPrefix          string   `toml:"key_prefix"`
	LockTimeoutSeconds float64  `toml:"lock_timeout_seconds"`
}

type idleFlushConfig struct {
	Enabled              bool    `toml:"enabled"`
	IdleTimeoutSeconds   float64 `toml:"idle_timeout_seconds"`
	CheckIntervalSeconds float64 `toml:"check_interval_seconds"`
}

type maintenanceConfig struct {
	Enabled          bool    `toml:"enabled"`
	IntervalHours    float64 `toml:"interval_hours"`
	RetentionDays    float64 `toml:"retention_days"`
	CleanupOnStartup bool    `toml:"cleanup_on_startup"`
	MinHitCount      int64   `toml:"min_hit_count"`
	MaxDBBytes       int64   `toml:"max_db_bytes"`
}

type contextTrimConfig struct {
	Enabled             bool   `toml:"enabled"`
	MaxContextTokens    int    `toml:"max_context_tokens"`
	Tokenizer           string `toml:"tokenizer"`
	ReserveOutputTokens int    `toml:"reserve_output_tokens"`
	OnOverflow          string `toml:"on_overflow"`
}

// clientKeyConfig is one of client_keys: llmcache's own API key (key, or key_env naming the environment
// variable that holds it) and the namespace its requests live in ("" = none).
type clientKeyConfig struct {
	Key       string `toml:"key"`
	KeyEnv    string `toml:"key_env"`
	Namespace string `toml:"namespace"`
}

type endpointConfig struct {
	Name                    string            `toml:"name"`
	URL                     string            `toml:"url"`
	Weight                  int               `toml:"weight"`
	Model                   string            `toml:"model"`
	Version                 int64             `toml:"version"`
	APIKey                  string            `toml:"api_key"`
	APIKeyEnv               string            `toml:"api_key_env"`
	Headers                 map[string]string `toml:"headers"`
	MaxConcurrent           int               `toml:"max_concurrent"`
	ConnectTimeoutSeconds   float64           `toml:"connect_timeout_seconds"`
	FirstByteTimeoutSeconds float64           `toml:"first_byte_timeout_seconds"`
	TimeoutSeconds          float64           `toml:"timeout_seconds"`
	MaxContextTokens        int               `toml:"max_context_tokens"`
	InsecureTLS             bool              `toml:"insecure_tls"`
	CAFile                  string            `toml:"ca_file"`
}

// defaultConfig is the file's defaults: every package's own defaults (proxy.DefaultConfig) in the file's
// units. config.toml repeats them, and TestDefaultsAgree checks that the three agree.
func defaultConfig() fileConfig {
	d := proxy.DefaultConfig()
	pc, hc, w, idle, maint := &d.Pipeline, &d.HTTP, &d.Writer, d.IdleFlush, d.Maintenance
	return fileConfig{
		Listen:                 d.Listen,
		DatabaseURL:            d.DatabaseURL,
		CacheMode:              hc.DefaultMode.String(),
		UseProxy:               d.Upstream.UseProxy,
		ThinkingField:          pc.ThinkingField,
		CacheHitPoolSize:       pc.HitPoolSize,
		CacheMissPoolSize:      pc.MissPoolSize,
		MaxConcurrentRequests:  pc.MaxConcurrentRequests,
		QueueTimeoutSeconds:    pc.QueueTimeout.Seconds(),
		MaxBodyBytes:           hc.MaxBodyBytes,
		MaxAnswerBytes:         pc.MaxAnswerBytes,
		MaxHeaderBytes:         hc.MaxHeaderBytes,
		ModelsTTLSeconds:       pc.ModelsTTL.Seconds(),
		MaxEmbeddingInputs:     pc.MaxEmbeddingInputs,
		ShutdownTimeoutSeconds: hc.ShutdownTimeout.Seconds(),
		MaxBatchFileBytes:      d.Batch.MaxFileBytes,
		BatchDir:               d.Batch.Dir,
		BatchConcurrency:       d.Batch.Concurrency,
		BatchRetentionDays:     d.Batch.Retention.Hours() / 24,
		LogFormat:              "text",
		StatsLogInterval:       d.Stats.LogEvery.Seconds(),
		MaxRetries:             pc.MaxRetries,
		RetryBackoffMs:         int(pc.RetryBackoff.Milliseconds()),
		EjectAfter:             pc.EjectAfter,
		EjectSeconds:           pc.EjectFor.Seconds(),
		StandbyOnSaturation:    pc.StandbyOnSaturation,
		Cache: cacheConfig{Enabled: pc.MemoryEnabled, MaxItems: pc.MemoryMaxItems, MaxBytes: pc.MemoryMaxBytes,
			BatchWriteSize: w.BatchSize, FlushInterval: int(w.FlushInterval.Milliseconds()), MaxPendingBytes: w.MaxPendingBytes,
			CompressBodies: !d.Store.SQLite.NoCompression},
		IdleFlush: idleFlushConfig{Enabled: true, IdleTimeoutSeconds: idle.Timeout.Seconds(), CheckIntervalSeconds: idle.CheckInterval.Seconds()},
		CacheMaintenance: maintenanceConfig{Enabled: true, IntervalHours: maint.Interval.Hours(), RetentionDays: maint.Retention.Hours() / 24,
			CleanupOnStartup: maint.OnStartup, MinHitCount: maint.MinHitCount, MaxDBBytes: maint.MaxDBBytes},
		ContextTrim: contextTrimConfig{Enabled: pc.Trim.Enabled, MaxContextTokens: pc.Trim.MaxContextTokens, Tokenizer: pc.Trim.Tokenizer,
			ReserveOutputTokens: pc.Trim.ReserveOutputTokens, OnOverflow: "reject"},
		APIHeaders: maps.Clone(pc.Headers),
		Store: storeConfig{Backend: d.Store.Backend, RedisURL: d.Store.Redis.URL, RedisAddrs: d.Store.Redis.Addrs, RedisCluster: d.Store.Redis.Cluster,
			KeyPrefix: d.Store.Redis.KeyPrefix, LockTimeoutSeconds: d.Store.Redis.LockTimeout.Seconds()},
	}
}

// loadConfig reads path over the defaults. A missing file is an error unless allowMissing. Unknown keys
// and wrong types stop the start with a message naming the key.
func loadConfig(path string, allowMissing bool) (fileConfig, error) {
	cfg := defaultConfig()
	data, err := os.ReadFile(path)
	if err != nil {
		if allowMissing && errors.Is(err, os.ErrNotExist) {
			return cfg, nil
		}
		return cfg, fmt.Errorf("cannot read config %q: %w (pass -config to name another file)", path, err)
	}
	// Endpoints in the file replace the defaults' (none), and api_headers likewise.
	cfg.APIHeaders = nil
	md, err := toml.Decode(string(data), &cfg)
	if err != nil {
		return cfg, fmt.Errorf("cannot parse config %q: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return cfg, fmt.Errorf("config %q: unknown key %s", path, strings.Join(keys, ", "))
	}
	if !md.IsDefined("api_headers") {
		cfg.APIHeaders = defaultConfig().APIHeaders
	}
	return cfg, nil
}

// applyEnv applies the environment overrides (DATABASE_URL, LISTEN, ...).
func applyEnv(cfg *fileConfig, getenv func(string) string) error {
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	integer := func(name string, dst *int) error {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("environment %s=%q: not a whole number", name, v)
			}
			*dst = n
		}
		return nil
	}
	boolean := func(name string, dst *bool) error {
		if v := getenv(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("environment %s=%q: not true or false", name, v)
			}
			*dst = b
		}
		return nil
	}
	str("DATABASE_URL", &cfg.DatabaseURL)
	str("LISTEN", &cfg.Listen)
	str("STORE_BACKEND", &cfg.Store.Backend)
	str("REDIS_URL", &cfg.Store.RedisURL)
	if v := getenv("CACHE_VERSION"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("environment CACHE_VERSION=%q: not a whole number", v)
		}
		cfg.CacheVersion = n
	}
	if v := getenv("ENABLE_THINKING"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("environment ENABLE_THINKING=%q: not true or false", v)
		}
		cfg.EnableThinking = &b
	}
	for _, err := range []error{
		boolean("USE_CURL", &cfg.UseCurl),
		boolean("USE_PROXY", &cfg.UseProxy),
		boolean("CACHE_OVERRIDE_MODE", &cfg.CacheOverrideMode),
		integer("CACHE_MISS_POOL_SIZE", &cfg.CacheMissPoolSize),
		integer("CACHE_HIT_POOL_SIZE", &cfg.CacheHitPoolSize),
		integer("MAX_CONCURRENT_REQUESTS", &cfg.MaxConcurrentRequests),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// validate refuses impossible values, naming the key.
func (c *fileConfig) validate() error {
	positive := []struct {
		key string
		v   float64
	}{
		{"cache_hit_pool_size", float64(c.CacheHitPoolSize)},
		{"cache_miss_pool_size", float64(c.CacheMissPoolSize)},
		{"max_concurrent_requests", float64(c.MaxConcurrentRequests)},
		{"queue_timeout_seconds", c.QueueTimeoutSeconds},
		{"max_body_bytes", float64(c.MaxBodyBytes)},
		{"max_answer_bytes", float64(c.MaxAnswerBytes)},
		{"max_embedding_inputs", float64(c.MaxEmbeddingInputs)},
		{"shutdown_timeout_seconds", c.ShutdownTimeoutSeconds},
		{"max_batch_file_bytes", float64(c.MaxBatchFileBytes)},
		{"cache.max_items", float64(c.Cache.MaxItems)},
		{"cache.max_bytes", float64(c.Cache.MaxBytes)},
		{"cache.batch_write_size", float64(c.Cache.BatchWriteSize)},
		{"cache.flush_interval_ms", float64(c.Cache.FlushInterval)},
		{"cache.max_pending_bytes", float64(c.Cache.MaxPendingBytes)},
		{"idle_flush.idle_timeout_seconds", c.IdleFlush.IdleTimeoutSeconds},
		{"idle_flush.check_interval_seconds", c.IdleFlush.CheckIntervalSeconds},
		{"cache_maintenance.interval_hours", c.CacheMaintenance.IntervalHours},
		{"context_trim.max_context_tokens", float64(c.ContextTrim.MaxContextTokens)},
		{"retry_backoff_ms", float64(c.RetryBackoffMs)},
		{"eject_after", float64(c.EjectAfter)},
		{"eject_seconds", c.EjectSeconds},
	}
	for _, p := range positive {
		if !(p.v > 0) || math.IsInf(p.v, 0) { // also NaN and inf, which TOML can spell
			return fmt.Errorf("config: %s must be greater than 0 (got %v)", p.key, p.v)
		}
	}
	if c.MaxHeaderBytes < 4096 {
		return fmt.Errorf("config: max_header_bytes must be at least 4096: ordinary requests need that much (got %d)", c.MaxHeaderBytes)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("config: log_format must be \"text\" or \"json\" (got %q)", c.LogFormat)
	}
	if !finiteNonNegative(c.StatsLogInterval) {
		return fmt.Errorf("config: stats_log_interval_seconds must be 0 (no summary line) or more (got %v)", c.StatsLogInterval)
	}
	if c.MaxRetries < 0 {
		return fmt.Errorf("config: max_retries must be 0 (no retries) or more (got %d)", c.MaxRetries)
	}
	switch c.ContextTrim.Tokenizer {
	case "o200k_base", "cl100k_base":
	default:
		return fmt.Errorf("config: context_trim.tokenizer must be \"o200k_base\" or \"cl100k_base\" (got %q)", c.ContextTrim.Tokenizer)
	}
	switch c.ContextTrim.OnOverflow {
	case "reject", "pass":
	default:
		return fmt.Errorf("config: context_trim.on_overflow must be \"reject\" or \"pass\" (got %q)", c.ContextTrim.OnOverflow)
	}
	if c.ContextTrim.ReserveOutputTokens < 0 {
		return fmt.Errorf("config: context_trim.reserve_output_tokens must be 0 (use the request's max_tokens) or more (got %d)", c.ContextTrim.ReserveOutputTokens)
	}
	if r := c.ContextTrim.ReserveOutputTokens; r > 0 {
		if r >= c.ContextTrim.MaxContextTokens {
			return fmt.Errorf("config: context_trim.reserve_output_tokens (%d) must be below context_trim.max_context_tokens (%d): no prompt would fit", r, c.ContextTrim.MaxContextTokens)
		}
		for i, e := range c.APIEndpoints {
			if e.MaxContextTokens > 0 && r >= e.MaxContextTokens {
				return fmt.Errorf("config: context_trim.reserve_output_tokens (%d) must be below api_endpoints[%d].max_context_tokens (%d): no prompt would fit", r, i, e.MaxContextTokens)
			}
		}
	}
	// Durations beyond ~31 years would overflow Go's time.Duration (and mean "never" anyway).
	for _, d := range []struct {
		key   string
		v     float64
		scale float64 // seconds per unit
	}{
		{"queue_timeout_seconds", c.QueueTimeoutSeconds, 1}, {"shutdown_timeout_seconds", c.ShutdownTimeoutSeconds, 1},
		{"models_ttl_seconds", c.ModelsTTLSeconds, 1}, {"eject_seconds", c.EjectSeconds, 1},
		{"stats_log_interval_seconds", c.StatsLogInterval, 1}, {"retry_backoff_ms", float64(c.RetryBackoffMs), 0.001},
		{"idle_flush.idle_timeout_seconds", c.IdleFlush.IdleTimeoutSeconds, 1},
		{"idle_flush.check_interval_seconds", c.IdleFlush.CheckIntervalSeconds, 1},
		{"cache.flush_interval_ms", float64(c.Cache.FlushInterval), 0.001},
		{"cache_maintenance.interval_hours", c.CacheMaintenance.IntervalHours, 3600},
		{"cache_maintenance.retention_days", c.CacheMaintenance.RetentionDays, 86400},
		{"batch_retention_days", c.BatchRetentionDays, 86400},
	} {
		if d.v*d.scale > maxSeconds {
			return fmt.Errorf("config: %s is too large (got %v; at most %v)", d.key, d.v, maxSeconds/d.scale)
		}
	}
	if !finiteNonNegative(c.ModelsTTLSeconds) {
		return fmt.Errorf("config: models_ttl_seconds must be 0 or more (got %v)", c.ModelsTTLSeconds)
	}
	if c.CacheMaintenance.MaxDBBytes < 0 {
		return fmt.Errorf("config: cache_maintenance.max_db_bytes must be 0 (no limit) or more (got %d)", c.CacheMaintenance.MaxDBBytes)
	}
	if !finiteNonNegative(c.CacheMaintenance.RetentionDays) {
		return fmt.Errorf("config: cache_maintenance.retention_days must be 0 or more (got %v)", c.CacheMaintenance.RetentionDays)
	}
	if c.BatchConcurrency < 0 {
		return fmt.Errorf("config: batch_concurrency must be 0 (half of max_concurrent_requests) or more (got %d)", c.BatchConcurrency)
	}
	if !finiteNonNegative(c.BatchRetentionDays) {
		return fmt.Errorf("config: batch_retention_days must be 0 (keep) or more (got %v)", c.BatchRetentionDays)
	}
	if _, err := pipeline.ParseMode(c.CacheMode); err != nil {
		return fmt.Errorf("config: cache_mode: %w", err)
	}
	switch c.ThinkingField {
	case "both", "top_level", "chat_template_kwargs":
	default:
		return fmt.Errorf("config: thinking_field must be \"both\", \"top_level\" or \"chat_template_kwargs\" (got %q)", c.ThinkingField)
	}
	if c.DatabaseURL == "" {
		return errors.New("config: database_url must name a file")
	}
	if err := c.Store.validate(); err != nil {
		return err
	}
	if len(c.APIEndpoints) == 0 {
		return errors.New("config: api_endpoints: at least one [[api_endpoints]] with a url is required (or run with -demo)")
	}
	if err := c.validateClientKeys(); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, e := range c.APIEndpoints {
		key := fmt.Sprintf("api_endpoints[%d]", i)
		if e.URL == "" {
			return fmt.Errorf("config: %s.url is required", key)
		}
		if err := wire.CheckBaseURL(e.URL); err != nil {
			return fmt.Errorf("config: %s.url %q cannot be a base URL: %v", key, pipeline.RedactURL(e.URL), err)
		}
		if e.Weight < 0 {
			return fmt.Errorf("config: %s.weight must be 0 (standby) or more (got %d)", key, e.Weight)
		}
		if e.MaxContextTokens < 0 {
			return fmt.Errorf("config: %s.max_context_tokens must be 0 (use context_trim.max_context_tokens) or more (got %d)", key, e.MaxContextTokens)
		}
		if e.CAFile != "" {
			if _, err := os.Stat(e.CAFile); err != nil {
				return fmt.Errorf("config: %s.ca_file: %w", key, err)
			}
		}
		if e.MaxConcurrent < 0 {
			return fmt.Errorf("config: %s.max_concurrent must be 0 (no own limit) or more (got %d)", key, e.MaxConcurrent)
		}
		for _, t := range []struct {
			k string
			v float64
		}{{"connect_timeout_seconds", e.ConnectTimeoutSeconds}, {"first_byte_timeout_seconds", e.FirstByteTimeoutSeconds}, {"timeout_seconds", e.TimeoutSeconds}} {
			if !finiteNonNegative(t.v) || t.v > maxSeconds {
				return fmt.Errorf("config: %s.%s must be more than 0, or 0 for the default (got %v)", key, t.k, t.v)
			}
		}
		name := e.Name
		if name == "" {
			name = pipeline.RedactURL(e.URL) // as the pipeline names it
		}
		if names[name] {
			return fmt.Errorf("config: %s.name %q is used by two endpoints; give each a distinct name", key, name)
		}
		names[name] = true
	}
	return nil
}

// validateClientKeys checks client_keys as far as the file goes (clientKeys reads the environment): each
// gives key or key_env, no namespace nests inside another key's, and every endpoint has a key of its own,
// since the clients' keys are not forwarded.
func (c *fileConfig) validateClientKeys() error {
	for i, k := range c.ClientKeys {
		switch {
		case (k.Key == "") == (k.KeyEnv == ""):
			return fmt.Errorf("config: client_keys[%d] needs key or key_env (one of them)", i)
		case strings.HasPrefix(k.Namespace, "/") || strings.HasSuffix(k.Namespace, "/"):
			return fmt.Errorf("config: client_keys[%d].namespace %q may not begin or end with /", i, k.Namespace)
		}
		for j, other := range c.ClientKeys[:i] {
			a, b := k.Namespace, other.Namespace
			if a != "" && b != "" && a != b && (strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")) {
				return fmt.Errorf("config: client_keys[%d].namespace %q and client_keys[%d].namespace %q nest: one key would read the other's entries", j, b, i, a)
			}
		}
	}
	if len(c.ClientKeys) == 0 {
		return nil
	}
	for i, e := range c.APIEndpoints {
		if e.APIKey == "" && e.APIKeyEnv == "" {
			name := e.Name
			if name == "" {
				name = pipeline.RedactURL(e.URL)
			}
			return fmt.Errorf("config: api_endpoints[%d] (%q) has no api_key or api_key_env: with client_keys set, clients' keys are not forwarded, so every endpoint needs its own", i, name)
		}
	}
	return nil
}

// clientKeys reads client_keys, the environment included. An unset key_env and a key given twice stop the
// start.
func (c *fileConfig) clientKeys(getenv func(string) string) ([]httpx.ClientKey, error) {
	var keys []httpx.ClientKey
	seen := map[string]int{}
	for i, k := range c.ClientKeys {
		key := k.Key
		if k.KeyEnv != "" {
			if key = getenv(k.KeyEnv); key == "" {
				return nil, fmt.Errorf("config: client_keys[%d].key_env names %s, which is not set", i, k.KeyEnv)
			}
		}
		if j, dup := seen[key]; dup {
			return nil, fmt.Errorf("config: client_keys[%d] and client_keys[%d] hold the same key", j, i)
		}
		seen[key] = i
		keys = append(keys, httpx.ClientKey{Key: key, Namespace: k.Namespace})
	}
	return keys, nil
}

// validate checks [store], naming the key. A redis_url is checked for its shape only: a store that cannot be
// reached at start is not an error (the proxy answers without it until it is back).
func (s *storeConfig) validate() error {
	switch s.Backend {
	case "sqlite":
		return nil
	case "redis":
	default:
		return fmt.Errorf("config: store.backend must be \"sqlite\" or \"redis\" (got %q)", s.Backend)
	}
	if s.RedisURL == "" && len(s.RedisAddrs) == 0 {
		return errors.New("config: store.backend = \"redis\" needs store.redis_url (or REDIS_URL), or store.redis_addrs with store.redis_cluster = true")
	}
	if len(s.RedisAddrs) > 0 && !s.RedisCluster {
		return errors.New("config: store.redis_addrs names cluster seed nodes: set store.redis_cluster = true (a single server goes in store.redis_url)")
	}
	if s.RedisURL != "" {
		u, err := url.Parse(s.RedisURL)
		if err != nil {
			return errors.New("config: store.redis_url cannot be parsed (want redis://[user:password@]host:port[/db])")
		}
		switch u.Scheme {
		case "redis", "rediss", "valkey", "valkeys", "unix":
		default:
			return fmt.Errorf("config: store.redis_url %s: the scheme must be redis, rediss, valkey, valkeys or unix", redisstore.Redact(s.RedisURL))
		}
	}
	for i, a := range s.RedisAddrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("config: store.redis_addrs[%d] %q must be host:port", i, a)
		}
	}
	if s.KeyPrefix == "" || strings.ContainsAny(s.KeyPrefix, "{}") {
		return fmt.Errorf("config: store.key_prefix must be set and may not hold '{' or '}' (got %q)", s.KeyPrefix)
	}
	if !(s.LockTimeoutSeconds > 0) || math.IsInf(s.LockTimeoutSeconds, 0) || s.LockTimeoutSeconds > maxSeconds {
		return fmt.Errorf("config: store.lock_timeout_seconds must be greater than 0 (got %v)", s.LockTimeoutSeconds)
	}
	return nil
}

// finiteNonNegative is what a duration in seconds may be: 0 or more, and not NaN or inf.
func finiteNonNegative(v float64) bool { return v >= 0 && !math.IsInf(v, 0) }

// maxSeconds bounds every duration in the file: about 31 years.
const maxSeconds = 1e9

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
