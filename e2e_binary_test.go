package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"llmcache/bench/fakeupstream"
)

// These tests run the real binary, built once per test run, as a user runs it: a config file, signals,
// exit codes and stderr.

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// llmcacheBinary builds the command once and returns its path. It skips in -short mode.
func llmcacheBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the real binary; skipped in -short mode")
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "llmcache-e2e-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "llmcache")
		goTool, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("cannot find the go command: %w", err)
			return
		}
		cmd := exec.Command(goTool, "build", "-o", binPath, ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("cannot build llmcache: %v", binErr)
	}
	return binPath
}

// syncBuffer collects a process's stderr while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cleanEnv is this process's environment without the variables that override llmcache's config.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "DATABASE_URL", "USE_CURL", "CACHE_VERSION", "CACHE_OVERRIDE_MODE", "CACHE_MISS_POOL_SIZE",
			"CACHE_HIT_POOL_SIZE", "MAX_CONCURRENT_REQUESTS", "USE_PROXY", "ENABLE_THINKING", "LISTEN":
			continue
		}
		env = append(env, kv)
	}
	return env
}

var listenAddr = regexp.MustCompile(`msg="llmcache listening".* addr=(\S+)`)

// TestE2EBinarySIGTERM: SIGTERM during a burst of requests ends the process with exit code 0 after the
// requests in flight are answered, and every answer a client received is on disk.
func TestE2EBinarySIGTERM(t *testing.T) {
	bin := llmcacheBinary(t)
	fake := startFake(t, fakeupstream.Options{})
	fake.SetLatency(100 * time.Millisecond)

	dir := t.TempDir()
	dbPath := filepath.Join(dir, "cache.db")
	cfgPath := filepath.Join(dir, "config.toml")
	cfg := fmt.Sprintf(`listen = "127.0.0.1:0"
database_url = %q
max_concurrent_requests = 50

[[api_endpoints]]
name = "fake"
url = %q
weight = 1
`, dbPath, fake.URL())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "-config", cfgPath)
	cmd.Env = cleanEnv()
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var stderr syncBuffer
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderrPipe)
		for sc.Scan() {
			line := sc.Text()
			stderr.Write([]byte(line + "\n"))
			if m := listenAddr.FindStringSubmatch(line); m != nil {
				select {
				case addrCh <- m[1]:
				default:
				}
			}
		}
		exited <- cmd.Wait() // after stderr is drained, as exec requires
	}()
	hasExited := false
	defer func() {
		if !hasExited {
			cmd.Process.Kill()
		}
	}()

	var addr string
	select {
	case addr = <-addrCh:
	case err := <-exited:
		hasExited = true
		t.Fatalf("llmcache exited before listening: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("llmcache did not log its listening address\n%s", stderr.String())
	}
	url := "http://" + addr + "/v1/chat/completions"

	const n = 200
	contents := make([]string, n)
	res := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		contents[i] = "sigterm " + strconv.Itoa(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = send(loadClient, url, chatBody(contents[i]))
		}()
	}
	// Signal while calls are in flight upstream (the first wave of 50 takes 100 ms).
	waitFor(t, "upstream calls in flight", func() bool { return fake.InFlight() >= 10 })
	started := fake.CallsTo("chat")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	select {
	case err := <-exited:
		hasExited = true
		if err != nil {
			t.Fatalf("llmcache exited with %v after SIGTERM, want exit code 0\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("llmcache did not exit after SIGTERM\n%s", stderr.String())
	}

	ok := 0
	kinds := map[string]int{}
	for _, r := range res {
		k := strconv.Itoa(r.status)
		if r.err != nil {
			k = r.err.Error()
			if i := strings.LastIndex(k, ": "); i >= 0 {
				k = k[i+2:]
			}
		}
		kinds[k]++
	}
	t.Logf("outcomes by status or client error: %v", kinds)
	d := openCacheDB(t, dbPath)
	for i, r := range res {
		if r.err != nil || r.status != 200 {
			continue
		}
		ok++
		if err := checkEcho(r.body, contents[i]); err != nil {
			t.Errorf("request %d: %v", i, err)
		}
		key := r.header.Get("X-Cache-Key")
		if !hexKey.MatchString(key) {
			t.Fatalf("request %d: X-Cache-Key %q", i, key)
		}
		d.mustRow(key, r.body)
	}
	// Every call that had reached the upstream before the signal belongs to a request in flight, which
	// must have been answered.
	if int64(ok) < started {
		t.Fatalf("%d requests answered 200, but %d were in flight upstream when SIGTERM arrived", ok, started)
	}
	if n := d.count(); n != ok {
		t.Errorf("%d rows on disk, %d answers given", n, ok)
	}
	t.Logf("%d of %d requests answered before the process exited; %d calls had started at SIGTERM", ok, n, started)
}

// TestE2EBinaryBadConfig: a config the proxy cannot honour stops the start with a non-zero exit and a
// message naming the key.
func TestE2EBinaryBadConfig(t *testing.T) {
	bin := llmcacheBinary(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "cache.db")
	endpoint := "\n[[api_endpoints]]\nurl = \"http://127.0.0.1:9\"\nweight = 1\n"
	cases := []struct {
		name, config string
		env          []string
		names        string
	}{
		{"unknown key", "bogus_knob = 1\n" + endpoint, nil, "bogus_knob"},
		{"unknown key in a table", "[cache]\nmax_itemz = 5\n" + endpoint, nil, "max_itemz"},
		{"unknown endpoint key", "\n[[api_endpoints]]\nurl = \"http://127.0.0.1:9\"\nwieght = 1\n", nil, "wieght"},
		{"wrong type", "cache_hit_pool_size = \"eight\"\n" + endpoint, nil, "cache_hit_pool_size"},
		{"wrong type in a table", "[cache]\nenabled = \"yes\"\n" + endpoint, nil, "enabled"},
		{"hit pool of 0", "cache_hit_pool_size = 0\n" + endpoint, nil, "cache_hit_pool_size"},
		{"miss pool of 0", "cache_miss_pool_size = 0\n" + endpoint, nil, "cache_miss_pool_size"},
		{"negative concurrency", "max_concurrent_requests = -1\n" + endpoint, nil, "max_concurrent_requests"},
		{"negative weight", "\n[[api_endpoints]]\nurl = \"http://127.0.0.1:9\"\nweight = -1\n", nil, "weight"},
		{"no endpoints", "cache_version = 1\n", nil, "api_endpoints"},
		{"endpoint without url", "\n[[api_endpoints]]\nweight = 1\n", nil, "url"},
		{"unknown cache_mode", "cache_mode = \"sometimes\"\n" + endpoint, nil, "cache_mode"},
		{"bad environment", endpoint, []string{"MAX_CONCURRENT_REQUESTS=lots"}, "MAX_CONCURRENT_REQUESTS"},
		{"pool of 0 from the environment", endpoint, []string{"CACHE_HIT_POOL_SIZE=0"}, "cache_hit_pool_size"},
		{"use_curl without a curl binary", "use_curl = true\n" + endpoint, []string{"PATH=" + dir}, "no curl binary"},
		{"missing ca_file", "\n[[api_endpoints]]\nurl = \"https://127.0.0.1:9\"\nca_file = \"/nonexistent/ca.pem\"\n", nil, "ca_file"},
		{"unknown log_format", "log_format = \"xml\"\n" + endpoint, nil, "log_format"},
		{"unknown tokenizer", "[context_trim]\ntokenizer = \"gpt2\"\n" + endpoint, nil, "tokenizer"},
		{"unknown on_overflow", "[context_trim]\non_overflow = \"truncate\"\n" + endpoint, nil, "on_overflow"},
		{"negative max_retries", "max_retries = -1\n" + endpoint, nil, "max_retries"},
	}
	for _, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".toml")
		config := fmt.Sprintf("listen = \"127.0.0.1:0\"\ndatabase_url = %q\n", db) + c.config
		if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin, "-config", path)
		cmd.Env = append(cleanEnv(), c.env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Errorf("%s: llmcache did not exit (it started with a bad config?)\n%s", c.name, stderr.String())
			continue
		}
		code := cmd.ProcessState.ExitCode()
		if err == nil || code == 0 {
			t.Errorf("%s: exit code %d, want non-zero\n%s", c.name, code, stderr.String())
			continue
		}
		if !strings.Contains(stderr.String(), c.names) {
			t.Errorf("%s: stderr does not name %s:\n%s", c.name, c.names, stderr.String())
		}
	}
}
