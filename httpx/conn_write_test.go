package httpx

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair is a loopback TCP connection: the server's end watched by an lfConn with writeTimeout, and the
// client's end.
func tcpPair(t *testing.T, writeTimeout time.Duration) (*lfConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	l := lfListener{Listener: ln, writeTimeout: writeTimeout}
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server.(*lfConn), client
}

// TestLFConnWriteToAClientThatDoesNotRead: an answer written to a client that never reads it fails once
// the socket's buffers are full and writeTimeout passes, so the connection, its goroutine and the answer
// are let go. It waited for as long as the client lived.
func TestLFConnWriteToAClientThatDoesNotRead(t *testing.T) {
	c, _ := tcpPair(t, 200*time.Millisecond)
	answer := make([]byte, 64<<20) // far more than loopback's socket buffers hold
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(answer)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write to a client that does not read: %v, want %v", err, os.ErrDeadlineExceeded)
		}
	case <-time.After(time.Minute): // only a bound on a hang
		t.Fatal("the write to a client that does not read was still waiting a minute later")
	}
}

// TestLFConnWriteInChunks: a client that reads gets every byte of an answer many chunks long, in order.
func TestLFConnWriteInChunks(t *testing.T) {
	c, client := tcpPair(t, time.Minute)
	answer := make([]byte, 10*writeChunk+123)
	for i := range answer {
		answer[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(client, int64(len(answer))))
		got <- b
	}()
	if n, err := c.Write(answer); err != nil || n != len(answer) {
		t.Fatalf("write: %d bytes, %v; want %d", n, err, len(answer))
	}
	if b := <-got; !bytes.Equal(b, answer) {
		t.Fatalf("the client read %d bytes, not the answer's %d", len(b), len(answer))
	}
}
