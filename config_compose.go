package main

import (
	"fmt"
	"log/slog"
	"time"

	"llmcache/db"
	"llmcache/httpx"
	"llmcache/httpx/proxy"
	"llmcache/httpx/upstream"
	"llmcache/pipeline"
)

// proxyConfig composes every package's configuration from the file's: the whole proxy's, for
// proxy.Start. getenv reads the api_key_env, key_env and proxy variables; log gets the proxy's logs.
func (c *fileConfig) proxyConfig(getenv func(string) string, log *slog.Logger) (proxy.Config, error) {
	d := proxy.DefaultConfig()
	pc, err := c.pipelineConfig(getenv)
	if err != nil {
		return d, err
	}
	hc, err := c.httpConfig(getenv)
	if err != nil {
		return d, err
	}
	d.Listen, d.DatabaseURL, d.UseCurl, d.Log = c.Listen, db.PathFromURL(c.DatabaseURL), c.UseCurl, log
	d.Upstream = upstream.Options{UseProxy: c.UseProxy, Getenv: getenv}
	d.Store.Backend = c.Store.Backend
	d.Store.Redis.URL, d.Store.Redis.Addrs, d.Store.Redis.Cluster = c.Store.RedisURL, c.Store.RedisAddrs, c.Store.RedisCluster
	d.Store.Redis.KeyPrefix, d.Store.Redis.LockTimeout = c.Store.KeyPrefix, seconds(c.Store.LockTimeoutSeconds)
	d.Pipeline, d.HTTP = pc, hc
	d.Writer.BatchSize = c.Cache.BatchWriteSize
	d.Writer.FlushInterval = time.Duration(c.Cache.FlushInterval) * time.Millisecond
	d.Writer.MaxPendingBytes = c.Cache.MaxPendingBytes
	d.Store.SQLite.NoCompression, d.Store.SQLite.TrainAfter = !c.Cache.CompressBodies, c.trainAfter
	d.Stats.LogEvery = seconds(c.StatsLogInterval)
	d.Batch.MaxFileBytes, d.Batch.Dir, d.Batch.Concurrency = c.MaxBatchFileBytes, c.BatchDir, c.BatchConcurrency
	d.Batch.Retention = time.Duration(c.BatchRetentionDays * 24 * float64(time.Hour))
	// A batch records its progress as often as the writer flushes answers: after kill -9 a batch asks again
	// for no more than the cache itself lost.
	d.Batch.Checkpoint = d.Writer.FlushInterval
	if c.batchRetryPause > 0 {
		d.Batch.RetryPause = c.batchRetryPause
	}
	if c.chartTick > 0 {
		d.Stats.Tick, d.Stats.Bucket = c.chartTick, c.chartBucket
	}
	if !c.IdleFlush.Enabled {
		d.IdleFlush = nil
	} else {
		d.IdleFlush.Timeout, d.IdleFlush.CheckInterval = seconds(c.IdleFlush.IdleTimeoutSeconds), seconds(c.IdleFlush.CheckIntervalSeconds)
	}
	if m := c.CacheMaintenance; !m.Enabled {
		d.Maintenance = nil
	} else {
		d.Maintenance.Interval = time.Duration(m.IntervalHours * float64(time.Hour))
		d.Maintenance.Retention = time.Duration(m.RetentionDays * 24 * float64(time.Hour))
		d.Maintenance.MinHitCount, d.Maintenance.OnStartup, d.Maintenance.MaxDBBytes = m.MinHitCount, m.CleanupOnStartup, m.MaxDBBytes
	}
	return d, nil
}

// pipelineConfig composes the pipeline's knobs from the file.
func (c *fileConfig) pipelineConfig(getenv func(string) string) (pipeline.Config, error) {
	pc := pipeline.DefaultConfig()
	pc.HitPoolSize = c.CacheHitPoolSize
	pc.MissPoolSize = c.CacheMissPoolSize
	pc.MaxConcurrentRequests = c.MaxConcurrentRequests
	pc.QueueTimeout = seconds(c.QueueTimeoutSeconds)
	pc.ModelsTTL = seconds(c.ModelsTTLSeconds)
	pc.MaxEmbeddingInputs = c.MaxEmbeddingInputs
	pc.MaxAnswerBytes = c.MaxAnswerBytes
	// Cover the writer's delay, with room for a slow flush: until then a stored answer may not be on disk.
	pc.RecentGrace = 2*time.Duration(c.Cache.FlushInterval)*time.Millisecond + time.Second
	pc.MemoryEnabled = c.Cache.Enabled
	pc.MemoryMaxItems = c.Cache.MaxItems
	pc.MemoryMaxBytes = c.Cache.MaxBytes
	pc.CacheVersion = c.CacheVersion
	pc.OverrideMode = c.CacheOverrideMode
	pc.ThinkingField = c.ThinkingField
	pc.IgnoreFields = c.Cache.IgnoreFields
	pc.Headers = c.APIHeaders
	pc.Trim = pipeline.TrimConfig{Enabled: c.ContextTrim.Enabled, MaxContextTokens: c.ContextTrim.MaxContextTokens,
		ReserveOutputTokens: c.ContextTrim.ReserveOutputTokens, Tokenizer: c.ContextTrim.Tokenizer, Pass: c.ContextTrim.OnOverflow == "pass"}
	pc.MaxRetries = c.MaxRetries
	pc.RetryBackoff = time.Duration(c.RetryBackoffMs) * time.Millisecond
	pc.EjectAfter = c.EjectAfter
	pc.EjectFor = seconds(c.EjectSeconds)
	pc.StandbyOnSaturation = c.StandbyOnSaturation
	if c.EnableThinking != nil {
		pc.EnableThinking = pipeline.ThinkingFalse
		if *c.EnableThinking {
			pc.EnableThinking = pipeline.ThinkingTrue
		}
	}
	for i, e := range c.APIEndpoints {
		key := e.APIKey
		if e.APIKeyEnv != "" {
			key = getenv(e.APIKeyEnv)
			if key == "" {
				return pc, fmt.Errorf("config: api_endpoints[%d].api_key_env names %s, which is not set", i, e.APIKeyEnv)
			}
		}
		ep := pipeline.DefaultEndpoint(e.URL)
		ep.Name, ep.InsecureTLS, ep.CAFile = e.Name, e.InsecureTLS, e.CAFile
		for _, t := range []struct {
			dst *time.Duration
			v   float64
		}{{&ep.ConnectTimeout, e.ConnectTimeoutSeconds}, {&ep.FirstByteTimeout, e.FirstByteTimeoutSeconds}, {&ep.Timeout, e.TimeoutSeconds}} {
			if t.v > 0 { // 0 keeps the default
				*t.dst = seconds(t.v)
			}
		}
		ep.Weight, ep.Model, ep.Version, ep.APIKey = e.Weight, e.Model, e.Version, key
		ep.Headers, ep.MaxConcurrent, ep.MaxContextTokens = e.Headers, e.MaxConcurrent, e.MaxContextTokens
		pc.Endpoints = append(pc.Endpoints, ep)
	}
	return pc, nil
}

// httpConfig composes the front end's knobs from the file.
func (c *fileConfig) httpConfig(getenv func(string) string) (httpx.Config, error) {
	mode, _ := pipeline.ParseMode(c.CacheMode)
	keys, err := c.clientKeys(getenv)
	hc := httpx.DefaultConfig()
	hc.MaxBodyBytes, hc.MaxHeaderBytes, hc.DefaultMode, hc.ShutdownTimeout = c.MaxBodyBytes, c.MaxHeaderBytes, mode, seconds(c.ShutdownTimeoutSeconds)
	hc.AdminToken, hc.ClientKeys = c.AdminToken, keys
	return hc, err
}
