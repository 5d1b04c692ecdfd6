package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"llmcache/pipeline/wire"
)

// Mode is how a request may use the cache.
type Mode uint8

const (
	ModeReadWrite Mode = iota // look up, fetch on a miss, store
	ModeReadOnly              // look up only: a miss is a 404 cache_miss, upstream is never called
	ModeWriteOnly             // never serve from the cache, fetch and store
	ModeOff                   // neither look up nor store
)

// ParseMode reads the config and header spelling of a mode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "read_write":
		return ModeReadWrite, nil
	case "read_only":
		return ModeReadOnly, nil
	case "write_only":
		return ModeWriteOnly, nil
	case "off":
		return ModeOff, nil
	}
	return 0, fmt.Errorf("unknown cache mode %q (want read_write, read_only, write_only or off)", s)
}

func (m Mode) String() string {
	switch m {
	case ModeReadOnly:
		return "read_only"
	case ModeWriteOnly:
		return "write_only"
	case ModeOff:
		return "off"
	}
	return "read_write"
}

// Thinking is the effective enable_thinking of a request: it is part of the cache key.
type Thinking uint8

const (
	ThinkingAbsent Thinking = iota
	ThinkingFalse
	ThinkingTrue
)

// Endpoint is one upstream from [[api_endpoints]]. The embedded Target is what the
// transports see of it.
type Endpoint struct {
	wire.Target
	Weight           int               // 0 = standby
	Model            string            // overrides the request's model upstream when set
	Version          int64             // entries it answers are stamped max(cache_version, Version)
	APIKey           string            // sent as Authorization: Bearer; empty = forward the client's Authorization
	Headers          map[string]string // added to every call to this endpoint
	MaxConcurrent    int               // 0 = only the global limit applies
	MaxContextTokens int               // context trimming budget for this endpoint; 0 = the global one
}

// TrimConfig is [context_trim]: chat requests are cut to fit the model's window on the miss path.
type TrimConfig struct {
	Enabled             bool
	MaxContextTokens    int    // the window; an endpoint's MaxContextTokens wins
	ReserveOutputTokens int    // 0 = the request's max_completion_tokens or max_tokens
	Tokenizer           string // "o200k_base" (default) or "cl100k_base"
	Pass                bool   // on_overflow = "pass": send a request that cannot fit untrimmed instead of a 400
}

// Config holds the knobs of the request pipeline. Start from DefaultConfig: every default is stated there.
type Config struct {
	HitPoolSize           int           // cache_hit_pool_size: hits answered at once
	MissPoolSize          int           // cache_miss_pool_size: SQLite reads and request preparations at once
	MemoryShards          int           // shards of the memory stage
	MaxConcurrentRequests int           // max_concurrent_requests: upstream calls in flight over all endpoints
	QueueTimeout          time.Duration // queue_timeout_seconds: how long a request may wait for a slot anywhere
	ModelsTTL             time.Duration // models_ttl_seconds: how long a models list is served before a refetch
	MaxEmbeddingInputs    int           // max_embedding_inputs: inputs allowed in one embeddings request
	MaxAnswerBytes        int64         // max_answer_bytes: larger answers are passed to the client, not stored
	// RecentGrace is how long the scheduler answers from an answer it just stored, covering the writer's
	// delay for a request that looked in SQLite a moment before the answer was written there.
	RecentGrace time.Duration

	MemoryEnabled  bool  // cache.enabled: the memory layer (SQLite serves either way)
	MemoryMaxItems int   // cache.max_items
	MemoryMaxBytes int64 // cache.max_bytes

	CacheVersion   int64             // cache_version
	OverrideMode   bool              // cache_override_mode: entries below the current version are stale
	EnableThinking Thinking          // enable_thinking; ThinkingAbsent = pass the client's value through
	ThinkingField  string            // thinking_field: "both", "top_level" or "chat_template_kwargs"
	IgnoreFields   []string          // cache.ignore_fields: more top-level fields left out of the key
	Headers        map[string]string // api_headers: added to every upstream call
	Endpoints      []Endpoint

	MaxRetries          int           // max_retries: further attempts after a retryable failure
	RetryBackoff        time.Duration // retry_backoff_ms: the first retry's base delay, doubled each time
	EjectAfter          int           // eject_after: consecutive failed requests that eject an endpoint
	EjectFor            time.Duration // eject_seconds: how long an ejected endpoint rests before a probe
	StandbyOnSaturation bool          // standby_on_saturation: standby endpoints also take calls while every weighted one is full

	Trim TrimConfig // [context_trim]

	// SharedStore says the store is shared by several instances (backend = "redis"): its hits say
	// X-Cache-Source: store.
	SharedStore bool
	// Flights, when set, coalesces identical misses across the instances sharing the store: the local
	// leader of a flight takes the store's lock before calling upstream (nil: local flights only).
	Flights FlightLocks

	// NoStats turns the request counters off (they count nothing), to measure what counting costs.
	NoStats bool

	// Log gets the warnings of upstream ejections and recoveries, and of answers too large to keep.
	Log *slog.Logger

	// OnUpstream, when set, is told of every upstream attempt (from the caller's goroutine); it must not block.
	OnUpstream func(endpoint string, took time.Duration)

	endpointVersion map[string]int64 // by endpoint name; made by check
}

// DefaultConfig is the pipeline's configuration with every default and no endpoint.
func DefaultConfig() Config {
	return Config{
		HitPoolSize:           8,
		MissPoolSize:          8,
		MemoryShards:          16,
		MaxConcurrentRequests: 100,
		QueueTimeout:          30 * time.Second,
		ModelsTTL:             60 * time.Second,
		MaxEmbeddingInputs:    2048,
		MaxAnswerBytes:        64 << 20,
		RecentGrace:           1400 * time.Millisecond, // twice the writer's default flush interval and a second
		MemoryEnabled:         true,
		MemoryMaxItems:        10000,
		MemoryMaxBytes:        256 << 20,
		ThinkingField:         "both",
		MaxRetries:            3,
		RetryBackoff:          250 * time.Millisecond,
		EjectAfter:            5,
		EjectFor:              30 * time.Second,
		Trim:                  TrimConfig{MaxContextTokens: 4096, Tokenizer: "o200k_base"},
		Headers:               map[string]string{"User-Agent": "llmcache/1.0"},
	}
}

// storeSource is where a hit read from the store came from.
func (c *Config) storeSource() Source {
	if c.SharedStore {
		return SourceStore
	}
	return SourceDB
}

// DefaultEndpoint is an endpoint at url with the default timeouts and weight 1.
func DefaultEndpoint(url string) Endpoint {
	return Endpoint{Target: wire.Target{URL: url, ConnectTimeout: 10 * time.Second, FirstByteTimeout: 300 * time.Second,
		Timeout: 600 * time.Second}, Weight: 1}
}

// RedactURL is url without what may hold a credential (user:password@, the query, the fragment): the
// default endpoint name, which reaches logs, /stats, /metrics and error bodies.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// check refuses what cannot work, names unnamed endpoints after their URL, and indexes endpoint versions.
func (c *Config) check() error {
	switch {
	case len(c.Endpoints) == 0:
		return errors.New("no api_endpoints configured")
	case c.HitPoolSize <= 0 || c.MissPoolSize <= 0 || c.MemoryShards <= 0 || c.MaxConcurrentRequests <= 0:
		return fmt.Errorf("pool sizes, shards and limits must be above 0 (hit %d, miss %d, shards %d, concurrent %d)",
			c.HitPoolSize, c.MissPoolSize, c.MemoryShards, c.MaxConcurrentRequests)
	case c.QueueTimeout <= 0 || c.RetryBackoff <= 0 || c.EjectFor <= 0 || c.EjectAfter <= 0 || c.MaxAnswerBytes <= 0:
		return errors.New("queue_timeout, retry_backoff, eject_seconds, eject_after and max_answer_bytes must be above 0")
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	c.endpointVersion = make(map[string]int64, len(c.Endpoints))
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		if e.Name == "" {
			e.Name = RedactURL(e.URL)
		}
		if e.ConnectTimeout <= 0 || e.FirstByteTimeout <= 0 || e.Timeout <= 0 {
			return fmt.Errorf("endpoint %s: timeouts must be above 0", e.Name)
		}
		c.endpointVersion[e.Name] = e.Version
	}
	return nil
}

// usable reports whether a stored answer may serve a request with controls ctl: young enough for its max-age
// and, under cache_override_mode, not below the current cache_version or its endpoint's version.
func (c *Config) usable(ctl *Controls, createdAt, version int64, endpoint string, now int64) bool {
	if ctl.MaxAge >= 0 && now-createdAt > ctl.MaxAge*1000 {
		return false
	}
	if c.OverrideMode {
		if version < c.CacheVersion {
			return false
		}
		if v, ok := c.endpointVersion[endpoint]; ok && version < v {
			return false
		}
	}
	return true
}

// upstreamHeaders lists what goes upstream: the client's forwarded headers, then api_headers and the
// endpoint's headers (each replacing a client header of the same name), then the endpoint's key, which
// replaces the client's Authorization.
func (c *Config) upstreamHeaders(client [][2]string, ep *Endpoint) [][2]string {
	h := make([][2]string, 0, len(client)+len(c.Headers)+len(ep.Headers)+1)
	h = append(h, client...)
	set := func(name, value string) {
		for i := range h {
			if equalFold([]byte(h[i][0]), name) {
				h[i][1] = value
				return
			}
		}
		h = append(h, [2]string{name, value})
	}
	for k, v := range c.Headers {
		set(k, v)
	}
	for k, v := range ep.Headers {
		set(k, v)
	}
	if ep.APIKey != "" {
		set("Authorization", "Bearer "+ep.APIKey)
	}
	return h
}
