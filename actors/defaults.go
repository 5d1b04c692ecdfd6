package actors

import "time"

// The actors' defaults, in one place: each constructor fills a zero field from these.

// DefaultWriterConfig is the writer's configuration with every default.
func DefaultWriterConfig() WriterConfig {
	return WriterConfig{BatchSize: 20, FlushInterval: 200 * time.Millisecond, QueueSize: 8192, RetryInterval: time.Second,
		MaxPendingBytes: 256 << 20, MaxPendingTouches: 100_000}
}

// DefaultIdleConfig is the idle flush's configuration with every default.
func DefaultIdleConfig() IdleConfig {
	return IdleConfig{Timeout: 300 * time.Second, CheckInterval: 10 * time.Second}
}

// DefaultMaintenanceConfig is maintenance's configuration with every default.
func DefaultMaintenanceConfig() MaintenanceConfig {
	return MaintenanceConfig{Interval: 12 * time.Hour, Retention: 30 * 24 * time.Hour, MinHitCount: 1, OnStartup: true, ChunkRows: 500}
}

// DefaultStatsConfig is the stats actor's configuration with every default.
func DefaultStatsConfig() StatsConfig {
	return StatsConfig{Tick: time.Second, Bucket: 10 * time.Second, History: time.Hour, Window: 5 * time.Minute, LogEvery: time.Minute, Queue: 8192}
}

// orDefault gives v, or def when v is not above zero.
func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
