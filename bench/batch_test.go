package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
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

	"github.com/valyala/fasthttp"

	"llmcache/bench/fakeupstream"
)

// BenchmarkBatch runs a whole Batch API batch through the proxy, as an evaluation tool submits one (upload,
// create, poll, download the output), next to the same requests sent live by a client at the same
// concurrency, in one run:
//
//   - cached: every line's answer is in the cache (the batch ran once before): lines/s and the proxy's
//     peak RSS during the run, next to its RSS before it (what the run before left: caches, heap);
//   - cached/answer=8KB: the same with large answers, whose output file is larger than the proxy's RSS;
//   - half-cached: half the lines' answers cached, the rest from the fake upstream with 20 ms latency.
//
// The proxies are the real binary, built once, each a process of its own (so that its RSS is its own), in
// front of the in-process fake upstream. Run with -benchtime 1x: each iteration is a whole batch. -short
// runs 2,000 lines instead of 50,000.
func BenchmarkBatch(b *testing.B) {
	n := 50_000
	if testing.Short() {
		n = 2_000
	}
	b.Run("cached", func(b *testing.B) { benchBatch(b, n, fakeupstream.Options{}, n, 0) })
	b.Run("cached/answer=8KB", func(b *testing.B) { benchBatch(b, n, fakeupstream.Options{AnswerBytes: 8 << 10}, n, 0) })
	b.Run("half-cached/latency=20ms", func(b *testing.B) { benchBatch(b, n, fakeupstream.Options{}, n/2, 20*time.Millisecond) })
}

// batchConcurrency is batch_concurrency's default with the default max_concurrent_requests (100), and the
// number of goroutines the live client sends with.
const batchConcurrency = 50

// benchBatch measures a batch of n distinct chat lines of which the first cached have answers in the cache,
// against a fake upstream that answers after latency; then the same requests sent live to a second proxy
// in the same state.
func benchBatch(b *testing.B, n int, opts fakeupstream.Options, cached int, latency time.Duration) {
	fake := startFake(b, opts)
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = fakeupstream.ChatRequest(i)
	}
	batchProxy, liveProxy := startBinary(b, fake.URL()), startBinary(b, fake.URL())
	for _, p := range []*binaryProxy{batchProxy, liveProxy} { // the same answers cached in both
		if cached > 0 {
			id := p.upload(b, batchInput(bodies[:cached]))
			p.runBatch(b, id)
			p.waitWritten(b)
		}
	}
	input := batchInput(bodies)
	fileID := batchProxy.upload(b, input)
	fake.SetLatency(latency)

	b.ResetTimer()
	var took time.Duration
	var peak, outBytes int64
	calls := fake.Calls()
	before := batchProxy.status("VmRSS:")
	for range b.N {
		batchProxy.resetPeakRSS()
		t0 := time.Now()
		outBytes = batchProxy.runBatch(b, fileID)
		took += time.Since(t0)
		peak = max(peak, batchProxy.status("VmHWM:"))
	}
	b.StopTimer()
	b.ReportMetric(float64(n*b.N)/took.Seconds(), "lines/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MB")
	b.ReportMetric(float64(before)/(1<<20), "RSS-before-MB")
	b.ReportMetric(float64(outBytes)/(1<<20), "output-MB")
	b.ReportMetric(float64(fake.Calls()-calls)/float64(b.N), "upstream-calls/batch")

	// The same requests, live, at the same concurrency, against the proxy in the same state (its first
	// iteration only: the batch's later iterations found everything cached).
	liveCalls := fake.Calls()
	t0 := time.Now()
	sendLive(b, liveProxy.proxy, bodies)
	b.ReportMetric(float64(n)/time.Since(t0).Seconds(), "live-req/s")
	b.ReportMetric(float64(fake.Calls()-liveCalls), "live-upstream-calls")
}

// batchInput is a batch input file of one line per body.
func batchInput(bodies [][]byte) []byte {
	var buf bytes.Buffer
	for i, body := range bodies {
		fmt.Fprintf(&buf, `{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":%s}`+"\n", i, body)
	}
	return buf.Bytes()
}

// upload posts content to /v1/files and returns the file's id.
func (p *proxy) upload(tb testing.TB, content []byte) string {
	tb.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	w.WriteField("purpose", "batch")
	fw, _ := w.CreateFormFile("file", "batch.jsonl")
	fw.Write(content)
	w.Close()
	resp, err := http.Post("http://"+p.addr+"/v1/files", w.FormDataContentType(), &body)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var f struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&f); err != nil || f.ID == "" {
		tb.Fatalf("upload: status %d, %v", resp.StatusCode, err)
	}
	return f.ID
}

// runBatch creates a batch on fileID, polls it every 20 ms until it ends, downloads its output file and
// returns the output's size. Every line must have succeeded.
func (p *proxy) runBatch(tb testing.TB, fileID string) int64 {
	tb.Helper()
	base := "http://" + p.addr + "/v1/"
	var batch struct {
		ID            string `json:"id"`
		Status        string `json:"status"`
		OutputFileID  string `json:"output_file_id"`
		RequestCounts struct {
			Total, Completed, Failed int64
		} `json:"request_counts"`
	}
	call := func(method, path string, body io.Reader) {
		req, _ := http.NewRequest(method, base+path, body)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&batch); err != nil || resp.StatusCode != 200 {
			tb.Fatalf("%s %s: status %d, %v", method, path, resp.StatusCode, err)
		}
	}
	call("POST", "batches", strings.NewReader(`{"input_file_id":"`+fileID+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`))
	for deadline := time.Now().Add(30 * time.Minute); batch.Status != "completed"; time.Sleep(20 * time.Millisecond) {
		if batch.Status == "failed" || batch.Status == "cancelled" || time.Now().After(deadline) {
			tb.Fatalf("batch %s: %s", batch.ID, batch.Status)
		}
		call("GET", "batches/"+batch.ID, nil)
	}
	if batch.RequestCounts.Failed != 0 || batch.RequestCounts.Completed != batch.RequestCounts.Total {
		tb.Fatalf("batch %s: %+v", batch.ID, batch.RequestCounts)
	}
	resp, err := http.Get(base + "files/" + batch.OutputFileID + "/content")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode != 200 {
		tb.Fatalf("output file: status %d, %v", resp.StatusCode, err)
	}
	return n
}

// sendLive posts every body to p's chat route from batchConcurrency goroutines.
func sendLive(b *testing.B, p *proxy, bodies [][]byte) {
	c := client(p.addr)
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for range batchConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for {
				next.Lock()
				j := i
				i++
				next.Unlock()
				if j >= len(bodies) {
					return
				}
				post(b, c, chatPath, bodies[j], req, resp)
			}
		}()
	}
	wg.Wait()
}

// binaryProxy is the llmcache binary running as a process of its own.
type binaryProxy struct {
	*proxy
	pid int
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

var listening = regexp.MustCompile(`msg="llmcache listening".* addr=(\S+)`)

// startBinary builds the binary (once per run) and starts it with the default configuration but
// batch_concurrency (its default, made explicit), one endpoint at upstreamURL and a database in a temporary
// directory; it is stopped with SIGTERM when the benchmark ends.
func startBinary(tb testing.TB, upstreamURL string) *binaryProxy {
	tb.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "llmcache-bench-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "llmcache")
		if out, err := exec.Command("go", "build", "-o", binPath, "llmcache").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	dir := tb.TempDir()
	cfg := fmt.Sprintf("listen = \"127.0.0.1:0\"\ndatabase_url = %q\nbatch_concurrency = %d\n\n[[api_endpoints]]\nname = \"fake\"\nurl = %q\nweight = 1\n",
		filepath.Join(dir, "cache.db"), batchConcurrency, upstreamURL)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(binPath, "-config", cfgPath)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	addr := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() { // read to the end: a full pipe would stop the process
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		cmd.Wait()
	}()
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
	})
	select {
	case a := <-addr:
		return &binaryProxy{proxy: &proxy{addr: a}, pid: cmd.Process.Pid}
	case <-done:
		tb.Fatal("llmcache exited before listening")
	case <-time.After(time.Minute):
		tb.Fatal("llmcache did not start listening within a minute")
	}
	return nil
}

// resetPeakRSS resets the process's peak resident set size (Linux; best effort).
func (p *binaryProxy) resetPeakRSS() {
	_ = os.WriteFile("/proc/"+strconv.Itoa(p.pid)+"/clear_refs", []byte("5"), 0)
}

// status reads a size of the process's /proc status in bytes: "VmHWM:" its peak resident set size since the
// last reset, "VmRSS:" its resident set size now; 0 when unknown.
func (p *binaryProxy) status(field string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
