package main

import (
	"io"
	"log/slog"
	"strconv"
	"strings"

	"llmcache/db/redisstore"
	"llmcache/pipeline"
)

// newLogger makes the process's logger: text (default) or JSON lines (log_format = "json").
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// masked replaces a secret with a fixed mark, keeping only whether one is set.
func masked(secret string) string {
	if secret == "" {
		return ""
	}
	return "***"
}

// maskedStoreURL is redis_url with its password masked.
func maskedStoreURL(u string) string {
	if u == "" {
		return ""
	}
	return redisstore.Redact(u)
}

// harmlessHeaders are the header names whose configured values the start-up line shows. Every other value
// is masked: credentials travel under too many names (X-Auth, X-Api-Password, X-Goog-Signature, Session...)
// for a list of secret ones to be complete.
var harmlessHeaders = map[string]bool{
	"user-agent": true, "accept": true, "accept-language": true, "content-type": true,
	"openai-beta": true, "anthropic-version": true, "http-referer": true, "x-title": true,
}

// secretHeader reports whether a header's value must be kept out of the log: all but the harmless ones.
func secretHeader(name string) bool { return !harmlessHeaders[strings.ToLower(name)] }

func maskedHeaders(h map[string]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		if secretHeader(k) {
			v = masked(v)
		}
		out[k] = v
	}
	return out
}

// effectiveConfig is the start-up line's attributes: the configuration in force after the file, the
// environment and the flags, with every secret masked (api keys, client keys, the admin token, header values).
func effectiveConfig(c *fileConfig) []any {
	attrs := []any{
		"listen", c.Listen, "database_url", c.DatabaseURL, "cache_mode", c.CacheMode,
		"cache_version", c.CacheVersion, "cache_override_mode", c.CacheOverrideMode,
		"use_curl", c.UseCurl, "use_proxy", c.UseProxy, "thinking_field", c.ThinkingField,
		"cache_hit_pool_size", c.CacheHitPoolSize, "cache_miss_pool_size", c.CacheMissPoolSize,
		"max_concurrent_requests", c.MaxConcurrentRequests, "queue_timeout_seconds", c.QueueTimeoutSeconds,
		"max_retries", c.MaxRetries, "retry_backoff_ms", c.RetryBackoffMs, "eject_after", c.EjectAfter, "eject_seconds", c.EjectSeconds,
		"max_body_bytes", c.MaxBodyBytes, "max_answer_bytes", c.MaxAnswerBytes, "max_header_bytes", c.MaxHeaderBytes, "max_embedding_inputs", c.MaxEmbeddingInputs, "models_ttl_seconds", c.ModelsTTLSeconds,
		"shutdown_timeout_seconds", c.ShutdownTimeoutSeconds,
		"max_batch_file_bytes", c.MaxBatchFileBytes, "batch_dir", c.BatchDir, "batch_concurrency", c.BatchConcurrency,
		"batch_retention_days", c.BatchRetentionDays,
		"standby_on_saturation", c.StandbyOnSaturation, "admin_token", masked(c.AdminToken),
		"log_format", c.LogFormat, "stats_log_interval_seconds", c.StatsLogInterval,
		slog.Group("cache", "enabled", c.Cache.Enabled, "max_items", c.Cache.MaxItems, "max_bytes", c.Cache.MaxBytes,
			"batch_write_size", c.Cache.BatchWriteSize, "flush_interval_ms", c.Cache.FlushInterval, "max_pending_bytes", c.Cache.MaxPendingBytes, "compress_bodies", c.Cache.CompressBodies,
			"ignore_fields", c.Cache.IgnoreFields),
		slog.Group("idle_flush", "enabled", c.IdleFlush.Enabled, "idle_timeout_seconds", c.IdleFlush.IdleTimeoutSeconds,
			"check_interval_seconds", c.IdleFlush.CheckIntervalSeconds),
		slog.Group("cache_maintenance", "enabled", c.CacheMaintenance.Enabled, "interval_hours", c.CacheMaintenance.IntervalHours,
			"retention_days", c.CacheMaintenance.RetentionDays, "cleanup_on_startup", c.CacheMaintenance.CleanupOnStartup,
			"min_hit_count", c.CacheMaintenance.MinHitCount, "max_db_bytes", c.CacheMaintenance.MaxDBBytes),
		slog.Group("context_trim", "enabled", c.ContextTrim.Enabled, "max_context_tokens", c.ContextTrim.MaxContextTokens,
			"tokenizer", c.ContextTrim.Tokenizer, "reserve_output_tokens", c.ContextTrim.ReserveOutputTokens, "on_overflow", c.ContextTrim.OnOverflow),
		slog.Group("store", "backend", c.Store.Backend, "redis_url", maskedStoreURL(c.Store.RedisURL), "redis_addrs", c.Store.RedisAddrs,
			"redis_cluster", c.Store.RedisCluster, "key_prefix", c.Store.KeyPrefix, "lock_timeout_seconds", c.Store.LockTimeoutSeconds),
		"api_headers", maskedHeaders(c.APIHeaders),
	}
	for i, k := range c.ClientKeys {
		attrs = append(attrs, slog.Group("client_key_"+strconv.Itoa(i), "key", masked(k.Key), "key_env", k.KeyEnv, "namespace", k.Namespace))
	}
	if c.EnableThinking != nil {
		attrs = append(attrs, "enable_thinking", *c.EnableThinking)
	}
	for i, e := range c.APIEndpoints {
		name := e.Name
		if name == "" {
			name = pipeline.RedactURL(e.URL)
		}
		attrs = append(attrs, slog.Group("endpoint_"+strconv.Itoa(i), "name", name, "url", pipeline.RedactURL(e.URL), "weight", e.Weight,
			"model", e.Model, "api_key", masked(e.APIKey), "api_key_env", e.APIKeyEnv, "headers", maskedHeaders(e.Headers),
			"version", e.Version, "max_concurrent", e.MaxConcurrent, "connect_timeout_seconds", e.ConnectTimeoutSeconds,
			"first_byte_timeout_seconds", e.FirstByteTimeoutSeconds, "timeout_seconds", e.TimeoutSeconds,
			"max_context_tokens", e.MaxContextTokens, "insecure_tls", e.InsecureTLS, "ca_file", e.CAFile))
	}
	return attrs
}
