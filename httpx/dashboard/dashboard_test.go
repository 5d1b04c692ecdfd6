package dashboard

import (
	"bytes"
	"encoding/xml"
	"errors"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func render(t testing.TB, v *View) string {
	t.Helper()
	var b bytes.Buffer
	if err := Render(&b, v); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var svgRe = regexp.MustCompile(`(?s)<svg class="chart".*?</svg>`)

// svgDoc is the part of a chart the tests read back.
type svgDoc struct {
	Series string     `xml:"data-series,attr"`
	Title  string     `xml:"title"`
	Paths  []struct { // data lines only, after charts()
		Name string `xml:"data-line,attr"`
		D    string `xml:"d,attr"`
	} `xml:"path"`
	Texts []string `xml:"text"`
}

// charts extracts every chart and parses it as XML, which fails on anything an SVG viewer would reject
// as malformed.
func charts(t *testing.T, page string) map[string]svgDoc {
	t.Helper()
	out := map[string]svgDoc{}
	for _, s := range svgRe.FindAllString(page, -1) {
		var d svgDoc
		if err := xml.Unmarshal([]byte(s), &d); err != nil {
			t.Fatalf("chart is not well-formed XML: %v\n%s", err, s)
		}
		if d.Series == "" || d.Title == "" {
			t.Fatalf("chart without data-series or title:\n%s", s)
		}
		// Grid paths carry no data-line; keep only the data lines.
		lines := d.Paths[:0]
		for _, p := range d.Paths {
			if p.Name != "" {
				lines = append(lines, p)
			}
		}
		d.Paths = lines
		out[d.Series] = d
	}
	if len(out) != 3 {
		t.Fatalf("got charts %v, want 3", len(out))
	}
	return out
}

type xy struct{ x, y float64 }

// segments parses a path written by appendPath: "M" opens a segment, "L" continues it, "h0" marks a
// lone point.
func segments(t *testing.T, d string) [][]xy {
	t.Helper()
	var segs [][]xy
	d = strings.ReplaceAll(d, "h0", "")
	for i := 0; i < len(d); {
		cmd := d[i]
		j := i + 1
		for j < len(d) && d[j] != 'M' && d[j] != 'L' {
			j++
		}
		var p xy
		parts := strings.Fields(d[i+1 : j])
		if len(parts) != 2 {
			t.Fatalf("bad command %q in %q", d[i:j], d)
		}
		var err1, err2 error
		p.x, err1 = strconv.ParseFloat(parts[0], 64)
		p.y, err2 = strconv.ParseFloat(parts[1], 64)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		switch cmd {
		case 'M':
			segs = append(segs, []xy{p})
		case 'L':
			if len(segs) == 0 {
				t.Fatalf("path starts with L: %q", d)
			}
			segs[len(segs)-1] = append(segs[len(segs)-1], p)
		default:
			t.Fatalf("unknown command %q in %q", cmd, d)
		}
		i = j
	}
	return segs
}

func path(t *testing.T, c svgDoc, name string) [][]xy {
	t.Helper()
	for _, p := range c.Paths {
		if p.Name == name {
			return segments(t, p.D)
		}
	}
	t.Fatalf("chart %s has no line %s", c.Series, name)
	return nil
}

// hour returns n points 10 s apart ending at t0, filled by f.
func hour(n int, f func(i int, p *Point)) []Point {
	pts := make([]Point, n)
	for i := range pts {
		pts[i] = Point{At: t0.Add(-time.Duration(n-1-i) * 10 * time.Second)}
		f(i, &pts[i])
	}
	return pts
}

func TestChartsCarrySeries(t *testing.T) {
	v := &View{Now: t0, Series: hour(360, func(i int, p *Point) {
		p.HitRate = float64(i) / 359 // 0 at the oldest point, 1.0 at now
		p.RequestsPerSecond = 800
		p.LatencyP50MS, p.LatencyP99MS = 400, 1800
	})}
	cs := charts(t, render(t, v))

	hit := path(t, cs["hit_rate"], "hit_rate")
	if len(hit) != 1 || len(hit[0]) != 360 {
		t.Fatalf("hit rate: got %d segments, want 1 of 360 points", len(hit))
	}
	first, last := hit[0][0], hit[0][359]
	if first.y != plotB || last.y != plotT {
		t.Errorf("hit rate 0 at y=%v (want bottom %v), 1.0 at y=%v (want top %v)", first.y, plotB, last.y, plotT)
	}
	if last.x != plotR || first.x < plotL || first.x > plotL+1 {
		t.Errorf("x from %v to %v, want about %v to %v", first.x, last.x, plotL, plotR)
	}
	if want := []string{"0%", "25%", "50%", "75%", "100%", "-60m", "-30m", "now"}; !containsAll(cs["hit_rate"].Texts, want) {
		t.Errorf("hit rate labels %q, want %q among them", cs["hit_rate"].Texts, want)
	}

	// 800/s on an axis to 1000: four fifths up the plot.
	req := path(t, cs["requests_per_second"], "requests_per_second")
	if y, want := req[0][0].y, plotB-0.8*(plotB-plotT); math.Abs(y-want) > 0.05 {
		t.Errorf("800/s at y=%v, want %v", y, want)
	}
	for _, name := range []string{"p50", "p99"} {
		if segs := path(t, cs["upstream_latency_ms"], name); len(segs) != 1 || len(segs[0]) != 360 {
			t.Errorf("latency %s: got %d segments", name, len(segs))
		}
	}
	if want := []string{"0", "500ms", "1s", "1.5s", "2s"}; !containsAll(cs["upstream_latency_ms"].Texts, want) {
		t.Errorf("latency labels %q, want %q among them", cs["upstream_latency_ms"].Texts, want)
	}
	// p99 1800 ms on an axis to 2000.
	if y := path(t, cs["upstream_latency_ms"], "p99")[0][0].y; math.Abs(y-(plotB-0.9*(plotB-plotT))) > 0.05 {
		t.Errorf("p99 1800 at y=%v", y)
	}
}

func containsAll(have, want []string) bool {
	set := map[string]bool{}
	for _, h := range have {
		set[h] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}

func TestGapsBreakLines(t *testing.T) {
	pts := hour(60, func(i int, p *Point) {
		p.RequestsPerSecond, p.HitRate, p.LatencyP50MS, p.LatencyP99MS = 10, 0.5, 100, 200
		if i >= 20 && i < 25 { // no requests: no hit rate, no latency
			p.HitRate, p.LatencyP50MS, p.LatencyP99MS = math.NaN(), math.NaN(), math.NaN()
		}
		if i == 40 {
			p.LatencyP99MS = math.Inf(1) // must not reach the SVG either
		}
	})
	// Intervals 50..54 missing altogether: every line breaks there.
	pts = append(pts[:50], pts[55:]...)
	page := render(t, &View{Now: t0, Series: pts})
	for _, bad := range []string{"NaN", "Inf"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	cs := charts(t, page)
	for _, c := range []struct {
		chart, line string
		lens        []int
	}{
		{"hit_rate", "hit_rate", []int{20, 25, 5}},
		{"requests_per_second", "requests_per_second", []int{50, 5}},
		{"upstream_latency_ms", "p50", []int{20, 25, 5}},
		{"upstream_latency_ms", "p99", []int{20, 15, 9, 5}},
	} {
		segs := path(t, cs[c.chart], c.line)
		var lens []int
		for _, s := range segs {
			lens = append(lens, len(s))
		}
		if !slices.Equal(lens, c.lens) {
			t.Errorf("%s: segment lengths %v, want %v", c.line, lens, c.lens)
		}
	}
}

func TestLonePointIsDrawn(t *testing.T) {
	pts := hour(3, func(i int, p *Point) { p.HitRate = math.NaN() })
	pts[1].HitRate = 0.5
	for _, p := range charts(t, render(t, &View{Now: t0, Series: pts}))["hit_rate"].Paths {
		if !strings.HasSuffix(p.D, "h0") || strings.Count(p.D, "M") != 1 {
			t.Errorf("lone point drawn as %q, want one M ending in h0", p.D)
		}
	}
}

func TestOldPointsDropped(t *testing.T) {
	pts := []Point{
		{At: t0.Add(-2 * time.Hour), RequestsPerSecond: 5000}, // would set the axis if it counted
		{At: t0.Add(-30 * time.Minute), RequestsPerSecond: 8},
		{At: t0.Add(-20 * time.Minute), RequestsPerSecond: 8},
	}
	c := charts(t, render(t, &View{Now: t0, Series: pts}))["requests_per_second"]
	if segs := path(t, c, "requests_per_second"); len(segs) != 1 || len(segs[0]) != 2 || segs[0][0].x != (plotL+plotR)/2 {
		t.Errorf("got %v, want two points starting mid-plot", segs)
	}
	if containsAll(c.Texts, []string{"5000"}) || !containsAll(c.Texts, []string{"10"}) {
		t.Errorf("y axis %q should end at 10", c.Texts)
	}
}

func TestEmptyView(t *testing.T) {
	for name, v := range map[string]*View{"nil": nil, "zero": {}} {
		page := render(t, v)
		cs := charts(t, page)
		for _, c := range cs {
			if len(c.Paths) != 0 || !containsAll(c.Texts, []string{"no data yet"}) {
				t.Errorf("%s: chart %s has paths %v, texts %q", name, c.Series, c.Paths, c.Texts)
			}
		}
		if strings.Contains(page, "NaN") || !strings.Contains(page, `content="10"`) {
			t.Errorf("%s: page has NaN or no default refresh", name)
		}
		if !strings.Contains(page, `<div class="value">`+dash+`</div><div class="sub">`+dash+` last minute`) {
			t.Errorf("%s: hit rate with no requests should be %s", name, dash)
		}
	}
	// Points but no upstream calls at all: the latency chart says why it is empty.
	page := render(t, &View{Now: t0, Series: hour(5, func(i int, p *Point) {
		p.LatencyP50MS, p.LatencyP99MS, p.HitRate = math.NaN(), math.NaN(), 1
	})})
	if c := charts(t, page)["upstream_latency_ms"]; !containsAll(c.Texts, []string{"no upstream calls in the last hour"}) {
		t.Errorf("latency chart texts %q", c.Texts)
	}
}

func TestEscaping(t *testing.T) {
	const evil = `<script>alert(1)</script>`
	page := render(t, &View{Version: evil, WriterLastError: evil, Endpoints: []Endpoint{
		{Name: evil, Health: `"><script>`, LastError: evil},
	}, Outcomes: []Count{{Name: evil, Value: 1}}})
	if strings.Contains(page, "<script") {
		t.Fatal("unescaped <script> in page")
	}
	if n := strings.Count(page, "&lt;script&gt;alert(1)&lt;/script&gt;"); n < 5 {
		t.Errorf("escaped name appears %d times, want it in version, banner, endpoint, error and outcome", n)
	}
	if !strings.Contains(page, `class="badge unknown"`) {
		t.Error("unknown health should get the neutral badge")
	}
}

func TestHeadline(t *testing.T) {
	page := render(t, &View{Now: t0, HitRate: 0.8734, HitRateLastMinute: 0.9, Requests: 1234567, TokensSaved: 98765432,
		MemoryBytes: 12345678, MemoryEntries: 4321, DBBytes: -1, DBEntries: -1, WriterPending: 1204, WriterLastError: "disk full", UpstreamInFlight: 96, Queued: 12,
		RefreshSeconds: 5, Uptime: 3*time.Hour + 12*time.Minute, Version: "v1.2.3",
		Endpoints: []Endpoint{
			{Name: "a", Health: "healthy", Calls: 1000, Errors: 3, LatencyP50MS: 412, LatencyP99MS: 1820},
			{Name: "b", Health: "ejected", LatencyP50MS: math.NaN(), LatencyP99MS: math.NaN(), LastError: "503"},
			{Name: "c", Health: "probing"},
		},
		Outcomes: []Count{{"memory_hit", 3000}, {"miss", 999}, {"bypass", 1}, {"partial", 0}}})
	for _, want := range []string{
		">87.3%<", "90.0% last minute", ">1,234,567<", ">98,765,432<", ">11.8 MiB<", "4,321 entries",
		">unknown<", "entries unknown · 1,204 pending", `class="tile bad"`, "Cache writer is failing:</strong> disk full", `content="5"`, "up 3h 12m", "v1.2.3",
		">1 / 3<", "96 in flight · 12 queued", `class="badge healthy"`, `class="badge ejected"`, `class="badge probing"`,
		"3 (0.3%)", ">412 ms<", ">1.82 s<", ">75.0%<", "width:75.0%", "<td>&lt;0.1%</td>", "1,204 pending", "updated 2025-03-01 12:00:00 UTC",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{formatPercent(0.8734), "87.3%"},
		{formatPercent(math.NaN()), dash},
		{formatInt(0), "0"},
		{formatInt(999), "999"},
		{formatInt(1000), "1,000"},
		{formatInt(12345678), "12,345,678"},
		{formatInt(-1234567), "-1,234,567"},
		{formatBytes(0), "0 B"},
		{formatBytes(1023), "1023 B"},
		{formatBytes(1536), "1.5 KiB"},
		{formatBytes(1048575), "1.0 MiB"},
		{formatBytes(12345678), "11.8 MiB"},
		{formatBytes(5 << 30), "5.0 GiB"},
		{formatMS(3.21), "3.2 ms"},
		{formatMS(412.4), "412 ms"},
		{formatMS(999.7), "1.00 s"},
		{formatMS(1820), "1.82 s"},
		{formatRate(812.4), "812/s"},
		{formatRate(12400), "12,400/s"},
		{formatRate(0.25), "0.2/s"},
		{formatDuration(42 * time.Second), "42s"},
		{formatDuration(5*time.Minute + 12*time.Second), "5m 12s"},
		{formatDuration(50 * time.Hour), "2d 2h"},
		{truncate("héllo", 3), "hél…"},
		{truncate("héllo", 5), "héllo"},
		{tickNumber(0.1 * 3), "0.3"},
		{tickNumber(12500), "12.5k"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestNiceTicks(t *testing.T) {
	for _, c := range []struct {
		hi   float64
		want string
	}{
		{100, "[0 25 50 75 100]"},
		{800, "[0 200 400 600 800]"},
		{850, "[0 250 500 750 1000]"},
		{1800, "[0 500 1000 1500 2000]"},
		{0, "[0 0.25 0.5 0.75 1]"},
		{7, "[0 2 4 6 8]"},
		{0.013, "[0 0.005 0.01 0.015]"},
		{1e9, "[0 2.5e+08 5e+08 7.5e+08 1e+09]"},
	} {
		var labels []string
		for _, v := range niceTicks(0, c.hi, 5) {
			labels = append(labels, strconv.FormatFloat(v, 'g', -1, 32))
		}
		if got := "[" + strings.Join(labels, " ") + "]"; got != c.want {
			t.Errorf("niceTicks(0, %v) = %s, want %s", c.hi, got, c.want)
		}
	}
	// Every range gets 3 to 5 ticks covering it.
	for hi := 0.001; hi < 1e7; hi *= 1.37 {
		ts := niceTicks(0, hi, 5)
		if len(ts) < 3 || len(ts) > 5 || ts[0] > 0 || ts[len(ts)-1] < hi {
			t.Fatalf("niceTicks(0, %v) = %v", hi, ts)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("closed") }

func TestWriteErrorReturned(t *testing.T) {
	if err := Render(failWriter{}, &View{}); err == nil {
		t.Fatal("want the writer's error")
	}
}

func fullHour() *View {
	return &View{Now: t0, HitRate: 0.5, Series: hour(360, func(i int, p *Point) {
		p.RequestsPerSecond, p.HitRate, p.LatencyP50MS, p.LatencyP99MS = 800+float64(i%7), float64(i)/360, 400+float64(i%13), 1800-float64(i%11)
	}), Endpoints: []Endpoint{{Name: "a", Health: "healthy"}, {Name: "b", Health: "ejected"}},
		Outcomes: []Count{{"memory_hit", 10}, {"miss", 3}}}
}

func BenchmarkRender(b *testing.B) {
	v := fullHour()
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := Render(&buf, v); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}

// TestSample writes a realistic page for a person to look at:
// DASHBOARD_SAMPLE=/tmp/dash.html go test -run Sample ./httpx/dashboard
func TestSample(t *testing.T) {
	out := os.Getenv("DASHBOARD_SAMPLE")
	if out == "" {
		t.Skip("set DASHBOARD_SAMPLE=/path/to/page.html to write a sample page")
	}
	if err := os.WriteFile(out, []byte(render(t, sampleView())), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", out)
}

// sampleView is an hour of a 200,000-prompt evaluation: the hit rate climbs as prompts repeat, ~800
// requests/s with noise, a five-minute stats outage, and one endpoint ejected.
func sampleView() *View {
	noise := func(i, salt int) float64 { // deterministic, in [-1, 1)
		x := uint32(i*2654435761 + salt*40503)
		x ^= x >> 13
		x *= 0x5bd1e995
		x ^= x >> 15
		return float64(x%2000)/1000 - 1
	}
	pts := hour(360, func(i int, p *Point) {
		f := float64(i) / 359
		p.HitRate = 0.9 * (1 - math.Exp(-4*f)) / (1 - math.Exp(-4))
		p.HitRate = min(max(p.HitRate+0.03*noise(i, 1), 0), 1)
		p.RequestsPerSecond = 800 + 60*noise(i, 2)
		p.LatencyP50MS = 400 + 40*noise(i, 3)
		p.LatencyP99MS = 1800 + 250*noise(i, 4)
		if i < 3 { // warming up: nothing answered yet
			p.HitRate, p.LatencyP50MS, p.LatencyP99MS = math.NaN(), math.NaN(), math.NaN()
		}
	})
	pts = append(pts[:200], pts[230:]...) // the stats lost five minutes
	return &View{
		Now: t0, Uptime: 74 * time.Minute, Version: "llmcache 0.9.0", RefreshSeconds: 10,
		HitRate: 0.6312, HitRateLastMinute: 0.8874, Requests: 2_874_512, TokensSaved: 1_482_339_120,
		MemoryEntries: 182_004, MemoryBytes: 734_003_200, DBEntries: 1_061_554, DBBytes: 6_871_947_673,
		WriterPending: 1_204, WriterLastError: `cannot commit batch of 512 answers to "cache.db": database is locked (SQLITE_BUSY)`,
		UpstreamInFlight: 96, Queued: 12,
		Series: pts,
		Outcomes: []Count{{"memory_hit", 1_402_113}, {"db_hit", 412_390}, {"miss", 1_001_887}, {"coalesced", 40_211},
			{"refresh", 1_024}, {"bypass", 12_880}, {"partial", 310}, {"error", 3_697}},
		Endpoints: []Endpoint{
			{Name: "vllm-a:8000", Health: "healthy", Weight: 3, Calls: 702_114, Retries: 1_201, Ejections: 1, InFlight: 71,
				Errors: 1_377, LatencyP50MS: 402, LatencyP99MS: 1_790},
			{Name: "vllm-b:8000", Health: "ejected", Weight: 1, Calls: 299_773, Retries: 2_980, Ejections: 4, InFlight: 0,
				Errors: 2_320, LatencyP50MS: 655, LatencyP99MS: 4_210,
				LastError: "upstream vllm-b:8000: 503 Service Unavailable: {\"error\":{\"message\":\"The server is overloaded, please retry\"}}"},
			{Name: "openai", Health: "probing", Weight: 1, Calls: 512, Errors: 0, LatencyP50MS: math.NaN(), LatencyP99MS: math.NaN()},
		},
	}
}
