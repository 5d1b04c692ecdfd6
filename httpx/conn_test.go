package httpx

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"testing/iotest"
)

// scriptConn is a net.Conn whose reads come from r; writes are dropped.
type scriptConn struct {
	net.Conn // nil: only Read and Write are called
	r        io.Reader
}

func (c *scriptConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return len(p), nil }

// readAll reads c to its end, as fasthttp would ask for more, and returns the error that stopped it.
func readAll(c net.Conn) error {
	buf := make([]byte, 7)
	for {
		if _, err := c.Read(buf); err != nil {
			return err
		}
	}
}

// The header block's end is found however the reads split it: one byte at a time, or all at once.
func TestLFConnFindsTheBlockEndAcrossReads(t *testing.T) {
	body := "{\n\n\"a\": 1\n\n}\n\n"
	for _, tc := range []struct {
		raw  string
		want error // what reading on after the bytes ends with
	}{
		{"GET / HTTP/1.1\nHost: x\n\n", errBareLF},
		{"GET / HTTP/1.1\r\nHost: x\n\n", errBareLF},
		{"GET / HTTP/1.1\r\nHost: x\r\n\n", errBareLF},
		{"GET / HTTP/1.1\r\nHost: x\n\r\n", errBareLF},
		{"GET / HTTP/1.0\n\n", errBareLF},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", io.EOF},
		{"GET / HTTP/1.1\nHost: x\r\n\r\n", io.EOF},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body, io.EOF},
		{"not a request line\n\n", io.EOF}, // the tail of a pipelined request fasthttp has buffered
		{body, io.EOF},
	} {
		for _, split := range []struct {
			name string
			r    func(io.Reader) io.Reader
		}{{"whole", func(r io.Reader) io.Reader { return r }}, {"bytewise", iotest.OneByteReader}} {
			c := &lfConn{Conn: &scriptConn{r: split.r(bytes.NewReader([]byte(tc.raw)))}, scanning: true}
			if err := readAll(c); !errors.Is(err, tc.want) {
				t.Errorf("%q, %s: reading on ends with %v, want %v", tc.raw, split.name, err, tc.want)
			}
		}
	}
}

// An answer ends the request: the next request on the connection is looked at afresh.
func TestLFConnStartsAgainAfterAnAnswer(t *testing.T) {
	first := "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\n\n\n\n"
	second := "GET / HTTP/1.1\nHost: x\n\n"
	pr, pw := io.Pipe()
	c := &lfConn{Conn: &scriptConn{r: pr}, scanning: true}
	go func() {
		pw.Write([]byte(first))
		pw.Write([]byte(second))
		pw.Close()
	}()
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != first {
		t.Fatalf("first read: %q %v", buf[:n], err)
	}
	c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	n, err = c.Read(buf)
	if err != nil || string(buf[:n]) != second {
		t.Fatalf("second read: %q %v", buf[:n], err)
	}
	if _, err := c.Read(buf); !errors.Is(err, errBareLF) {
		t.Fatalf("read after a bare-LF block: %v, want errBareLF", err)
	}
	c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("read after the answer: %v, want the connection's own EOF", err)
	}
}
