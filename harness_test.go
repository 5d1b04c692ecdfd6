package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"llmcache/bench/fakeupstream"
	"llmcache/httpx/proxy"
)

// testProxy is the real proxy (every stage, a real SQLite file in a temp dir) on a loopback port, in front
// of a fake upstream over real HTTP.
type testProxy struct {
	t      *testing.T
	cfg    fileConfig
	app    *proxy.Proxy
	URL    string // "http://127.0.0.1:PORT"
	Fake   *fakeupstream.Server
	DBPath string
	Log    *slog.Logger      // nil: logs are discarded
	Env    map[string]string // the environment the proxy sees (nothing else of the test process's)
}

// newTestProxy starts a fake upstream and the proxy in front of it; mutate may change the config (its
// endpoints already point at the fake). Both stop when the test ends.
func newTestProxy(t *testing.T, mutate func(*fileConfig)) *testProxy {
	t.Helper()
	return newLoggedTestProxy(t, mutate, nil)
}

// newLoggedTestProxy is newTestProxy with the proxy's logs going to log.
func newLoggedTestProxy(t *testing.T, mutate func(*fileConfig), log *slog.Logger) *testProxy {
	t.Helper()
	fake := startFake(t, fakeupstream.Options{})
	cfg := defaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DatabaseURL = filepath.Join(t.TempDir(), "cache.db")
	cfg.APIEndpoints = []endpointConfig{{Name: "fake", URL: fake.URL(), Weight: 1}}
	// .ci/run runs the suite twice: with the built-in client, then with LLMCACHE_TEST_TRANSPORT=curl.
	cfg.UseCurl = os.Getenv("LLMCACHE_TEST_TRANSPORT") == "curl"
	if mutate != nil {
		mutate(&cfg)
	}
	p := &testProxy{t: t, cfg: cfg, Fake: fake, DBPath: cfg.DatabaseURL, Log: log}
	p.start()
	t.Cleanup(func() { p.Stop() })
	return p
}

// startFake starts a fake upstream, closed when the test ends, in the layout LLMCACHE_TEST_UPSTREAM names:
// "indented" answers non-streamed JSON indented as api.openai.com does, "" or "compact" answers it compact.
// .ci/run runs the end-to-end suite both ways. Every fake a test puts in front of the proxy starts here.
func startFake(t *testing.T, opts fakeupstream.Options) *fakeupstream.Server {
	t.Helper()
	switch mode := os.Getenv("LLMCACHE_TEST_UPSTREAM"); mode {
	case "", "compact":
	case "indented":
		opts.Indent = true
	default:
		t.Fatalf("LLMCACHE_TEST_UPSTREAM=%q: want compact or indented", mode)
	}
	fake, err := fakeupstream.Start(opts)
	if err != nil {
		t.Fatalf("cannot start fake upstream: %v", err)
	}
	t.Cleanup(func() { fake.Close() })
	return fake
}

// noRetries configures a proxy that relays an upstream's failure at once, for tests of that relay.
func noRetries(c *fileConfig) { c.MaxRetries = 0 }

func (p *testProxy) start() {
	p.t.Helper()
	if err := p.cfg.validate(); err != nil {
		p.t.Fatalf("invalid test config: %v", err)
	}
	log := p.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a, err := start(&p.cfg, func(name string) string { return p.Env[name] }, log)
	if err != nil {
		p.t.Fatalf("cannot start proxy: %v", err)
	}
	p.app = a
	p.URL = "http://" + a.Addr().String()
}

// Stop stops the proxy the way SIGTERM does; calling it twice is harmless.
func (p *testProxy) Stop() {
	if p.app == nil {
		return
	}
	if err := p.app.Stop(); err != nil {
		p.t.Errorf("proxy stop: %v", err)
	}
	p.app = nil
}

// Restart stops the proxy and starts a new one on the same database file (and a new port).
func (p *testProxy) Restart() {
	p.Stop()
	p.start()
}

var testClient = &http.Client{Timeout: 60 * time.Second}

// Post sends body to path with the given header pairs ("Name", "value", ...) and returns the response
// with its body read.
func (p *testProxy) Post(path, body string, header ...string) (*http.Response, []byte) {
	p.t.Helper()
	req, err := http.NewRequest("POST", p.URL+path, bytes.NewBufferString(body))
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return p.do(req)
}

// Get fetches path.
func (p *testProxy) Get(path string) (*http.Response, []byte) {
	p.t.Helper()
	req, err := http.NewRequest("GET", p.URL+path, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.do(req)
}

func (p *testProxy) do(req *http.Request) (*http.Response, []byte) {
	p.t.Helper()
	resp, err := testClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("%s %s: reading body: %v", req.Method, req.URL.Path, err)
	}
	return resp, b
}

// waitWritten waits until every answer the proxy has acknowledged is on disk: /stats says nothing is
// pending in the writer.
func (p *testProxy) waitWritten() {
	p.t.Helper()
	waitFor(p.t, "the writer to write every answer", func() bool { return getStats(p.t, p).Writer.Pending == 0 })
}

// waitFor polls cond until it holds, failing the test after a generous bound (it catches hangs, it does not
// measure speed).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
