package dashboard

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// dash stands for a figure we do not have (NaN, unknown), so a blank is never mistaken for zero.
const dash = "–"

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// formatPercent renders a 0..1 ratio with one decimal: 0.8734 → "87.3%".
func formatPercent(f float64) string {
	if !finite(f) {
		return dash
	}
	return string(strconv.AppendFloat(nil, f*100, 'f', 1, 64)) + "%"
}

// formatInt groups thousands with commas: 12345678 → "12,345,678".
func formatInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	digits := len(s)
	if n < 0 {
		digits--
	}
	if digits <= 3 {
		return s
	}
	b := make([]byte, 0, len(s)+(digits-1)/3)
	if n < 0 {
		b, s = append(b, '-'), s[1:]
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	return string(b)
}

// formatBytes uses binary units throughout the page: 12345678 → "11.8 MiB"; negative means unknown.
func formatBytes(n int64) string {
	if n < 0 {
		return "unknown"
	}
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	f := float64(n)
	units := [...]string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	u := -1
	// The 1023.95 bound keeps 1048575 bytes from printing as "1024.0 KiB".
	for f >= 1023.95 && u < len(units)-1 {
		f /= 1024
		u++
	}
	return string(strconv.AppendFloat(nil, f, 'f', 1, 64)) + " " + units[u]
}

// formatMS renders a latency: "3.2 ms", "412 ms", "1.82 s".
func formatMS(ms float64) string {
	switch {
	case !finite(ms):
		return dash
	case ms < 10:
		return string(strconv.AppendFloat(nil, ms, 'f', 1, 64)) + " ms"
	case ms < 999.5:
		return string(strconv.AppendFloat(nil, ms, 'f', 0, 64)) + " ms"
	}
	return string(strconv.AppendFloat(nil, ms/1000, 'f', 2, 64)) + " s"
}

// formatRate renders requests per second: "3.4/s", "812/s", "12,400/s".
func formatRate(r float64) string {
	if !finite(r) {
		return dash
	}
	if r < 10 {
		return string(strconv.AppendFloat(nil, r, 'f', 1, 64)) + "/s"
	}
	return formatInt(int64(math.Round(r))) + "/s"
}

// formatDuration keeps the two largest units: "3d 4h", "2h 13m", "5m 12s", "42s".
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	days, h, m := s/86400, s/3600%24, s/60%60
	s %= 60
	it := strconv.FormatInt
	switch {
	case days > 0:
		return it(days, 10) + "d " + it(h, 10) + "h"
	case h > 0:
		return it(h, 10) + "h " + it(m, 10) + "m"
	case m > 0:
		return it(m, 10) + "m " + it(s, 10) + "s"
	}
	return it(s, 10) + "s"
}

// truncate shortens upstream error text so one verbose error cannot push the table off the screen; the
// page keeps the full text in a tooltip.
func truncate(s string, runes int) string {
	if utf8.RuneCountInString(s) <= runes {
		return s
	}
	n := 0
	for i := range s {
		if n == runes {
			return s[:i] + "…"
		}
		n++
	}
	return s
}
