package httpx

import (
	"bytes"
	"errors"
	"net"
	"time"
)

// errBareLF is what a connection's Read returns once the request being read has ended its header block
// with a bare LF: transportError answers it with a 400.
var errBareLF = errors.New("the request's header block does not end with CRLF CRLF")

// lfListener hands fasthttp connections that notice requests whose header block ends in a bare LF.
//
// fasthttp accepts a bare LF at the end of a header line, but it takes only CRLF CRLF as the end of the
// header block (anything else could frame the stream differently from a proxy in front, which is how
// request smuggling works). A request written with bare LFs throughout (nc without -C, a hand-written
// script) has no CRLF CRLF, so fasthttp waits for more bytes that never come and the client gets no answer
// until the read timeout, minutes later. The connection cannot change fasthttp's reading, but it sees the
// bytes go by: when a request's header block has ended without CRLF CRLF and fasthttp asks for more, it
// fails that read, and the client gets a clear 400 at once.
//
// Its connections also bound how long a write may wait for the client to take the bytes (writeTimeout).
type lfListener struct {
	net.Listener
	writeTimeout time.Duration // 0: none
}

func (l lfListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lfConn{Conn: c, scanning: true, writeTimeout: l.writeTimeout}, nil
}

// clientWriteTimeout is how long a client may take to read writeChunk bytes of its answer. Without it a
// client that stopped reading (a hung or suspended process whose socket stays open) held its connection,
// goroutine and answer for as long as it lived: a hundred of them asking for 4 MB answers held
// ~100 MB besides the memory layer, and a hundred connections, until they exited.
const clientWriteTimeout = 2 * time.Minute

// writeChunk is the most one write gives the connection under one deadline, so that the timeout measures a
// slow client's progress rather than the time to take a whole answer (64 MiB at under 530 KB/s would not
// fit in two minutes; 256 KiB a chunk asks for about 2 KB/s).
const writeChunk = 256 << 10

// lfConn watches the header block of each request on a connection. fasthttp reads and writes a connection
// from the goroutine serving it, so the fields need no lock.
type lfConn struct {
	net.Conn
	scanning bool   // the bytes read next are (still) a request's header block
	head     []byte // the header block so far, when it spans reads; nil while it does not
	lineOK   bool   // the block's first line is a request line
	stuck    bool   // the block ended without CRLF CRLF: fail the next read

	// readDeadline is the read deadline fasthttp set last, given to the connection only at the next Read
	// (deadlineDue until then): a deadline governs reads alone, so it takes effect all the same. fasthttp
	// sets two per request, the idle time before its first byte and the read time once it has come; when
	// the whole request came in that first read, as nearly always, the second is replaced by the next
	// request's idle time before any Read and never costs a timer update (~0.15 µs each). applied is the
	// deadline the connection has: see applyDeadline for when a new one replaces it. fasthttp sets
	// deadlines from the goroutine serving the connection only (this server uses no TimeoutHandler and no
	// hijack), so these fields need no lock either.
	readDeadline time.Time
	deadlineDue  bool
	applied      time.Time

	// writeTimeout (0: none) is given to each write of up to writeChunk bytes; writeBy is the write deadline
	// the connection has, moved on only when it is more than deadlineSlack (at most half the timeout) short
	// of a full writeTimeout: one timer update a second on a busy connection, as for reads.
	writeTimeout time.Duration
	writeBy      time.Time
}

// deadlineSlack is how much later than the connection's deadline a new one may be and still not replace it:
// the connection then times out up to this much earlier than fasthttp asked (a second of the two-minute
// idle time or of the five-minute read time), and a busy keep-alive connection, whose idle deadline moves
// on by microseconds per request, updates its timer once a second rather than once per request.
const deadlineSlack = time.Second

func (c *lfConn) SetReadDeadline(t time.Time) error {
	c.readDeadline, c.deadlineDue = t, true
	return nil
}

// SetDeadline sets both deadlines at once, replacing a read deadline still due.
func (c *lfConn) SetDeadline(t time.Time) error {
	c.deadlineDue = false
	err := c.Conn.SetDeadline(t)
	if err == nil {
		c.applied, c.writeBy = t, t
	}
	return err
}

// SetWriteDeadline sets the write deadline until the next write moves it on (with writeTimeout).
func (c *lfConn) SetWriteDeadline(t time.Time) error {
	err := c.Conn.SetWriteDeadline(t)
	if err == nil {
		c.writeBy = t
	}
	return err
}

// applyDeadline gives the connection the read deadline due, unless the one it has is at most deadlineSlack
// earlier (never later: a read may end early, by at most the slack, but never late).
func (c *lfConn) applyDeadline() error {
	c.deadlineDue = false
	want, have := c.readDeadline, c.applied
	if !want.IsZero() && !have.IsZero() && !want.Before(have) && want.Sub(have) <= deadlineSlack {
		return nil
	}
	if want.IsZero() && have.IsZero() {
		return nil
	}
	if err := c.Conn.SetReadDeadline(want); err != nil {
		return err
	}
	c.applied = want
	return nil
}

// maxScan bounds the header bytes a connection keeps while it watches a block that spans reads; a larger
// block is left to fasthttp, which refuses it (431).
const maxScan = 1 << 20

func (c *lfConn) Read(p []byte) (int, error) {
	if c.stuck {
		return 0, errBareLF
	}
	if c.deadlineDue {
		if err := c.applyDeadline(); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	if c.scanning && n > 0 {
		c.scan(p[:n])
	}
	return n, err
}

// Write ends a request: fasthttp answers a request before it reads the next one (a pipelined request it
// has read already is parsed from its buffer, and the first bytes read after the answer are then not a
// request line, which scan leaves alone).
func (c *lfConn) Write(p []byte) (int, error) {
	c.scanning, c.lineOK, c.stuck = true, false, false
	c.head = c.head[:0]
	if cap(c.head) > 16<<10 {
		c.head = nil // a rare huge header block is not kept for the life of the connection
	}
	if c.writeTimeout == 0 {
		return c.Conn.Write(p)
	}
	written := 0
	for {
		chunk := p[:min(len(p), writeChunk)]
		if now := time.Now(); c.writeBy.Sub(now) < c.writeTimeout-min(deadlineSlack, c.writeTimeout/2) {
			if err := c.Conn.SetWriteDeadline(now.Add(c.writeTimeout)); err != nil {
				return written, err
			}
			c.writeBy = now.Add(c.writeTimeout)
		}
		n, err := c.Conn.Write(chunk)
		written += n
		p = p[n:]
		if err != nil || len(p) == 0 {
			return written, err
		}
	}
}

// scan looks at p, the next bytes of a request, for the end of its header block.
func (c *lfConn) scan(p []byte) {
	h, from := p, 0
	if len(c.head) > 0 {
		from = len(c.head)
		c.head = append(c.head, p...)
		h = c.head
	}
	done, stuck := c.blockEnd(h, from)
	switch {
	case done:
		c.scanning, c.stuck = false, stuck
		c.head = c.head[:0]
	case len(h) > maxScan:
		c.scanning = false
		c.head = c.head[:0]
	case len(c.head) == 0:
		c.head = append(c.head, p...) // the block goes on in the next read
	}
}

// blockEnd reports whether h, a request's bytes from its start, holds the end of its header block (the
// first empty line), and whether that end is other than CRLF CRLF. LFs before from were looked at already.
// Bytes that do not begin with a request line are not a request's start: done, not stuck.
func (c *lfConn) blockEnd(h []byte, from int) (done, stuck bool) {
	for {
		j := bytes.IndexByte(h[from:], '\n')
		if j < 0 {
			return false, false
		}
		i := from + j
		from = i + 1
		if !c.lineOK {
			if !isRequestLine(h[:i]) {
				return true, false
			}
			c.lineOK = true
			continue
		}
		switch {
		case h[i-1] == '\n': // "\n\n"
			return true, true
		case h[i-1] == '\r' && h[i-2] == '\n': // an empty line ending in CRLF, after a line ending in...
			return true, h[i-3] != '\r' // ...a bare LF, or CRLF
		}
	}
}

// isRequestLine reports whether line (its LF cut off) looks like "METHOD target HTTP/1.x".
func isRequestLine(line []byte) bool {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if len(line) < len("A / HTTP/1.1") || line[0] < 'A' || line[0] > 'Z' {
		return false
	}
	v := line[len(line)-9:]
	return string(v[:8]) == " HTTP/1." && (v[8] == '0' || v[8] == '1')
}
