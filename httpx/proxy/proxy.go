// Package proxy assembles a whole llmcache from one Config: the upstream transport, the stats actor, the
// store, the writer, the pipeline, the idle flush and maintenance actors, and the front end on its
// listener. It is the composition root — the one package that imports every layer — so that main, the
// end-to-end tests and the benchmarks all run the same proxy, built the same way.
package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"llmcache/actors"
	"llmcache/db"
	"llmcache/db/redisstore"
	"llmcache/httpx"
	"llmcache/httpx/observe"
	"llmcache/httpx/upstream"
	"llmcache/pipeline"
	"llmcache/pipeline/batch"
	"llmcache/pipeline/wire"
)

// Config is a whole proxy's configuration: each package's own, composed.
type Config struct {
	Listen      string // the address to listen on; "127.0.0.1:0" picks a free port
	DatabaseURL string // the SQLite file (a path or a sqlite:// URL); unused with Store.Backend "redis"
	Store       StoreConfig
	UseCurl     bool // upstream calls through the curl binary instead of the built-in client
	Upstream    upstream.Options
	Pipeline    pipeline.Config
	HTTP        httpx.Config
	Writer      actors.WriterConfig
	IdleFlush   *actors.IdleConfig        // nil: [idle_flush] off
	Maintenance *actors.MaintenanceConfig // nil: [cache_maintenance] off
	Stats       actors.StatsConfig
	// Batch is the Batch API's (/v1/files, /v1/batches). Its Concurrency 0 becomes half of
	// Pipeline.MaxConcurrentRequests (at least 1); its mode, tenants, logger and activity are the front end's.
	Batch batch.Config
	Log   *slog.Logger // nil: slog.Default()
}

// StoreConfig is [store]: where answers are kept beyond the process.
type StoreConfig struct {
	Backend string             // "sqlite" (DatabaseURL, the default) or "redis" (shared by several instances)
	SQLite  db.Options         // with Backend "sqlite" (compression); Log is set by Start
	Redis   redisstore.Options // with Backend "redis"
}

// DefaultConfig is every package's defaults, with no endpoint.
func DefaultConfig() Config {
	idle, maint := actors.DefaultIdleConfig(), actors.DefaultMaintenanceConfig()
	return Config{
		Listen:      "127.0.0.1:4321",
		DatabaseURL: "cache.db",
		Store: StoreConfig{Backend: "sqlite", Redis: redisstore.Options{Addrs: []string{}, KeyPrefix: redisstore.DefaultKeyPrefix,
			LockTimeout: redisstore.DefaultLockTimeout}},
		Upstream:    upstream.Options{UseProxy: true},
		Pipeline:    pipeline.DefaultConfig(),
		HTTP:        httpx.DefaultConfig(),
		Writer:      actors.DefaultWriterConfig(),
		IdleFlush:   &idle,
		Maintenance: &maint,
		Stats:       actors.DefaultStatsConfig(),
		Batch:       batch.DefaultConfig(),
	}
}

// Proxy is a running llmcache. Start makes it; Stop stops it.
type Proxy struct {
	log     *slog.Logger
	addr    net.Addr
	served  chan error
	writer  *actors.Writer
	pipe    *pipeline.Pipeline
	sources *observe.Sources
	shared  *redisstore.Store // backend "redis"; nil with SQLite
	// closers undo what Start did, last first: Stop runs them all, and a Start that fails runs those
	// pushed so far. Start's order makes that the order that loses nothing: the front end (requests in
	// flight are answered), the actors that send the writer jobs, the pipeline (flights and upstream
	// calls end), the writer (it drains what waits and checkpoints), the store, then the rest.
	closers []closer
}

type closer struct {
	what string
	fn   func() error
}

func (p *Proxy) push(what string, fn func() error) { p.closers = append(p.closers, closer{what, fn}) }

// unwind runs every closer, last first, and joins their errors.
func (p *Proxy) unwind() error {
	var errs []error
	for i := len(p.closers) - 1; i >= 0; i-- {
		if err := p.closers[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("cannot %s: %w", p.closers[i].what, err))
		}
	}
	p.closers = nil
	return errors.Join(errs...)
}

// Start assembles the proxy and serves on cfg.Listen. On error, everything it started is stopped.
func Start(cfg Config) (_ *Proxy, err error) {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	p := &Proxy{log: log, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			p.unwind()
		}
	}()
	transport, err := p.transport(&cfg)
	if err != nil {
		return nil, err
	}
	metrics := observe.NewMetrics()
	st := cfg.Stats
	st.Histogram = metrics.Latency
	stats := actors.NewStats(st, log)
	pc := cfg.Pipeline
	pc.Log, pc.OnUpstream = log, stats.Upstream
	store, figures, err := p.openStore(&cfg, &pc, log)
	if err != nil {
		return nil, err
	}
	p.writer = actors.NewWriter(store, cfg.Writer, log)
	p.push("write the answers waiting for the store", p.writer.Stop) // an error here: answers lost, the exit code says so
	if p.shared != nil {
		p.shared.SetFlushSoon(p.writer.FlushSoon) // a flight another instance waits for is written at once
	}
	if p.pipe, err = pipeline.New(pc, store, p.writer, transport); err != nil {
		return nil, err
	}
	p.push("stop the pipeline", func() error { p.pipe.Stop(); return nil })
	if p.shared != nil {
		// Deletes on other instances reach this one's memory layer from now on.
		p.shared.Listen(p.pipe.Forget)
	}
	var activity *actors.Activity // told of every request and batch line, for the idle flush
	if cfg.IdleFlush != nil {
		activity = &actors.Activity{}
	}
	bc := cfg.Batch
	if bc.Concurrency <= 0 {
		bc.Concurrency = max(1, pc.MaxConcurrentRequests/2) // the other half stays for live requests
	}
	bc.DefaultMode, bc.MaxBodyBytes, bc.Tenant = cfg.HTTP.DefaultMode, cfg.HTTP.MaxBodyBytes, httpx.TenantOf(cfg.HTTP.ClientKeys)
	bc.Activity, bc.Log = activity, log
	batches, err := batch.New(bc, p.pipe, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	// Pushed after the pipeline, so stopped before it: the lines in flight need it to be answered.
	p.push("stop the batches", batches.Stop)
	p.sources = &observe.Sources{Started: time.Now(), Pipeline: p.pipe, Writer: p.writer, Stats: stats, Store: figures,
		Batches: batches}
	metrics.Serve(p.sources)
	stats.Start(p.sources.Sample, p.sources.Summary)
	p.push("stop the stats actor", func() error { stats.Stop(); return nil })
	hc := cfg.HTTP
	hc.Listen, hc.Log, hc.Stats, hc.Metrics, hc.Dashboard, hc.Observe = cfg.Listen, log, p.sources.Report, metrics.Write, p.sources.Dashboard, metrics.Observe
	hc.Batches, hc.Activity = batches, activity
	if cfg.IdleFlush != nil {
		p.sources.IdleFlush = actors.NewIdleFlusher(*cfg.IdleFlush, p.writer, hc.Activity, log)
		p.push("stop the idle flush", func() error { p.sources.IdleFlush.Stop(); return nil })
	}
	if cfg.Maintenance != nil && p.shared == nil { // a shared store expires and evicts by itself
		p.sources.Maintenance = actors.NewMaintenance(*cfg.Maintenance, p.writer, store, log)
		p.push("stop maintenance", func() error { p.sources.Maintenance.Stop(); return nil })
	}
	server := httpx.New(hc, p.pipe, p.health)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %q (set listen, LISTEN or -listen): %w", cfg.Listen, err)
	}
	p.addr = ln.Addr()
	go func() { p.served <- server.Serve(ln) }()
	p.push("finish the requests in flight", server.Shutdown)
	return p, nil
}

// transport makes the upstream transport (curl's with UseCurl) and checks every endpoint's URL, proxy and
// CA file now, so that a mistake stops the start instead of failing calls.
func (p *Proxy) transport(cfg *Config) (pipeline.Transport, error) {
	targets := make([]wire.Target, len(cfg.Pipeline.Endpoints))
	for i := range cfg.Pipeline.Endpoints {
		targets[i] = cfg.Pipeline.Endpoints[i].Target
	}
	if cfg.UseCurl {
		c, err := upstream.NewCurl(cfg.Upstream)
		if err != nil {
			return nil, err
		}
		p.push("clean up the curl transport", c.Close)
		if err := c.Check(targets); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		return c, nil
	}
	c := upstream.NewWithOptions(cfg.Upstream)
	if err := c.Check(targets); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// openStore opens the configured store: the SQLite file, or the shared store, whose hits then say
// "store" and whose locks coalesce misses across instances.
func (p *Proxy) openStore(cfg *Config, pc *pipeline.Config, log *slog.Logger) (db.Store, func() (observe.StoreFigures, error), error) {
	switch cfg.Store.Backend {
	case "", "sqlite":
		so := cfg.Store.SQLite
		so.Log = log
		store, err := db.Open(db.PathFromURL(cfg.DatabaseURL), so)
		if err != nil {
			return nil, nil, err
		}
		p.push("close the cache db", store.Close)
		return store, storeFigures(store), nil
	case "redis":
		// database_url still names the SQLite file that holds the Batch API's files and batches: create and
		// migrate it (its answer tables stay empty), and keep it open while the batches use it.
		local, err := db.Open(db.PathFromURL(cfg.DatabaseURL), db.Options{Log: log})
		if err != nil {
			return nil, nil, err
		}
		p.push("close the batches' cache db", local.Close)
		o := cfg.Store.Redis
		o.Log = log
		s, err := redisstore.Open(o)
		if err != nil {
			return nil, nil, err
		}
		p.push("close the shared store", s.Close)
		p.shared = s
		pc.SharedStore, pc.Flights = true, s
		return s, sharedFigures(s), nil
	}
	return nil, nil, fmt.Errorf("config: store.backend must be \"sqlite\" or \"redis\" (got %q)", cfg.Store.Backend)
}

// sharedFigures reads the shared store's state and size for /stats.
func sharedFigures(s *redisstore.Store) func() (observe.StoreFigures, error) {
	return func() (observe.StoreFigures, error) {
		// The counts and the state are worth showing most when the store cannot say its size: only the
		// size is missing then, and last_error says why.
		f, err := s.Figures()
		if err != nil && f.LastError == "" {
			f.LastError = err.Error()
		}
		sh := observe.SharedStoreFigures(f)
		return observe.StoreFigures{Backend: "redis", Entries: f.Keys, Shared: &sh}, nil
	}
}

// storeFigures reads the store's size for /stats.
func storeFigures(store *db.SQLite) func() (observe.StoreFigures, error) {
	return func() (observe.StoreFigures, error) {
		s, err := store.Stats()
		return observe.StoreFigures{Backend: "sqlite", Entries: s.Entries, HitEntries: s.HitEntries, FileBytes: s.FileBytes, WALBytes: s.WALBytes,
			PageSize: s.PageSize, PageCount: s.PageCount, FreePages: s.FreePages, DriverPanics: s.DriverPanics,
			Dictionaries: s.Dictionaries, Dictionary: s.Dictionary, CorruptBodies: s.CorruptBodies}, err
	}
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() net.Addr { return p.addr }

// Served reports the front end's end when it stops by itself (an error).
func (p *Proxy) Served() <-chan error { return p.served }

// Stop shuts the proxy down in the order that loses nothing (see Proxy.closers). Calling it twice is
// harmless.
func (p *Proxy) Stop() error { return p.unwind() }

// health is /healthz: degraded (still answering, so 200) when the last write to the store failed, or when
// every upstream endpoint is ejected (they are still asked); both reasons when both hold. Nothing here
// makes the proxy unable to answer at all (httpx.Down, 503): while it stops, its listener and idle
// connections are closed first, so no /healthz reaches it.
func (p *Proxy) health() error {
	var reasons []string
	if p.shared != nil {
		if err := p.shared.Health(); err != nil {
			reasons = append(reasons, err.Error())
		}
	}
	if s := p.writer.Stats(); s.LastError != "" {
		reasons = append(reasons, "cannot write to the cache db, answers are served but not kept: "+s.LastError)
	}
	ejected := true
	for _, e := range p.pipe.Endpoints() {
		ejected = ejected && e.Health == pipeline.Ejected
	}
	if ejected {
		reasons = append(reasons, "every upstream endpoint is ejected after repeated failures; they are still asked, and hits are served")
	}
	if len(reasons) == 0 {
		return nil
	}
	return errors.New(strings.Join(reasons, "; "))
}
