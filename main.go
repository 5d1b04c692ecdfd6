// Command llmcache is a caching proxy for OpenAI-compatible LLM APIs. See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"llmcache/bench/fakeupstream"
	"llmcache/httpx/proxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

// run is the whole program: it runs a subcommand (cli.go) when args start with one; otherwise it parses
// args, starts the proxy and serves until ctx ends, then stops it in order. It returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	if isSubcommand(args) { // stats, vacuum, export, import, batches: see cli.go
		return runCommand(ctx, args, getenv, os.Stdout, stderr)
	}
	fs := flag.NewFlagSet("llmcache", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "config.toml", "path of the configuration file")
	listen := fs.String("listen", "", "address to listen on (overrides listen and LISTEN)")
	dbPath := fs.String("db", "", "SQLite file (overrides database_url and DATABASE_URL)")
	demo := fs.Bool("demo", false, "start an in-process fake upstream and send every miss to it (no LLM server needed)")
	verbose := fs.Bool("v", false, "debug logging")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file when the proxy stops (for benchmarks)")
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
	setMemoryLimit(log, memlimit.FromCgroup) // memlimit.go: Go's heap kept under a container's memory limit
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
	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "llmcache:", err)
			return 1
		}
		defer func() {
			if err := stopProfile(); err != nil {
				log.Error("the CPU profile may be incomplete", "path", *cpuProfile, "err", err)
			}
		}()
	}
	a, err := start(&cfg, getenv, log)
	if err != nil {
		fmt.Fprintln(stderr, "llmcache:", err)
		return 1
	}
	select {
	case <-ctx.Done():
		log.Info("stopping: finishing requests in flight")
	case err := <-a.Served():
		log.Error("the HTTP server stopped", "err", err)
	}
	if err := a.Stop(); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// startCPUProfile profiles the process into path until the returned function is called. The writer's
// goroutines carry a "stage" label (writer, compress, checkpoint, train), so that `go tool pprof -tags`
// shows what storing answers costs apart from the requests.
func startCPUProfile(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cannot create the CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cannot start the CPU profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close() // runtime/pprof does not report its own write errors; this is the one that can be seen
	}, nil
}

// start composes the proxy's configuration from cfg (file, environment and flags), logs it with every
// secret masked, and starts the proxy.
func start(cfg *fileConfig, getenv func(string) string, log *slog.Logger) (*proxy.Proxy, error) {
	pc, err := cfg.proxyConfig(getenv, log)
	if err != nil {
		return nil, err
	}
	log.Info("configuration", effectiveConfig(cfg)...)
	p, err := proxy.Start(pc)
	if err != nil {
		return nil, err
	}
	store := []any{"db", pc.DatabaseURL}
	if cfg.Store.Backend == "redis" {
		store = []any{"store", "redis", "redis_url", maskedStoreURL(cfg.Store.RedisURL), "redis_addrs", cfg.Store.RedisAddrs}
	}
	log.Info("llmcache listening", append(append([]any{"addr", p.Addr().String()}, store...), "endpoints", len(pc.Pipeline.Endpoints),
		"cache_mode", cfg.CacheMode, "memory_cache", cfg.Cache.Enabled)...)
	return p, nil
}
