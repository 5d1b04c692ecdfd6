package dashboard

import (
	"html/template"
	"math"
	"strconv"
	"time"
)

// Chart geometry in viewBox units. 400 wide matches the rendered width of one chart when three sit side
// by side on a laptop screen, so 10-unit axis text reads as about 10 px.
const (
	chartW, chartH = 400, 180
	plotL, plotR   = 42, 392 // left margin holds the y tick labels
	plotT, plotB   = 8, 158  // bottom margin holds the x tick labels
	window         = time.Hour
)

type chart struct {
	Heading string
	Latest  []legend // latest value of each line, shown beside the heading
	// SVG is written by buildChart from numbers and this package's constants only; nothing the caller
	// supplies as text reaches it, which is what makes handing it to the template unescaped safe.
	SVG template.HTML
}

type legend struct{ Class, Text string }

// lineSpec picks one value out of a Point; scale multiplies it (hit rate 0..1 is drawn as 0..100 %).
type lineSpec struct {
	name, class string
	scale       float64
	value       func(*Point) float64
	format      func(float64) string
}

// chartSpec is one chart: its lines share a y axis from 0 to a round value at or above their largest
// point, or to fixedHi when it is positive.
type chartSpec struct {
	series    string // data-series attribute: what tests and scrapers look for
	title     string // the SVG <title>; plain text, no markup
	heading   string
	fixedHi   float64
	tickLabel func(float64) string
	idle      string // shown when there are points but none with a value for these lines
	lines     []lineSpec
}

// timeline is the part of the series inside the hour window, with each point's x coordinate and whether
// the lines must break before it because intervals are missing.
type timeline struct {
	pts []Point
	xs  []float64
	gap []bool
}

func newTimeline(series []Point, now time.Time) timeline {
	start := now.Add(-window)
	i := 0
	for i < len(series) && series[i].At.Before(start) {
		i++
	}
	t := timeline{pts: series[i:]}
	t.xs = make([]float64, len(t.pts))
	t.gap = make([]bool, len(t.pts))
	// The interval is the smallest step between points; a step over twice that means intervals with no
	// point at all (the proxy was down or the stats lagged), drawn as a gap rather than a straight line.
	var step time.Duration
	for j := 1; j < len(t.pts); j++ {
		if d := t.pts[j].At.Sub(t.pts[j-1].At); d > 0 && (step == 0 || d < step) {
			step = d
		}
	}
	for j := range t.pts {
		at := t.pts[j].At
		if at.After(now) {
			at = now // a clock a little ahead must not draw outside the plot
		}
		t.xs[j] = plotL + float64(at.Sub(start))/float64(window)*(plotR-plotL)
		t.gap[j] = j > 0 && step > 0 && t.pts[j].At.Sub(t.pts[j-1].At) > 2*step
	}
	return t
}

func buildChart(t timeline, s chartSpec) chart {
	c := chart{Heading: s.heading}
	hi, seen := 0.0, false
	for _, l := range s.lines {
		for i := range t.pts {
			if v := l.value(&t.pts[i]) * l.scale; finite(v) {
				hi, seen = max(hi, v), true
			}
		}
	}
	b := make([]byte, 0, 2048+len(s.lines)*len(t.pts)*14)
	b = append(b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 `...)
	b = strconv.AppendInt(b, chartW, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, chartH, 10)
	b = append(b, `" role="img" data-series="`...)
	b = append(b, s.series...)
	b = append(b, "\">\n<title>"...)
	b = append(b, s.title...)
	b = append(b, "</title>\n"...)
	if !seen {
		empty := s.idle
		if len(t.pts) == 0 {
			empty = "no data yet"
		}
		b = append(b, xAxis...)
		b = append(b, `<text class="empty" x="`...)
		b = strconv.AppendInt(b, (plotL+plotR)/2, 10)
		b = append(b, `" y="`...)
		b = strconv.AppendInt(b, (plotT+plotB)/2, 10)
		b = append(b, `" text-anchor="middle" dominant-baseline="middle">`...)
		b = append(b, empty...)
		b = append(b, "</text>\n</svg>"...)
		c.SVG = template.HTML(b)
		return c
	}
	if s.fixedHi > 0 {
		hi = s.fixedHi
	} else {
		hi *= 1.05 // headroom: a steady 800/s gets an axis to 1000, not a line glued to the top border
	}
	ticks := niceTicks(0, hi, 5)
	lo, hi := ticks[0], ticks[len(ticks)-1]

	b = append(b, `<path class="grid" d="`...)
	for _, v := range ticks {
		b = append(b, 'M')
		b = strconv.AppendInt(b, plotL, 10)
		b = append(b, ' ')
		b = appendCoord(b, yOf(v, lo, hi))
		b = append(b, 'H')
		b = strconv.AppendInt(b, plotR, 10)
	}
	b = append(b, "\" />\n"...)
	for _, v := range ticks {
		b = append(b, `<text class="axis" x="`...)
		b = strconv.AppendInt(b, plotL-5, 10)
		b = append(b, `" y="`...)
		b = appendCoord(b, yOf(v, lo, hi))
		b = append(b, `" text-anchor="end" dominant-baseline="middle">`...)
		b = append(b, s.tickLabel(v)...)
		b = append(b, "</text>\n"...)
	}
	b = append(b, xAxis...)
	for _, l := range s.lines {
		b = append(b, `<path class="line `...)
		b = append(b, l.class...)
		b = append(b, `" data-line="`...)
		b = append(b, l.name...)
		b = append(b, `" d="`...)
		b = appendPath(b, t, l, lo, hi)
		b = append(b, "\" />\n"...)

		latest := dash
		for i := len(t.pts) - 1; i >= 0; i-- {
			if v := l.value(&t.pts[i]); finite(v) {
				latest = l.format(v)
				break
			}
		}
		c.Latest = append(c.Latest, legend{Class: l.class, Text: latest})
	}
	b = append(b, "</svg>"...)
	c.SVG = template.HTML(b)
	return c
}

// xAxis is the same on every chart: vertical grid lines every 15 minutes, labelled in minutes ago.
var xAxis = func() string {
	var grid, labels []byte
	grid = append(grid, `<path class="grid" d="`...)
	for m := 60; m >= 0; m -= 15 {
		x := plotL + float64(60-m)/60*(plotR-plotL)
		grid = append(grid, 'M')
		grid = appendCoord(grid, x)
		grid = append(grid, ' ')
		grid = strconv.AppendInt(grid, plotT, 10)
		grid = append(grid, 'V')
		grid = strconv.AppendInt(grid, plotB, 10)

		label, anchor := "-"+strconv.Itoa(m)+"m", "middle"
		switch m {
		case 60:
			anchor = "start"
		case 0:
			label, anchor = "now", "end"
		}
		labels = append(labels, `<text class="axis" x="`...)
		labels = appendCoord(labels, x)
		labels = append(labels, `" y="`...)
		labels = strconv.AppendInt(labels, plotB+14, 10)
		labels = append(labels, `" text-anchor="`+anchor+`">`+label+"</text>\n"...)
	}
	return string(append(grid, "\" />\n"...)) + string(labels)
}()

func yOf(v, lo, hi float64) float64 {
	v = min(max(v, lo), hi)
	return plotB - (v-lo)/(hi-lo)*(plotB-plotT)
}

// appendPath writes one SVG path: "M" starts a segment after a NaN, an Inf or missing intervals, "L"
// continues it. A segment of one point gets "h0", a zero-length stroke that round caps draw as a dot;
// without it the point would not show at all.
func appendPath(b []byte, t timeline, l lineSpec, lo, hi float64) []byte {
	n := 0 // points in the open segment
	end := func() {
		if n == 1 {
			b = append(b, "h0"...)
		}
		n = 0
	}
	for i := range t.pts {
		v := l.value(&t.pts[i]) * l.scale
		if !finite(v) {
			end()
			continue
		}
		if t.gap[i] {
			end()
		}
		if n == 0 {
			b = append(b, 'M')
		} else {
			b = append(b, 'L')
		}
		b = appendCoord(b, t.xs[i])
		b = append(b, ' ')
		b = appendCoord(b, yOf(v, lo, hi))
		n++
	}
	end()
	return b
}

// appendCoord writes f with one decimal. Coordinates are small and finite, so integer tenths format
// them exactly and several times faster than strconv.AppendFloat, which dominated rendering.
func appendCoord(b []byte, f float64) []byte {
	n := int64(math.Round(f * 10))
	if n < 0 {
		b, n = append(b, '-'), -n
	}
	b = strconv.AppendInt(b, n/10, 10)
	return append(b, '.', byte('0'+n%10))
}

// niceTicks returns at most maxN (≥ 3) evenly spaced round values, steps of 1, 2, 2.5 or 5 times a power
// of ten, the first at or below lo and the last at or above hi.
func niceTicks(lo, hi float64, maxN int) []float64 {
	if !finite(lo) || !finite(hi) {
		lo, hi = 0, 1
	}
	if hi <= lo {
		hi = lo + 1
	}
	mag := math.Pow(10, math.Floor(math.Log10((hi-lo)/float64(maxN-1))))
	// Some multiplier always fits: with step 10·mag > (hi-lo)/(maxN-1) even rounding both ends outwards
	// adds at most one step.
	for _, m := range [...]float64{1, 2, 2.5, 5, 10} {
		step := m * mag
		first, last := math.Floor(lo/step), math.Ceil(hi/step)
		n := int(last-first) + 1
		if n > maxN {
			continue
		}
		ts := make([]float64, n)
		for i := range ts {
			ts[i] = (first + float64(i)) * step
		}
		return ts
	}
	return []float64{lo, hi}
}

// tickNumber labels an axis value compactly: "0", "2.5", "750", "1500", "12.5k".
func tickNumber(v float64) string {
	if math.Abs(v) >= 10000 {
		return strconv.FormatFloat(v/1000, 'f', -1, 32) + "k"
	}
	// Formatting as float32 drops binary noise such as 0.30000000000000004.
	return strconv.FormatFloat(v, 'f', -1, 32)
}

func tickPercent(v float64) string { return tickNumber(v) + "%" }

// tickMS labels a latency axis, switching to seconds where milliseconds get long: "250ms", "1.5s".
func tickMS(ms float64) string {
	switch {
	case ms == 0:
		return "0"
	case ms < 1000:
		return tickNumber(ms) + "ms"
	}
	return tickNumber(ms/1000) + "s"
}
