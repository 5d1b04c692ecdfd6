package httpx

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// deadlineConn counts the read deadlines given to one end of a pipe; what the server writes is dropped.
type deadlineConn struct {
	net.Conn
	set int
}

func (c *deadlineConn) Write(p []byte) (int, error) { return len(p), nil }

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.set++
	return c.Conn.SetReadDeadline(t)
}

// pipeConn is the server's end of a pipe, watched by an lfConn, and a func the client sends bytes with.
func pipeConn(t *testing.T) (*lfConn, *deadlineConn, func(string)) {
	t.Helper()
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	counted := &deadlineConn{Conn: server}
	send := func(s string) {
		go client.Write([]byte(s)) // a pipe's write waits for the read
	}
	return &lfConn{Conn: counted, scanning: true}, counted, send
}

var past = time.Now().Add(-time.Hour)

// A read deadline that has passed fails the next read, as on the connection itself, and one set after a
// read fails the read after it.
func TestLFConnReadDeadlineGovernsTheNextRead(t *testing.T) {
	c, _, send := pipeConn(t)
	if err := c.SetReadDeadline(past); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after a passed deadline: %v, want %v", err, os.ErrDeadlineExceeded)
	}

	c, _, send = pipeConn(t)
	c.SetReadDeadline(time.Now().Add(time.Minute))
	send("GET / HTTP/1.1\r\n")
	if _, err := c.Read(make([]byte, 64)); err != nil {
		t.Fatalf("read before the deadline: %v", err)
	}
	c.SetReadDeadline(past)
	if _, err := c.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after a deadline set since the last read passed: %v, want %v", err, os.ErrDeadlineExceeded)
	}
}

// The deadline set last is the one a read keeps to: a passed one replaced (by SetReadDeadline or by
// SetDeadline) before the read does not fail it.
func TestLFConnLastDeadlineWins(t *testing.T) {
	for name, replace := range map[string]func(*lfConn){
		"SetReadDeadline": func(c *lfConn) { c.SetReadDeadline(time.Time{}) },
		"SetDeadline":     func(c *lfConn) { c.SetDeadline(time.Time{}) },
	} {
		c, _, send := pipeConn(t)
		c.SetReadDeadline(past)
		replace(c)
		send("GET / HTTP/1.1\r\n")
		if n, err := c.Read(make([]byte, 64)); err != nil || n == 0 {
			t.Errorf("%s: read after the passed deadline was replaced: %d bytes, %v", name, n, err)
		}
	}
}

// fasthttp sets two read deadlines per keep-alive request (the idle time, then the read time once the
// first byte has come); when the request came whole in one read, the second is replaced before any read
// and the connection is given one deadline per request, not two.
func TestLFConnGivesOneDeadlinePerRequestReadAtOnce(t *testing.T) {
	c, counted, send := pipeConn(t)
	buf := make([]byte, 256)
	for range 3 {
		c.SetReadDeadline(time.Now().Add(2 * time.Minute)) // idle
		send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Minute)) // read: the request is whole already
		c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))         // the answer
	}
	if counted.set != 3 {
		t.Errorf("the connection was given %d read deadlines for 3 requests; want 3", counted.set)
	}
}
