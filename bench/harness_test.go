package bench

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"llmcache/actors"
	"llmcache/bench/baseline"
	"llmcache/bench/fakeupstream"
	"llmcache/db"
	"llmcache/httpx"
	llmproxy "llmcache/httpx/proxy"
	"llmcache/httpx/upstream"
	"llmcache/pipeline"
)

// proxy is llmcache as users run it — proxy.Start over the default configuration — on a loopback port.
type proxy struct {
	addr string
	run  *llmproxy.Proxy
}

func startProxy(tb testing.TB, upstreamURL string, memory bool) *proxy {
	tb.Helper()
	return startProxyWith(tb, upstreamURL, func(c *pipeline.Config) { c.MemoryEnabled = memory })
}

// startProxyWith is startProxy with the pipeline's config adjusted by tune.
func startProxyWith(tb testing.TB, upstreamURL string, tune func(*pipeline.Config)) *proxy {
	tb.Helper()
	return startProxyFull(tb, upstreamURL, tune, func(*httpx.Config) {})
}

// startProxyFull is startProxy with the pipeline's and the front end's configs adjusted.
func startProxyFull(tb testing.TB, upstreamURL string, tune func(*pipeline.Config), tuneHTTP func(*httpx.Config)) *proxy {
	tb.Helper()
	return startProxyConfig(tb, upstreamURL, func(c *llmproxy.Config) {
		tune(&c.Pipeline)
		tuneHTTP(&c.HTTP)
	})
}

// startProxyConfig starts proxy.DefaultConfig() with one endpoint, "fake", at upstreamURL, a database in a
// temporary directory and a free port, adjusted by tune.
func startProxyConfig(tb testing.TB, upstreamURL string, tune func(*llmproxy.Config)) *proxy {
	tb.Helper()
	cfg := llmproxy.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DatabaseURL = filepath.Join(tb.TempDir(), "cache.db")
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	ep := pipeline.DefaultEndpoint(upstreamURL)
	ep.Name = "fake"
	cfg.Pipeline.Endpoints = []pipeline.Endpoint{ep}
	tune(&cfg)
	run, err := llmproxy.Start(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { run.Stop() })
	return &proxy{addr: run.Addr().String(), run: run}
}

// figures is the part of GET /stats the benchmarks read.
type figures struct {
	Writer struct {
		Pending int64 `json:"pending"`
	} `json:"writer"`
	ContextTrim struct {
		Runs int64 `json:"runs"`
	} `json:"context_trim"`
}

func (p *proxy) stats(tb testing.TB) figures {
	tb.Helper()
	status, body, err := fasthttp.Get(nil, "http://"+p.addr+"/stats")
	var f figures
	if err != nil || status != 200 || json.Unmarshal(body, &f) != nil {
		tb.Fatalf("/stats: %d %v %s", status, err, body)
	}
	return f
}

// waitWritten waits until the writer has put every answer on disk.
func (p *proxy) waitWritten(tb testing.TB) {
	tb.Helper()
	for deadline := time.Now().Add(time.Minute); p.stats(tb).Writer.Pending > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatal("the writer did not write what waits within a minute")
		}
	}
}

// startPipeline assembles the pipeline alone, with the defaults users run, over a store in a temporary
// directory: for benchmarks of the stages without HTTP.
func startPipeline(tb testing.TB, upstreamURL string) *pipeline.Pipeline {
	tb.Helper()
	store, err := db.Open(filepath.Join(tb.TempDir(), "cache.db"), db.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	writer := actors.NewWriter(store, actors.DefaultWriterConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	cfg := pipeline.DefaultConfig()
	cfg.Endpoints = []pipeline.Endpoint{pipeline.DefaultEndpoint(upstreamURL)}
	pipe, err := pipeline.New(cfg, store, writer, upstream.New())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		pipe.Stop()
		writer.Stop()
		store.Close()
	})
	return pipe
}

// startFake starts the fake upstream for one benchmark.
func startFake(tb testing.TB, opts fakeupstream.Options) *fakeupstream.Server {
	tb.Helper()
	fake, err := fakeupstream.Start(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { fake.Close() })
	return fake
}

// measure posts next() to addr's chat route from 32 goroutines for b.N requests, checks each answer with
// check (may be nil), and reports req/s.
func measure(b *testing.B, addr string, next func() []byte, check func(*fasthttp.Response)) {
	measureOn(b, addr, chatPath, next, check)
}

// measureOn is measure for any route.
func measureOn(b *testing.B, addr, path string, next func() []byte, check func(*fasthttp.Response)) {
	c := client(addr)
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer() // starting servers, warming and training are not the figure
	start, cpu := time.Now(), processCPU()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			post(b, c, path, next(), req, resp)
			if check != nil {
				check(resp)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	// Client and server share the process, so this is both sides' CPU; the client's share is the same for
	// every server measured, and the figure moves less than req/s when other work shares the machine.
	b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "CPU-µs/req")
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var u syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &u) != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// startBare serves body for every request with a plain fasthttp handler: the baseline for hits.
func startBare(tb testing.TB, body []byte) string {
	tb.Helper()
	return serve(tb, baseline.Fixed(body))
}

// startBareProxy forwards every request to upstream without parsing or caching: the baseline for misses.
func startBareProxy(tb testing.TB, upstreamAddr string) string {
	tb.Helper()
	return serve(tb, baseline.ReverseProxy(upstreamAddr))
}

func serve(tb testing.TB, h fasthttp.RequestHandler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h, NoDefaultServerHeader: true}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// client posts bodies to one address over keep-alive connections.
func client(addr string) *fasthttp.HostClient {
	return &fasthttp.HostClient{Addr: addr, MaxConns: 512, ReadTimeout: time.Minute}
}

// post sends body and fails the benchmark on anything but a 200.
func post(tb testing.TB, c *fasthttp.HostClient, path string, body []byte, req *fasthttp.Request, resp *fasthttp.Response) {
	req.Reset()
	req.SetRequestURI("http://" + c.Addr + path)
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	if err := c.Do(req, resp); err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode() != 200 {
		tb.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
	}
}
