package httpx

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"llmcache/actors"
	"llmcache/bench/fakeupstream"
	"llmcache/db"
	"llmcache/httpx/observe"
	"llmcache/pipeline/batch"
)

// BenchmarkServeHit is the server's own CPU per memory hit, beside a bare fasthttp server returning the
// same bytes: one goroutine serves b.N keep-alive requests on a connection that hands it one request per
// read and drops what it writes (its deadlines are set on a real, idle TCP connection). No network, no
// client, no scheduler: what is left is fasthttp's work and ours, measured steadily even while other work shares the machine (the figure over loopback, with the
// system calls, is bench's BenchmarkHit). The front end is configured as proxy.Start configures it:
// Batch API on (request bodies streamed), metrics, idle-flush activity, a loopback bind's Host check.
func BenchmarkServeHit(b *testing.B) {
	pipe := testPipeline(b, nil)
	dbPath := filepath.Join(b.TempDir(), "batches.db") // the Batch API's own tables, in a database of its own
	store, err := db.Open(dbPath, db.Options{})
	if err != nil {
		b.Fatal(err)
	}
	store.Close()
	batches, err := batch.New(batch.Config{}, pipe, dbPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { batches.Stop() })
	s := New(Config{Listen: "127.0.0.1:4321", Observe: observe.NewMetrics().Observe, Activity: &actors.Activity{}, Batches: batches},
		pipe, func() error { return nil })

	body := fakeupstream.ChatRequest(7)
	req := []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:4321\r\nContent-Type: application/json\r\n" +
		"User-Agent: fasthttp\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body))
	deadlines := idleTCP(b)
	first := &replayConn{req: req, left: 1, deadlines: deadlines}
	if err := s.srv.ServeConn(&lfConn{Conn: first, scanning: true}); err != nil {
		b.Fatal(err)
	}
	answer := first.out.Bytes()[bytes.Index(first.out.Bytes(), []byte("\r\n\r\n"))+4:]
	again := &replayConn{req: req, left: 1, deadlines: deadlines}
	if err := s.srv.ServeConn(&lfConn{Conn: again, scanning: true}); err != nil {
		b.Fatal(err)
	}
	if !bytes.Contains(again.out.Bytes(), []byte("\r\nX-Cache: HIT\r\n")) || !bytes.HasSuffix(again.out.Bytes(), answer) {
		b.Fatalf("the second request is not a memory hit with the first answer's bytes:\n%s", again.out.Bytes())
	}

	run := func(b *testing.B, serve func(net.Conn) error) {
		c := &replayConn{req: req, left: b.N, discard: true, deadlines: deadlines}
		b.SetBytes(int64(len(answer)))
		b.ReportAllocs()
		b.ResetTimer()
		cpu := processCPU()
		if err := serve(c); err != nil {
			b.Fatal(err)
		}
		// CPU time rather than the time on the clock: it does not grow while other work has the CPU.
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "CPU-ns/op")
		if c.written == 0 {
			b.Fatal("nothing was answered")
		}
	}
	b.Run("server=bare-fasthttp", func(b *testing.B) {
		bare := &fasthttp.Server{NoDefaultServerHeader: true, Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.Response.SetBodyRaw(answer)
		}}
		run(b, bare.ServeConn)
	})
	b.Run("server=llmcache", func(b *testing.B) {
		run(b, func(c net.Conn) error { return s.srv.ServeConn(&lfConn{Conn: c, scanning: true}) })
	})
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var u syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &u) != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// replayConn is a client connection that sends req, whole in each read, left times, then hangs up. What the
// server writes is kept in out, or only counted when discard is set.
type replayConn struct {
	req       []byte
	left      int
	discard   bool
	out       bytes.Buffer
	written   int
	deadlines net.Conn
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.left == 0 {
		return 0, io.EOF
	}
	c.left--
	return copy(p, c.req), nil
}

func (c *replayConn) Write(p []byte) (int, error) {
	c.written += len(p)
	if !c.discard {
		c.out.Write(p)
	}
	return len(p), nil
}

func (c *replayConn) Close() error { return nil }
func (c *replayConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4321}
}
func (c *replayConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}

// Deadlines go to a real TCP connection, never read: they cost what they cost a server (a timer update).
func (c *replayConn) SetDeadline(t time.Time) error      { return c.deadlines.SetDeadline(t) }
func (c *replayConn) SetReadDeadline(t time.Time) error  { return c.deadlines.SetReadDeadline(t) }
func (c *replayConn) SetWriteDeadline(t time.Time) error { return c.deadlines.SetWriteDeadline(t) }

// idleTCP is one end of a loopback TCP connection nobody writes to, closed when tb ends.
func idleTCP(tb testing.TB) net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close(); peer.Close() })
	return c
}
