package fakeupstream

import (
	"bytes"
	"net/textproto"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Recorded is a copy of one request the server received.
type Recorded struct {
	Method string
	Path   string
	Query  string            // the raw query string, without '?'
	Header map[string]string // canonical header names; repeated headers joined with ", "
	Body   []byte
	At     time.Time
}

// ring is a bounded ring buffer keeping the most recent items. Its storage
// grows on demand up to the capacity.
type ring[T any] struct {
	items []T
	limit int
	next  int // where the next item goes
	n     int // number of valid items
}

func (r *ring[T]) init(capacity int) { r.limit = max(capacity, 1) }

// slot returns the slot for a new item, overwriting the oldest when full.
func (r *ring[T]) slot() *T {
	if r.next == len(r.items) && len(r.items) < r.limit {
		var zero T
		r.items = append(r.items, zero)
	}
	p := &r.items[r.next]
	r.next++
	if r.next == r.limit {
		r.next = 0
	}
	if r.n < r.limit {
		r.n++
	}
	return p
}

// each calls f for the items, oldest first.
func (r *ring[T]) each(f func(*T)) {
	start := r.next - r.n
	if start < 0 {
		start += r.limit
	}
	for i := 0; i < r.n; i++ {
		j := start + i
		if j >= r.limit {
			j -= r.limit
		}
		f(&r.items[j])
	}
}

func (r *ring[T]) reset() { r.next, r.n = 0, 0 }

// recSlot holds one request as a single byte buffer that is reused when the
// slot is overwritten: method | path | query | raw header block | body.
type recSlot struct {
	at                     time.Time
	buf                    []byte
	mEnd, pEnd, qEnd, hEnd int
}

// recorder keeps the most recent requests. Adding one costs a lock and a copy
// of the request bytes; headers are parsed only when Requests is called.
type recorder struct {
	mu sync.Mutex
	r  ring[recSlot]
}

func (rc *recorder) init(capacity int) { rc.r.init(capacity) }

func (rc *recorder) reset() {
	rc.mu.Lock()
	rc.r.reset()
	rc.mu.Unlock()
}

// maxReusedSlotBuf bounds the buffer a slot keeps for reuse.
const maxReusedSlotBuf = 64 << 10

func (rc *recorder) add(ctx *fasthttp.RequestCtx) {
	method := ctx.Method()
	path := ctx.Path()
	query := ctx.URI().QueryString()
	hdr := ctx.Request.Header.RawHeaders()
	body := ctx.PostBody()
	at := ctx.Time()
	total := len(method) + len(path) + len(query) + len(hdr) + len(body)

	rc.mu.Lock()
	sl := rc.r.slot()
	buf := sl.buf[:0]
	if cap(buf) < total || cap(buf) > maxReusedSlotBuf && total <= maxReusedSlotBuf {
		buf = make([]byte, 0, max(total, 512))
	}
	buf = append(buf, method...)
	sl.mEnd = len(buf)
	buf = append(buf, path...)
	sl.pEnd = len(buf)
	buf = append(buf, query...)
	sl.qEnd = len(buf)
	buf = append(buf, hdr...)
	sl.hEnd = len(buf)
	buf = append(buf, body...)
	sl.buf = buf
	sl.at = at
	rc.mu.Unlock()
}

func (rc *recorder) list() []Recorded {
	rc.mu.Lock()
	out := make([]Recorded, 0, rc.r.n)
	rc.r.each(func(sl *recSlot) {
		out = append(out, Recorded{
			Method: string(sl.buf[:sl.mEnd]),
			Path:   string(sl.buf[sl.mEnd:sl.pEnd]),
			Query:  string(sl.buf[sl.pEnd:sl.qEnd]),
			Header: parseRawHeaders(sl.buf[sl.qEnd:sl.hEnd]),
			Body:   bytes.Clone(sl.buf[sl.hEnd:]),
			At:     sl.at,
		})
	})
	rc.mu.Unlock()
	for i := range out {
		if out[i].Body == nil {
			out[i].Body = []byte{}
		}
	}
	return out
}

func parseRawHeaders(raw []byte) map[string]string {
	h := make(map[string]string, 8)
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimRight(line, "\r")
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(string(bytes.TrimSpace(line[:colon])))
		v := string(bytes.TrimSpace(line[colon+1:]))
		if old, ok := h[k]; ok {
			v = old + ", " + v
		}
		h[k] = v
	}
	return h
}

// Requests returns copies of the most recent requests (at most MaxRecorded),
// oldest first.
func (s *Server) Requests() []Recorded { return s.rec.list() }

// EmbeddingInputs returns, for each embeddings call that passed validation
// (the most recent MaxRecorded, in call order), the inputs as the strings
// given to Vector: the text, or the JSON text of a token array.
func (s *Server) EmbeddingInputs() [][]string {
	s.embMu.Lock()
	defer s.embMu.Unlock()
	out := make([][]string, 0, s.embInputs.n)
	s.embInputs.each(func(in *[]string) {
		out = append(out, append([]string(nil), (*in)...))
	})
	return out
}

func (s *Server) recordEmbeddingInputs(in []string) {
	s.embMu.Lock()
	*s.embInputs.slot() = in
	s.embMu.Unlock()
}
