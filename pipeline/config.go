package pipeline

import (
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"llmcache/pipeline/wire"
)

// Mode is how a request may use the cache (DESIGN section 3, per-request controls).
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

// Endpoint is one upstream from [[api_endpoints]] (DESIGN section 6). The embedded Target is what the
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

// Config holds the knobs of the request pipeline. The zero value of a field means its default.
type Config struct {
	HitPoolSize           int           // cache_hit_pool_size, default 8
	MissPoolSize          int           // cache_miss_pool_size, default 8
	KeyingWorkers         int           // default GOMAXPROCS
	MemoryShards          int           // default 16
	MaxConcurrentRequests int           // upstream calls in flight over all endpoints, default 100
	QueueTimeout          time.Duration // queue_timeout_seconds, default 30 s
	StageQueueSize        int           // capacity of each stage's input queue, default 4096
	ModelsTTL             time.Duration // models_ttl_seconds: how long a models list is served before a refetch; default 60 s
	MaxEmbeddingInputs    int           // max_embedding_inputs: inputs allowed in one embeddings request; default 2048
	RecentGrace           time.Duration // how long the dispatcher answers from a just-stored answer, covering the writer's delay; default 2 s

	MemoryEnabled  bool  // cache.enabled: the memory layer (SQLite serves either way)
	MemoryMaxItems int   // cache.max_items, default 10000
	MemoryMaxBytes int64 // cache.max_bytes, default 256 MiB

	Mode           Mode              // cache_mode: the default for requests that do not say
	CacheVersion   int64             // cache_version
	OverrideMode   bool              // cache_override_mode: entries below the current version are stale
	EnableThinking Thinking          // enable_thinking from config; ThinkingAbsent = pass the client's value through
	ThinkingField  string            // "both" (default), "top_level" or "chat_template_kwargs"
	IgnoreFields   []string          // cache.ignore_fields: more top-level fields left out of the key
	Headers        map[string]string // api_headers: added to every upstream call
	Endpoints      []Endpoint

	MaxRetries          int           // max_retries: further attempts after a retryable failure, default 0 here (3 in the file)
	RetryBackoff        time.Duration // retry_backoff_ms: the first retry's base delay, doubled each time; default 250 ms
	EjectAfter          int           // eject_after: consecutive failures that eject an endpoint; default 5
	EjectFor            time.Duration // eject_seconds: how long an ejected endpoint rests before a probe; default 30 s
	StandbyOnSaturation bool          // standby_on_saturation: standby endpoints also take calls while every weighted one is full

	Trim TrimConfig // [context_trim]

	// NoStats turns the request counters off (they count nothing), to measure what counting costs.
	NoStats bool

	// Log gets the warnings of upstream ejections and recoveries; default slog.Default().
	Log *slog.Logger

	// OnUpstream, when set, is told of every upstream attempt (from the call's goroutine); it must not block.
	OnUpstream func(endpoint string, took time.Duration)
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

func (c *Config) setDefaults() {
	if c.HitPoolSize <= 0 {
		c.HitPoolSize = 8
	}
	if c.MissPoolSize <= 0 {
		c.MissPoolSize = 8
	}
	if c.MemoryShards <= 0 {
		c.MemoryShards = 16
	}
	if c.MaxConcurrentRequests <= 0 {
		c.MaxConcurrentRequests = 100
	}
	if c.QueueTimeout <= 0 {
		c.QueueTimeout = 30 * time.Second
	}
	if c.ModelsTTL < 0 {
		c.ModelsTTL = 0
	}
	if c.MaxEmbeddingInputs <= 0 {
		c.MaxEmbeddingInputs = MaxEmbeddingInputs
	}
	if c.RecentGrace <= 0 {
		c.RecentGrace = 2 * time.Second
	}
	if c.StageQueueSize <= 0 {
		c.StageQueueSize = 4096
	}
	if c.MemoryMaxItems <= 0 {
		c.MemoryMaxItems = 10000
	}
	if c.MemoryMaxBytes <= 0 {
		c.MemoryMaxBytes = 256 << 20
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 250 * time.Millisecond
	}
	if c.EjectAfter <= 0 {
		c.EjectAfter = 5
	}
	if c.EjectFor <= 0 {
		c.EjectFor = 30 * time.Second
	}
	if c.ThinkingField == "" {
		c.ThinkingField = "both"
	}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		if e.Name == "" {
			e.Name = RedactURL(e.URL)
		}
		if e.ConnectTimeout <= 0 {
			e.ConnectTimeout = 10 * time.Second
		}
		if e.FirstByteTimeout <= 0 {
			e.FirstByteTimeout = 300 * time.Second
		}
		if e.Timeout <= 0 {
			e.Timeout = 600 * time.Second
		}
	}
}
