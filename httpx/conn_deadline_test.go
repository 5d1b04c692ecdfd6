package httpx

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// pipeConn is the server's end of a pipe, watched by an lfConn, and a func the client sends bytes with.
func pipeConn(t *testing.T) (*lfConn, func(string)) {
	t.Helper()
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	send := func(s string) {
		go client.Write([]byte(s)) // a pipe's write waits for the read
	}
	return &lfConn{Conn: server, scanning: true}, send
}

var past = time.Now().Add(-time.Hour)

// A read deadline that has passed fails the next read, as on the connection itself, and one set after a
// read fails the read after it.
func TestLFConnReadDeadlineGovernsTheNextRead(t *testing.T) {
	c, send := pipeConn(t)
	if err := c.SetReadDeadline(past); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after a passed deadline: %v, want %v", err, os.ErrDeadlineExceeded)
	}

	c, send = pipeConn(t)
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
		c, send := pipeConn(t)
		c.SetReadDeadline(past)
		replace(c)
		send("GET / HTTP/1.1\r\n")
		if n, err := c.Read(make([]byte, 64)); err != nil || n == 0 {
			t.Errorf("%s: read after the passed deadline was replaced: %d bytes, %v", name, n, err)
		}
	}
}

// recordConn answers every read at once and records the read deadlines it is given.
type recordConn struct {
	net.Conn // nil: only Read, Write and SetReadDeadline are called
	given    []time.Time
}

func (c *recordConn) Read(p []byte) (int, error) {
	return copy(p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"), nil
}
func (c *recordConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *recordConn) SetReadDeadline(t time.Time) error {
	c.given = append(c.given, t)
	return nil
}

// fasthttp sets two read deadlines per keep-alive request: the idle time before its first byte, then the
// read time once it has come. The connection is given the second only when a read follows it (a request
// that came in parts), and a new one only when it is earlier than the one it has, or later by more than
// deadlineSlack: a busy connection's idle deadline, later by microseconds per request, is given once.
func TestLFConnGivesDeadlinesOnlyWhenTheyMatter(t *testing.T) {
	rc := &recordConn{}
	c := &lfConn{Conn: rc, scanning: true}
	buf := make([]byte, 64)
	t0 := time.Now()
	request := func(idle time.Time, read time.Time, parts int) {
		c.SetReadDeadline(idle)
		for range parts {
			if _, err := c.Read(buf); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(read)
		}
		c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	}
	idle, read := 2*time.Minute, 5*time.Minute
	request(t0.Add(idle), t0.Add(read), 1)
	request(t0.Add(time.Millisecond+idle), t0.Add(time.Millisecond+read), 1)     // later by 1 ms: kept
	request(t0.Add(2*time.Millisecond+idle), t0.Add(2*time.Millisecond+read), 2) // in two reads: the read time given
	request(t0.Add(3*time.Millisecond+idle), t0.Add(3*time.Millisecond+read), 1) // earlier than the read time: given
	request(t0.Add(2*time.Second+idle), t0.Add(2*time.Second+read), 1)           // later by more than the slack: given
	c.SetReadDeadline(time.Time{})
	c.Read(buf)
	c.SetReadDeadline(time.Time{})
	c.Read(buf)
	want := []time.Time{t0.Add(idle), t0.Add(2*time.Millisecond + read), t0.Add(3*time.Millisecond + idle),
		t0.Add(2*time.Second + idle), {}}
	if len(rc.given) != len(want) {
		t.Fatalf("the connection was given %d read deadlines, want %d: %v", len(rc.given), len(want), rc.given)
	}
	for i := range want {
		if !rc.given[i].Equal(want[i]) {
			t.Errorf("deadline %d: %v, want %v", i, rc.given[i].Sub(t0), want[i].Sub(t0))
		}
	}
}
