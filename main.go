// Command llmcache is a caching proxy for OpenAI-compatible LLM APIs. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"llmcache/actors"
	"llmcache/bench/fakeupstream"
	"llmcache/db"
	"llmcache/httpx"
	"llmcache/httpx/upstream"
	"llmcache/pipeline"
	"llmcache/pipeline/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

// run is the whole program: it runs a subcommand (cli.go) when args start with one; otherwise it parses
// args, starts the proxy and serves until ctx ends, then stops it in order. It returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	if isSubcommand(args) { // stats, vacuum, export, import: see cli.go
		return runCommand(ctx, args, getenv, os.Stdout, stderr)
	}
	fs := flag.NewFlagSet("llmcache", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "config.toml", "path of the configuration file")
	listen := fs.String("listen", "", "address to listen on (overrides listen and LISTEN)")
	dbPath := fs.String("db", "", "SQLite file (overrides database_url and DATABASE_URL)")
	demo := fs.Bool("demo", false, "start an in-process fake upstream and send every miss to it (no LLM server needed)")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := newLogger(stderr, "text", level)

	explicitConfig := false
	fs.Visit(func(f *flag.Flag) { explicitConfig = explicitConfig || f.Name == "config" })
	cfg, err := loadConfig(*configPath, *demo && !explicitConfig)
	if err == nil {
		err = applyEnv(&cfg, getenv)
	}
	if err != nil {
		fmt.Fprintln(stderr, "llmcache:", err)
		return 2
	}
	if cfg.LogFormat == "json" {
		log = newLogger(stderr, "json", level)
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *dbPath != "" {
		cfg.DatabaseURL = *dbPath
	}
	if *demo {
		fake, err := fakeupstream.Start(fakeupstream.Options{})
		if err != nil {
			fmt.Fprintln(stderr, "llmcache: cannot start the demo upstream:", err)
			return 1
		}
		defer fake.Close()
		cfg.APIEndpoints = []endpointConfig{{Name: "demo", URL: fake.URL(), Weight: 1}}
		log.Info("demo mode: misses go to an in-process fake upstream", "url", fake.URL())
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, "llmcache:", err)
		return 2
	}
	a, err := start(&cfg, getenv, log)
	if err != nil {
		fmt.Fprintln(stderr, "llmcache:", err)
		return 1
	}
	select {
	case <-ctx.Done():
		log.Info("stopping: finishing requests in flight")
	case err := <-a.served:
		log.Error("the HTTP server stopped", "err", err)
	}
	if err := a.stop(); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// app is a running proxy: every actor and stage, and the order to stop them in.
type app struct {
	log    *slog.Logger
	store  *db.SQLite
	writer *actors.Writer
	pipe   *pipeline.Pipeline
	idle   *actors.IdleFlusher // nil when [idle_flush] is off
	maint  *actors.Maintenance // nil when [cache_maintenance] is off
	server *httpx.Server
	addr   net.Addr
	served chan error

	started        time.Time
	statsActor     *actors.Stats
	metrics        *promMetrics
	closeTransport func() error // removes the curl transport's temporary CA bundles
}

func start(cfg *fileConfig, getenv func(string) string, log *slog.Logger) (*app, error) {
	pc, err := cfg.pipelineConfig(getenv)
	if err != nil {
		return nil, err
	}
	transport, closeTransport, err := newTransport(cfg, pc.Endpoints, getenv)
	if err != nil {
		return nil, err
	}
	log.Info("configuration", effectiveConfig(cfg)...)
	metrics := newPromMetrics()
	statsActor := actors.NewStats(actors.StatsConfig{LogEvery: seconds(cfg.StatsLogInterval), Histogram: metrics.latency,
		Tick: cfg.chartTick, Bucket: cfg.chartBucket}, log)
	pc.Log, pc.OnUpstream = log, statsActor.Upstream
	path := db.PathFromURL(cfg.DatabaseURL)
	store, err := db.Open(path, db.Options{Log: log})
	if err != nil {
		closeTransport()
		return nil, err
	}
	writer := actors.NewWriter(store, cfg.writerConfig(), log)
	pipe, err := pipeline.New(pc, store, writer, transport)
	if err != nil {
		writer.Stop()
		store.Close()
		closeTransport()
		return nil, err
	}
	a := &app{log: log, store: store, writer: writer, pipe: pipe, served: make(chan error, 1), closeTransport: closeTransport,
		started: time.Now(), statsActor: statsActor, metrics: metrics}
	metrics.app = a
	statsActor.Start(a.statsSample, a.summary)
	hc := cfg.httpConfig()
	hc.Log, hc.Metrics, hc.Dashboard, hc.Observe = log, metrics.write, a.dashboard, metrics.observe
	if cfg.IdleFlush.Enabled {
		hc.Activity = &actors.Activity{}
		a.idle = actors.NewIdleFlusher(actors.IdleConfig{Timeout: seconds(cfg.IdleFlush.IdleTimeoutSeconds),
			CheckInterval: seconds(cfg.IdleFlush.CheckIntervalSeconds)}, writer, hc.Activity, log)
	}
	if m := cfg.CacheMaintenance; m.Enabled {
		a.maint = actors.NewMaintenance(actors.MaintenanceConfig{
			Interval:    time.Duration(m.IntervalHours * float64(time.Hour)),
			Retention:   time.Duration(m.RetentionDays * 24 * float64(time.Hour)),
			MinHitCount: m.MinHitCount, OnStartup: m.CleanupOnStartup, MaxDBBytes: m.MaxDBBytes,
		}, writer, store, log)
	}
	hc.Stats = a.stats
	a.server = httpx.New(hc, pipe, a.health)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		a.stopActors()
		pipe.Stop()
		writer.Stop()
		store.Close()
		closeTransport()
		return nil, fmt.Errorf("cannot listen on %q (set listen, LISTEN or -listen): %w", cfg.Listen, err)
	}
	a.addr = ln.Addr()
	go func() { a.served <- a.server.Serve(ln) }()
	log.Info("llmcache listening", "addr", a.addr.String(), "db", path, "endpoints", len(pc.Endpoints),
		"cache_mode", cfg.CacheMode, "memory_cache", cfg.Cache.Enabled)
	return a, nil
}

// stop shuts down in the order that loses nothing: the front end (answering requests in flight), the
// pipeline (flights and dispatcher), the idle flush and maintenance, the writer (drains and checkpoints), then the store.
func (a *app) stop() error {
	var errs []error
	if err := a.server.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("cannot finish requests in flight: %w", err))
	}
	a.pipe.Stop()
	a.stopActors()
	if err := a.writer.Stop(); err != nil {
		errs = append(errs, err) // answers lost: the exit code says so
	}
	if err := a.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("cannot close the cache db: %w", err))
	}
	if err := a.closeTransport(); err != nil {
		errs = append(errs, fmt.Errorf("cannot clean up the upstream transport: %w", err))
	}
	return errors.Join(errs...)
}

// stopActors stops the actors that send jobs to the writer, before the writer itself stops, and the
// stats actor.
func (a *app) stopActors() {
	a.statsActor.Stop()
	if a.idle != nil {
		a.idle.Stop()
	}
	if a.maint != nil {
		a.maint.Stop()
	}
}

// health is /healthz: degraded (still answering, so 200) when the last write to the store failed, or when
// every upstream endpoint is ejected; both reasons when both hold. Nothing here makes the proxy unable to
// answer at all (httpx.Down, 503): while it stops, its listener and idle connections are closed first, so
// no /healthz reaches it.
func (a *app) health() error {
	var reasons []string
	if s := a.writer.Stats(); s.LastError != "" {
		reasons = append(reasons, "cannot write to the cache db, answers are served but not kept: "+s.LastError)
	}
	ejected := true
	for _, e := range a.pipe.Endpoints() {
		ejected = ejected && e.Health == pipeline.Ejected
	}
	if ejected {
		reasons = append(reasons, "every upstream endpoint is ejected after repeated failures; hits are still served")
	}
	if len(reasons) == 0 {
		return nil
	}
	return errors.New(strings.Join(reasons, "; "))
}

// newTransport makes the upstream transport (curl's with use_curl) honouring use_proxy, and checks every
// endpoint's URL, proxy and CA file now, so that a mistake stops the start instead of failing calls.
func newTransport(cfg *fileConfig, endpoints []pipeline.Endpoint, getenv func(string) string) (pipeline.Transport, func() error, error) {
	opts := upstream.Options{UseProxy: cfg.UseProxy, Getenv: getenv}
	targets := make([]wire.Target, len(endpoints))
	for i := range endpoints {
		targets[i] = endpoints[i].Target
	}
	if cfg.UseCurl {
		c, err := upstream.NewCurl(opts)
		if err != nil {
			return nil, nil, err
		}
		if err := c.Check(targets); err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("config: %w", err)
		}
		return c, c.Close, nil
	}
	c := upstream.NewWithOptions(opts)
	if err := c.Check(targets); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return c, func() error { return nil }, nil
}
