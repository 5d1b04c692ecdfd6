package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"llmcache/bench/fakeupstream"
)

// routeOutcomes is requests.by_route of /stats.
type routeOutcomes map[string]map[string]int64

func getByRoute(t *testing.T, p *testProxy) (routeOutcomes, map[string]json.RawMessage) {
	t.Helper()
	resp, body := p.Get("/stats")
	var s struct {
		Requests struct {
			ByRoute routeOutcomes `json:"by_route"`
		} `json:"requests"`
	}
	var all map[string]json.RawMessage
	if resp.StatusCode != 200 || json.Unmarshal(body, &s) != nil || json.Unmarshal(body, &all) != nil {
		t.Fatalf("/stats: status %d, body %s", resp.StatusCode, body)
	}
	return s.Requests.ByRoute, all
}

// scrape fetches /metrics and parses it with Prometheus' own text parser.
func scrape(t *testing.T, p *testProxy) map[string]*dto.MetricFamily {
	t.Helper()
	resp, body := p.Get("/metrics")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v\n%s", err, body)
	}
	return families
}

// metricValue finds the sample of family name whose labels include want.
func metricValue(t *testing.T, families map[string]*dto.MetricFamily, name string, want map[string]string) (float64, dto.MetricType) {
	t.Helper()
	f := families[name]
	if f == nil {
		t.Fatalf("/metrics has no %s", name)
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), f.GetType()
		case m.Gauge != nil:
			return m.Gauge.GetValue(), f.GetType()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), f.GetType()
		}
		return m.Untyped.GetValue(), f.GetType()
	}
	t.Fatalf("/metrics %s has no sample with labels %v", name, want)
	return 0, 0
}

func totalTokens(t *testing.T, body []byte) int64 {
	t.Helper()
	var a struct {
		Usage struct {
			TotalTokens int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &a); err != nil || a.Usage.TotalTokens == 0 {
		t.Fatalf("no usage in %s", body)
	}
	return a.Usage.TotalTokens
}

// TestE2EStatsAndMetricsCountAKnownMix: after a known mix of misses, hits, coalesced-free errors on every
// route, /stats and /metrics report exactly those counts (the same figures in both), tokens saved add up
// from the stored usage, and a restart's SQLite hit counts as db_hit.
func TestE2EStatsAndMetricsCountAKnownMix(t *testing.T) {
	p := newTestProxy(t, noRetries)
	post := func(path, body string, want int) []byte {
		t.Helper()
		resp, b := p.Post(path, body)
		if resp.StatusCode != want {
			t.Fatalf("POST %s %s: status %d, want %d: %s", path, body, resp.StatusCode, want, b)
		}
		return b
	}
	first := post("/v1/chat/completions", chatBody("mix one"), 200)
	post("/v1/chat/completions", chatBody("mix two"), 200)
	post("/v1/chat/completions", chatBody("mix three"), 200)
	post("/v1/chat/completions", chatBody("mix one"), 200) // memory hit
	post("/v1/chat/completions", chatBody("mix one"), 200) // memory hit
	post("/v1/chat/completions", `{"model":`, 400)         // malformed: an error on the chat route
	p.Fake.FailNext(1, 500, "", nil)
	post("/v1/chat/completions", chatBody("mix fails"), 500)
	if resp, b := p.Post("/v1/chat/completions", chatBody("mix one"), "Cache-Control", "no-cache"); resp.StatusCode != 200 {
		t.Fatalf("refresh: %d %s", resp.StatusCode, b)
	}
	if resp, b := p.Post("/v1/chat/completions", chatBody("mix bypass"), "X-Cache-Mode", "off"); resp.StatusCode != 200 {
		t.Fatalf("bypass: %d %s", resp.StatusCode, b)
	}
	completion := post("/v1/completions", completionBody("mix prompt", false, false), 200)
	post("/v1/completions", completionBody("mix prompt", false, false), 200) // hit
	post("/v1/embeddings", `{"model":"emb","input":["x","y"]}`, 200)
	post("/v1/embeddings", `{"model":"emb","input":["x","y"]}`, 200) // hit
	post("/v1/embeddings", `{"model":"emb","input":["x","z"]}`, 200) // partial
	for range 2 {
		if resp, _ := p.Get("/v1/models"); resp.StatusCode != 200 {
			t.Fatalf("models: %d", resp.StatusCode)
		}
	}

	want := routeOutcomes{
		"chat":        {"miss": 3, "memory_hit": 2, "error": 2, "refresh": 1, "bypass": 1},
		"completions": {"miss": 1, "memory_hit": 1},
		"embeddings":  {"miss": 1, "memory_hit": 1, "partial": 1},
		"models":      {"miss": 1, "memory_hit": 1},
	}
	got, all := getByRoute(t, p)
	families := scrape(t, p)
	for route, outcomes := range got {
		for outcome, n := range outcomes {
			if n != want[route][outcome] {
				t.Errorf("/stats %s/%s = %d, want %d", route, outcome, n, want[route][outcome])
			}
			if n == 0 { // /metrics shows only what occurred
				for _, name := range []string{"llmcache_requests_total", "llmcache_request_duration_seconds"} {
					if hasSeries(families, name, map[string]string{"route": route, "outcome": outcome}) {
						t.Errorf("/metrics %s{route=%q,outcome=%q} is there, but it never occurred", name, route, outcome)
					}
				}
				continue
			}
			v, typ := metricValue(t, families, "llmcache_requests_total", map[string]string{"route": route, "outcome": outcome})
			if int64(v) != n || typ != dto.MetricType_COUNTER {
				t.Errorf("/metrics llmcache_requests_total{route=%q,outcome=%q} = %v (%v), /stats says %d", route, outcome, v, typ, n)
			}
			v, typ = metricValue(t, families, "llmcache_request_duration_seconds", map[string]string{"route": route, "outcome": outcome})
			if int64(v) != n || typ != dto.MetricType_HISTOGRAM {
				t.Errorf("/metrics llmcache_request_duration_seconds{route=%q,outcome=%q} has %v samples (%v), /stats counts %d", route, outcome, v, typ, n)
			}
		}
	}
	saved := 2*totalTokens(t, first) + totalTokens(t, completion)
	var tokens int64
	json.Unmarshal(all["tokens_saved"], &tokens)
	if tokens != saved {
		t.Errorf("/stats tokens_saved = %d, want %d (the usage of the answers hits served)", tokens, saved)
	}
	var hitRate float64
	json.Unmarshal(all["hit_rate"], &hitRate)
	if v, typ := metricValue(t, families, "llmcache_hit_ratio", nil); v != hitRate || typ != dto.MetricType_GAUGE || hitRate == 0 {
		t.Errorf("/metrics llmcache_hit_ratio = %v (%v), /stats hit_rate = %v", v, typ, hitRate)
	}
	if v, _ := metricValue(t, families, "llmcache_tokens_saved_total", nil); int64(v) != saved {
		t.Errorf("/metrics llmcache_tokens_saved_total = %v, want %d", v, saved)
	}
	if v, typ := metricValue(t, families, "llmcache_upstream_calls_total", map[string]string{"endpoint": "fake"}); v != 10 || typ != dto.MetricType_COUNTER {
		t.Errorf("llmcache_upstream_calls_total{endpoint=fake} = %v (%v), want 10 (9 answers and the models listing, which goes through the scheduler too)", v, typ)
	}
	if v, _ := metricValue(t, families, "llmcache_upstream_errors_total", map[string]string{"endpoint": "fake", "kind": "status_5xx"}); v != 1 {
		t.Errorf("upstream 5xx errors = %v, want 1", v)
	}
	// The stats actor takes latency reports asynchronously: wait for them to land.
	latency := map[string]string{"endpoint": "fake"}
	waitFor(t, "upstream latency samples in /metrics", func() bool {
		f := scrape(t, p)
		if !hasSeries(f, "llmcache_upstream_request_duration_seconds", latency) {
			return false
		}
		v, _ := metricValue(t, f, "llmcache_upstream_request_duration_seconds", latency)
		return v >= 1
	})
	if _, typ := metricValue(t, scrape(t, p), "llmcache_upstream_request_duration_seconds", latency); typ != dto.MetricType_HISTOGRAM {
		t.Errorf("llmcache_upstream_request_duration_seconds is a %v, want a histogram", typ)
	}
	for _, g := range []string{"llmcache_memory_entries", "llmcache_db_entries", "llmcache_writer_pending", "llmcache_upstream_in_flight"} {
		if _, typ := metricValue(t, families, g, nil); typ != dto.MetricType_GAUGE {
			t.Errorf("%s is %v, want a gauge", g, typ)
		}
	}
	for _, field := range []string{"hit_rate", "hit_rate_last_minute", "requests_last_minute", "memory", "upstream", "writer", "store", "uptime_seconds"} {
		if _, ok := all[field]; !ok {
			t.Errorf("/stats has no %q", field)
		}
	}

	// A restart empties memory: the same request is now a SQLite hit, and saves its tokens again.
	p.Restart()
	post("/v1/chat/completions", chatBody("mix one"), 200)
	got, _ = getByRoute(t, p)
	if got["chat"]["db_hit"] != 1 || got["chat"]["miss"] != 0 {
		t.Errorf("after a restart: chat %v, want one db_hit and nothing else", got["chat"])
	}
}

// TestE2ELogsMaskSecretsAndSummarise: with JSON logs at debug level (-v), every line is JSON, the start-up
// line carries the configuration with every secret masked, each request gets a debug line, the summary
// line comes every stats_log_interval_seconds, and no secret (keys, admin token, credential headers, a
// client's Authorization) appears anywhere.
func TestE2ELogsMaskSecretsAndSummarise(t *testing.T) {
	var out syncBuffer
	log := newLogger(&out, "json", slog.LevelDebug)
	p := newLoggedTestProxy(t, func(c *fileConfig) {
		c.LogFormat = "json"
		c.StatsLogInterval = 0.2
		c.AdminToken = "admin-SECRET-1"
		c.APIHeaders = map[string]string{"X-Api-Key": "hdr-SECRET-2", "User-Agent": "llmcache-test"}
		c.APIEndpoints[0].APIKey = "sk-SECRET-3"
		c.APIEndpoints[0].Headers = map[string]string{"X-Auth-Token": "tok-SECRET-4"}
	}, log)
	p.Post("/v1/chat/completions", chatBody("log me"), "Authorization", "Bearer client-SECRET-5")
	p.Post("/v1/chat/completions", chatBody("log me"), "Authorization", "Bearer client-SECRET-5")
	p.Post("/v1/chat/completions", `{"model":`)
	if got := p.Fake.Requests()[0].Header["Authorization"]; got != "Bearer sk-SECRET-3" {
		t.Fatalf("the endpoint's key did not reach the upstream (got %q): the test would prove nothing", got)
	}
	waitFor(t, "a summary line", func() bool { return strings.Contains(out.String(), `"msg":"stats"`) })
	p.Stop()

	text := out.String()
	if strings.Contains(text, "SECRET") {
		for _, line := range strings.Split(text, "\n") {
			if strings.Contains(line, "SECRET") {
				t.Errorf("a secret reached the log: %s", line)
			}
		}
	}
	seen := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		msg, _ := line["msg"].(string)
		seen[msg]++
		switch msg {
		case "configuration":
			if line["admin_token"] != "***" || line["api_headers"].(map[string]any)["X-Api-Key"] != "***" {
				t.Errorf("start-up line does not mask: %s", sc.Text())
			}
			ep, _ := line["endpoint_0"].(map[string]any)
			if ep["api_key"] != "***" || ep["headers"].(map[string]any)["X-Auth-Token"] != "***" || ep["name"] != "fake" {
				t.Errorf("start-up line's endpoint: %v", ep)
			}
		case "stats":
			if _, ok := line["hit_rate"]; !ok {
				t.Errorf("summary line without hit_rate: %s", sc.Text())
			}
		}
	}
	if seen["configuration"] != 1 || seen["request"] != 3 || seen["stats"] < 1 {
		t.Errorf("log lines by message %v; want one configuration line, 3 request lines, summary lines", seen)
	}
}

// TestE2ENoRequestLinesAtInfo: at the default level a request writes no log line.
func TestE2ENoRequestLinesAtInfo(t *testing.T) {
	var out syncBuffer
	p := newLoggedTestProxy(t, func(c *fileConfig) { c.StatsLogInterval = 0 }, newLogger(&out, "text", slog.LevelInfo))
	for i := range 20 {
		p.Post("/v1/chat/completions", chatBody("quiet "+strings.Repeat("x", i)))
	}
	p.Stop() // whatever the requests were to log is written by now
	// Start-up lines (configuration, listening, the start-up maintenance run) are expected; request lines not.
	if text := out.String(); strings.Contains(text, "msg=request") || strings.Contains(text, "chat/completions") {
		t.Errorf("requests wrote log lines at info level, want none:\n%s", text)
	}
}

// TestE2EDashboard: the status page is HTML with the three charts carrying the series, the endpoints with
// their health, and escaped names; it loads nothing from elsewhere.
func TestE2EDashboard(t *testing.T) {
	fakes := startFakes(t, 1, fakeupstream.Options{})
	p := newTestProxy(t, func(c *fileConfig) {
		c.chartTick, c.chartBucket = 20*time.Millisecond, 100*time.Millisecond
		c.EjectAfter = 1
		c.APIEndpoints = append(c.APIEndpoints,
			endpointConfig{Name: "<b>gpu</b>", URL: fakes[0].URL(), Weight: 1},
			endpointConfig{Name: "down", URL: deadURL(t), Weight: 1})
	})
	for i := range 30 {
		p.Post("/v1/chat/completions", chatBody("dash "+strconv.Itoa(i%10)))
	}
	// The charts draw closed buckets only, and latency reaches them asynchronously: wait until each draws
	// a line.
	var page string
	waitFor(t, "every chart to draw its series", func() bool {
		resp, body := p.Get("/dashboard")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("/dashboard: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		page = string(body)
		for _, series := range []string{"hit_rate", "requests_per_second", "upstream_latency_ms"} {
			if !chartDrawsLine(t, page, series) {
				return false
			}
		}
		return true
	})
	if strings.Contains(page, "<b>gpu</b>") || !strings.Contains(page, "&lt;b&gt;gpu&lt;/b&gt;") {
		t.Errorf("the endpoint name is not escaped")
	}
	if !strings.Contains(page, "ejected") || !strings.Contains(page, "healthy") {
		t.Errorf("endpoint health missing from the page")
	}
	if strings.Contains(page, "http://") && strings.Contains(page, "<script") || strings.Contains(page, "https://") {
		t.Errorf("the page loads something from elsewhere")
	}
	if !strings.Contains(page, `http-equiv="refresh"`) {
		t.Errorf("the page does not refresh itself")
	}
}

// chartDrawsLine reports whether the dashboard's chart of series draws a line with at least one point.
func chartDrawsLine(t *testing.T, page, series string) bool {
	t.Helper()
	i := strings.Index(page, `data-series="`+series+`"`)
	if i < 0 {
		t.Fatalf("no chart with data-series=%q:\n%s", series, page)
	}
	svg := page[i:]
	end := strings.Index(svg, "</svg>")
	if end < 0 {
		t.Fatalf("the chart %q does not end: %s", series, svg)
	}
	return drawnLine.MatchString(svg[:end])
}

// drawnLine is a chart's line path with a point (an empty series has d="").
var drawnLine = regexp.MustCompile(`<path class="line [^"]*" data-line="[^"]*" d="M`)
