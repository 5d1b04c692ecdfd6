package pipeline

import (
	"bytes"
	"math"
	"strconv"

	"llmcache/pipeline/canon"
)

// Controls are the per-request cache controls, from headers and the body's "cache" object.
type Controls struct {
	Mode      Mode
	NoCache   bool   // skip the lookup, fetch fresh, store (REFRESH)
	NoStore   bool   // do not store this answer
	MaxAge    int64  // seconds; accept only entries younger than this; <0 = no limit
	TTL       int64  // seconds; 0 = never expires
	Namespace string // the effective namespace once keyed (see Request.Tenant)
	Sample    int64
}

// DefaultControls are the controls of a request that sets none; mode is the configured cache_mode.
func DefaultControls(mode Mode) Controls { return Controls{Mode: mode, MaxAge: -1} }

// ApplyHeader reads one cache-control request header into c. Unrelated headers are ignored.
// The error names the header, for a 400.
func (c *Controls) ApplyHeader(name, value []byte) *Error {
	switch {
	case equalFold(name, "Cache-Control"):
		return c.applyCacheControl(value)
	case equalFold(name, "X-Cache-TTL"):
		n, ok := parseNonNegative(value)
		if !ok {
			return invalidRequest("X-Cache-TTL", "X-Cache-TTL must be a whole number of seconds >= 0")
		}
		c.TTL = n
	case equalFold(name, "X-Cache-Namespace"):
		c.Namespace = string(value)
	case equalFold(name, "X-Cache-Sample"):
		n, ok := parseIndex(value)
		if !ok {
			return invalidRequest("X-Cache-Sample", "X-Cache-Sample must be a whole number >= 0")
		}
		c.Sample = n
	case equalFold(name, "X-Cache-Mode"):
		m, err := ParseMode(string(bytes.TrimSpace(value)))
		if err != nil {
			return invalidRequest("X-Cache-Mode", "X-Cache-Mode: "+err.Error())
		}
		c.Mode = m
	}
	return nil
}

// applyCacheControl understands no-cache, no-store and max-age=N; other directives are ignored, as HTTP caches do.
func (c *Controls) applyCacheControl(v []byte) *Error {
	for len(v) > 0 {
		var d []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			d, v = v[:i], v[i+1:]
		} else {
			d, v = v, nil
		}
		d = bytes.TrimSpace(d)
		switch {
		case equalFold(d, "no-cache"):
			c.NoCache = true
		case equalFold(d, "no-store"):
			c.NoStore = true
		case len(d) > 8 && equalFold(d[:8], "max-age="):
			n, ok := parseNonNegative(d[8:])
			if !ok {
				return invalidRequest("Cache-Control", "Cache-Control max-age must be a whole number of seconds >= 0")
			}
			c.MaxAge = n
		}
	}
	return nil
}

// applyBody reads LiteLLM's "cache" object of the request body. sub must not be the parser that holds the
// top-level members.
func (c *Controls) applyBody(sub *canon.Parser, raw []byte) *Error {
	members, err := sub.ParseObject(raw)
	if err != nil {
		return invalidRequest("cache", "cache must be a JSON object")
	}
	for _, m := range members {
		v := raw[m.ValueStart:m.ValueEnd]
		switch string(m.Key) {
		case "no-cache":
			if m.Type != canon.True && m.Type != canon.False {
				return invalidRequest("cache.no-cache", "cache.no-cache must be a boolean")
			}
			c.NoCache = m.Type == canon.True
		case "no-store":
			if m.Type != canon.True && m.Type != canon.False {
				return invalidRequest("cache.no-store", "cache.no-store must be a boolean")
			}
			c.NoStore = m.Type == canon.True
		case "s-maxage", "ttl", "sample":
			n, ok := parseNonNegative(v)
			if string(m.Key) == "sample" {
				n, ok = parseIndex(v)
			}
			if m.Type != canon.Number || !ok {
				return invalidRequest("cache."+string(m.Key), "cache."+string(m.Key)+" must be a whole number >= 0")
			}
			switch string(m.Key) {
			case "s-maxage":
				c.MaxAge = n
			case "ttl":
				c.TTL = n
			default:
				c.Sample = n
			}
		case "namespace":
			if m.Type != canon.String {
				return invalidRequest("cache.namespace", "cache.namespace must be a string")
			}
			s, err := canon.DecodeString(nil, v)
			if err != nil {
				return invalidRequest("cache.namespace", "cache.namespace must be a string")
			}
			c.Namespace = string(s)
		case "mode":
			s, err := canon.DecodeString(nil, v)
			if m.Type != canon.String || err != nil {
				return invalidRequest("cache.mode", "cache.mode must be a string")
			}
			mode, perr := ParseMode(string(s))
			if perr != nil {
				return invalidRequest("cache.mode", "cache.mode: "+perr.Error())
			}
			c.Mode = mode
		default:
			return invalidRequest("cache."+string(m.Key), "unknown cache control "+strconv.Quote(string(m.Key))+" (known: no-cache, no-store, s-maxage, ttl, namespace, sample, mode)")
		}
	}
	return nil
}

// maxSeconds is the longest duration a TTL or max-age may mean: what unix milliseconds in an int64 hold,
// with room for now. A larger value is clamped to it, so that a huge TTL means "keep" and a huge max-age
// "any age" rather than overflowing into the past.
const maxSeconds = math.MaxInt64/1000 - 1<<42

// parseNonNegative parses a plain decimal integer of seconds, clamped to maxSeconds; JSON numbers like 10.0
// are refused.
func parseNonNegative(b []byte) (int64, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		if n <= maxSeconds {
			n = n*10 + int64(ch-'0')
		}
	}
	return min(n, maxSeconds), true
}

// parseIndex parses a plain decimal integer of at most 18 digits (a sample index: distinct values must stay
// distinct, so nothing is clamped).
func parseIndex(b []byte) (int64, bool) {
	b = bytes.TrimSpace(b)
	if len(b) > 18 {
		return 0, false
	}
	return parseNonNegative(b)
}

// expiresAt is when an answer stored at now (unix ms) with a TTL of ttl seconds expires: 0 (never) for no
// TTL, and for one so long that it cannot be told from never.
func expiresAt(now, ttl int64) int64 {
	if ttl <= 0 || ttl >= maxSeconds || now > math.MaxInt64-ttl*1000 {
		return 0
	}
	return now + ttl*1000
}

// equalFold compares ASCII case-insensitively without allocating.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
