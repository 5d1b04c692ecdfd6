package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"llmcache/pipeline/wire"
)

// restartable is an upstream on a fixed loopback address that can be stopped and started again there,
// as a restarted vLLM or llama.cpp server is. It counts the connections its current server has open.
type restartable struct {
	t    *testing.T
	addr string
	gen  atomic.Int32 // which start answers; the body says it

	mu   sync.Mutex
	srv  *http.Server
	ln   net.Listener // srv's; closed by stop itself, since srv knows it only once Serve runs
	open *int         // connections of srv not yet closed

	barrier int           // calls to /barrier wait until this many are in the handler at once
	arrived int           // calls to /barrier of the current server
	all     chan struct{} // closed when they have all arrived
}

func newRestartable(t *testing.T, barrier int) *restartable {
	r := &restartable{t: t, barrier: barrier}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(r.stop)
	return r
}

func (r *restartable) serve(ln net.Listener) {
	gen := r.gen.Add(1)
	all := make(chan struct{})
	open := new(int)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path == "/barrier" {
				r.mu.Lock()
				if r.arrived++; r.arrived == r.barrier {
					close(all)
				}
				r.mu.Unlock()
				select { // all calls at once, so that each holds its own connection
				case <-all:
				case <-time.After(30 * time.Second): // a hang, not a slow start
				}
			}
			fmt.Fprintf(w, "gen%d", gen)
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			r.mu.Lock()
			defer r.mu.Unlock()
			switch st {
			case http.StateNew:
				*open++
			case http.StateClosed, http.StateHijacked:
				*open--
			}
		},
	}
	r.mu.Lock()
	r.srv, r.ln, r.open, r.arrived = srv, ln, open, 0
	r.mu.Unlock()
	go srv.Serve(ln)
}

func (r *restartable) stop() {
	r.mu.Lock()
	srv, ln := r.srv, r.ln
	r.mu.Unlock()
	ln.Close()
	srv.Close()
}

// restart stops the server, closing every connection it has, and starts a new one on the same address.
func (r *restartable) restart() {
	r.stop()
	// Linux refuses the address now and then for a moment while the old server's connections turn into
	// TIME_WAIT ones, SO_REUSEADDR notwithstanding; a restarting server would try again too.
	var ln net.Listener
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			r.t.Fatalf("cannot listen again on %s: %v", r.addr, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.serve(ln)
}

func (r *restartable) openConns() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return *r.open
}

// keepAliveCalls makes n calls at once, so that the built-in client ends up with n idle kept-alive
// connections to the upstream; each must be answered by the upstream's start number gen.
func keepAliveCalls(t *testing.T, tr transport, ep *wire.Target, n, gen int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			var resp wire.Response
			if err := tr.Do(request(ep, "/barrier"), &resp); err != nil {
				errs <- err
			} else if want := fmt.Sprintf("gen%d", gen); string(resp.Body) != want {
				errs <- fmt.Errorf("got %q, want %q", resp.Body, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("call before the restart: %v", err)
	}
}

// An upstream restarted on its address must answer the very next call, even though every kept-alive
// connection the client holds was closed by the restart: a call that fails on one before any byte of the
// answer is sent again on a fresh connection, not on another idle one just as dead.
func TestUpstreamRestartedOnTheSameAddress(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		const idle = 4
		up := newRestartable(t, idle)
		tr := newT(Options{})
		ep := endpoint("http://" + up.addr)
		keepAliveCalls(t, tr, ep, idle, 1)
		up.restart()
		var resp wire.Response
		if err := tr.Do(request(ep, "/"), &resp); err != nil || string(resp.Body) != "gen2" {
			t.Fatalf("Do after the restart: %v %q", err, resp.Body)
		}
		// Again with a streamed call first.
		keepAliveCalls(t, tr, ep, idle, 2)
		up.restart()
		s := &sink{}
		if err := tr.Stream(request(ep, "/"), s); err != nil || s.body() != "gen3" {
			t.Fatalf("Stream after the restart: %v %q", err, s.body())
		}
	})
}

// CloseIdle drops an endpoint's idle connections (the pipeline calls it when it ejects the endpoint), so
// that the probe after the cool-down cannot land on one from before a restart.
func TestCloseIdleDropsTheEndpointsIdleConnections(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		const idle = 3
		up := newRestartable(t, idle)
		other := newRestartable(t, 1) // another endpoint, whose connection must stay
		tr := newT(Options{})
		ep, otherEp := endpoint("http://"+up.addr), endpoint("http://"+other.addr)
		keepAliveCalls(t, tr, ep, idle, 1)
		if err := tr.Do(request(otherEp, "/"), &wire.Response{}); err != nil {
			t.Fatal(err)
		}
		otherOpen := other.openConns()
		tr.CloseIdle(ep)
		deadline := time.Now().Add(10 * time.Second)
		for up.openConns() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections still open after CloseIdle", up.openConns())
			}
			time.Sleep(5 * time.Millisecond)
		}
		if got := other.openConns(); got != otherOpen {
			t.Errorf("the other endpoint has %d open connections, had %d: CloseIdle closed them too", got, otherOpen)
		}
		var resp wire.Response
		if err := tr.Do(request(ep, "/"), &resp); err != nil || string(resp.Body) != "gen1" {
			t.Fatalf("Do after CloseIdle: %v %q", err, resp.Body)
		}
	})
}
