package upstream

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"llmcache/pipeline/wire"
)

// The contract every transport keeps (the pipeline's Transport interface), run over both transports.

func TestRelaysStatusBodyAndHeaders(t *testing.T) {
	t.Parallel()
	srv := blockingServer(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if code == 429 {
			w.Header().Set("Retry-After", "7")
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"status":%d}`, code)
	})
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		ep := endpoint(srv.URL)
		for _, code := range []int{200, 429, 500} {
			wantRA := ""
			if code == 429 {
				wantRA = "7"
			}
			wantBody := fmt.Sprintf(`{"status":%d}`, code)
			var resp wire.Response
			if err := tr.Do(request(ep, fmt.Sprintf("/status/%d", code)), &resp); err != nil {
				t.Fatalf("Do %d: %v", code, err)
			}
			if resp.Status != code || resp.ContentType != "application/json; charset=utf-8" || resp.RetryAfter != wantRA || string(resp.Body) != wantBody {
				t.Errorf("Do %d: got %d %q %q %q", code, resp.Status, resp.ContentType, resp.RetryAfter, resp.Body)
			}
			var s sink
			if err := tr.Stream(request(ep, fmt.Sprintf("/status/%d", code)), &s); err != nil {
				t.Fatalf("Stream %d: %v", code, err)
			}
			if s.headers != 1 || s.status != code || s.contentType != "application/json; charset=utf-8" || s.retryAfter != wantRA || s.body() != wantBody {
				t.Errorf("Stream %d: got %d headers, %d %q %q %q", code, s.headers, s.status, s.contentType, s.retryAfter, s.body())
			}
		}
	})
}

func TestDoBodiesAreFresh(t *testing.T) {
	t.Parallel()
	srv := blockingServer(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		io.WriteString(w, r.URL.Path)
	})
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		ep := endpoint(srv.URL)
		var a, b wire.Response
		if err := tr.Do(request(ep, "/aaaa"), &a); err != nil {
			t.Fatal(err)
		}
		if err := tr.Do(request(ep, "/bbbb"), &b); err != nil {
			t.Fatal(err)
		}
		if string(a.Body) != "/aaaa" || string(b.Body) != "/bbbb" {
			t.Errorf("bodies %q %q: the first was overwritten", a.Body, b.Body)
		}
	})
}

func TestSendsEveryHeader(t *testing.T) {
	t.Parallel()
	type seen struct {
		method string
		header http.Header
		body   string
	}
	var mu sync.Mutex
	got := map[string]seen{}
	srv := blockingServer(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Query().Get("t")] = seen{r.Method, r.Header.Clone(), string(body)}
		mu.Unlock()
	})
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		ep := endpoint(srv.URL)
		body := `{"model":"m","padding":"` + strings.Repeat("x", 4000) + `"}` // over curl's 1 KiB Expect threshold
		req := &wire.Request{Target: ep, Method: "POST", URL: srv.URL + "/v1/chat/completions?t=" + t.Name(), Body: []byte(body),
			Header: [][2]string{
				{"Authorization", "Bearer sk-secret-123"},
				{"X-Custom", "one"},
				{"X-Quoted", `a "b" \c`},
				{"X-Empty", ""},
				{"OpenAI-Organization", "org-1"},
			}}
		var resp wire.Response
		if err := tr.Do(req, &resp); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		s := got[t.Name()]
		mu.Unlock()
		h := s.header
		for name, want := range map[string]string{
			"Authorization": "Bearer sk-secret-123", "X-Custom": "one", "X-Quoted": `a "b" \c`, "Openai-Organization": "org-1",
			"Content-Type": "application/json", "Accept-Encoding": "identity", "Content-Length": strconv.Itoa(len(body)),
		} {
			if got := h.Get(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		if v, ok := h["X-Empty"]; !ok || len(v) != 1 || v[0] != "" {
			t.Errorf("X-Empty = %q, want one empty value", v)
		}
		for _, absent := range []string{"User-Agent", "Expect", "Accept"} {
			if v, ok := h[absent]; ok {
				t.Errorf("%s = %q, want none (the built-in client sends none)", absent, v)
			}
		}
		if s.method != "POST" || s.body != body {
			t.Errorf("got %s with a %d-byte body, want POST with %d bytes", s.method, len(s.body), len(body))
		}
	})
}

func TestStreamHandsOverPiecesAsTheyArrive(t *testing.T) {
	t.Parallel()
	type gate struct {
		first  chan struct{} // closed by the sink at the first piece
		waited chan bool     // whether the handler saw it before writing the second event
	}
	var mu sync.Mutex
	gates := map[string]*gate{}
	srv := blockingServer(t, func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
		mu.Lock()
		g := gates[r.URL.Query().Get("t")]
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"n\":1}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-g.first:
			g.waited <- true
		case <-time.After(30 * time.Second): // a hang, not a slow machine
			g.waited <- false
		case <-release:
			g.waited <- false
		}
		io.WriteString(w, "data: {\"n\":2}\n\ndata: [DONE]\n\n")
	})
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		g := &gate{first: make(chan struct{}), waited: make(chan bool, 1)}
		mu.Lock()
		gates[t.Name()] = g
		mu.Unlock()
		var once sync.Once
		s := &sink{onData: func([]byte) { once.Do(func() { close(g.first) }) }}
		if err := tr.Stream(request(endpoint(srv.URL), "/v1/chat/completions?t="+t.Name()), s); err != nil {
			t.Fatal(err)
		}
		if !<-g.waited {
			t.Error("the sink got nothing before the server sent the second event: the transport buffers")
		}
		if want := "data: {\"n\":1}\n\ndata: {\"n\":2}\n\ndata: [DONE]\n\n"; s.body() != want || s.contentType != "text/event-stream" {
			t.Errorf("got %q (%s), want %q", s.body(), s.contentType, want)
		}
	})
}

func TestConnectionRefusedIsUnreachable(t *testing.T) {
	t.Parallel()
	url := "http://" + freeAddr(t)
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		err := tr.Do(request(endpoint(url), "/v1/models"), &wire.Response{})
		wantKind(t, err, wire.ErrUnreachable)
		s := &sink{}
		err = tr.Stream(request(endpoint(url), "/v1/models"), s)
		wantKind(t, err, wire.ErrUnreachable)
		if s.headers != 0 {
			t.Error("the sink got a header")
		}
	})
}

func TestFirstByteTimeout(t *testing.T) {
	t.Parallel()
	srv := blockingServer(t, func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		io.WriteString(w, "fast")
	})
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		ep := endpoint(srv.URL)
		ep.FirstByteTimeout = 2 * time.Second
		// The fast calls go through a copy with a generous first-byte timeout: curl counts it from its own
		// start, which a loaded machine may hold up. The built-in client keeps, per endpoint name, the
		// timeout of its first call, so a slow call comes first.
		fast := *ep
		fast.FirstByteTimeout = time.Minute
		var resp wire.Response
		err := within(t, 30*time.Second, func() error { return tr.Do(request(ep, "/slow"), &resp) })
		wantKind(t, err, wire.ErrTimeout, "no first byte within 2s")
		// A fast call, so that the built-in client's next slow calls reuse its kept-alive connection: the
		// first-byte deadline must be armed again for each call.
		if err := tr.Do(request(&fast, "/fast"), &resp); err != nil || string(resp.Body) != "fast" {
			t.Fatalf("fast call: %v %q", err, resp.Body)
		}
		err = within(t, 30*time.Second, func() error { return tr.Do(request(ep, "/slow"), &resp) })
		wantKind(t, err, wire.ErrTimeout, "no first byte within 2s")
		s := &sink{}
		err = within(t, 30*time.Second, func() error { return tr.Stream(request(ep, "/slow"), s) })
		wantKind(t, err, wire.ErrTimeout, "no first byte within 2s")
		if s.headers != 0 {
			t.Error("the sink got a header")
		}
		if err := tr.Do(request(&fast, "/fast"), &resp); err != nil {
			t.Fatalf("fast call after timeouts: %v", err)
		}
	})
}

func TestSlowBodyWithinTimeoutIsFine(t *testing.T) {
	t.Parallel()
	srv := blockingServer(t, func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
		io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-time.After(4 * time.Second): // twice the first-byte timeout
		case <-release:
		}
		io.WriteString(w, "data: 2\n\n")
	})
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		ep := endpoint(srv.URL)
		ep.FirstByteTimeout = 2 * time.Second
		s := &sink{}
		if err := tr.Stream(request(ep, "/"), s); err != nil || s.body() != "data: 1\n\ndata: 2\n\n" {
			t.Fatalf("Stream: %v %q", err, s.body())
		}
	})
}

func TestWholeCallTimeoutCoversTheBody(t *testing.T) {
	t.Parallel()
	srv := blockingServer(t, func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		ep := endpoint(srv.URL)
		// Room for the answer to begin (curl's start included); the body then never ends.
		ep.Timeout = 2 * time.Second
		err := within(t, 30*time.Second, func() error { return tr.Do(request(ep, "/"), &wire.Response{}) })
		wantKind(t, err, wire.ErrTimeout, "call exceeded timeout 2s")
		s := &sink{}
		err = within(t, 30*time.Second, func() error { return tr.Stream(request(ep, "/"), s) })
		wantKind(t, err, wire.ErrTimeout, "call exceeded timeout 2s")
		if s.headers != 1 || s.body() != "data: 1\n\n" {
			t.Errorf("sink got %d headers and %q before the timeout, want 1 and the first event", s.headers, s.body())
		}
	})
}

func TestBodyCutMidStreamIsUnreachable(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls := map[string]int{}
	srv := blockingServer(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		mu.Lock()
		calls[r.URL.Query().Get("t")]++
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/length") {
			w.Header().Set("Content-Length", "1000")
		}
		io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // closes the connection: no last chunk, or fewer bytes than announced
	})
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		for _, path := range []string{"/chunked", "/length"} {
			ep := endpoint(srv.URL)
			path += "?t=" + t.Name()
			s := &sink{}
			err := tr.Stream(request(ep, path), s)
			wantKind(t, err, wire.ErrUnreachable)
			if s.headers != 1 || s.body() != "data: 1\n\n" {
				t.Errorf("%s: sink got %d headers and %q, want 1 and the first event", path, s.headers, s.body())
			}
			err = tr.Do(request(ep, path), &wire.Response{})
			wantKind(t, err, wire.ErrUnreachable)
		}
		mu.Lock()
		defer mu.Unlock()
		if n := calls[t.Name()]; n != 4 {
			t.Errorf("upstream got %d calls, want 4: a call whose answer began must never be resent", n)
		}
	})
}

// An upstream that closes idle kept-alive connections soon (uvicorn: 5 s) must not fail the next call.
func TestIdleConnectionClosedByUpstream(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		closed := make(chan struct{}, 16)
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed {
				closed <- struct{}{}
			}
		}
		srv.Config.IdleTimeout = 50 * time.Millisecond
		srv.Start()
		t.Cleanup(srv.Close)
		tr := newT(Options{})
		ep := endpoint(srv.URL)
		for i := range 3 {
			var resp wire.Response
			if err := tr.Do(request(ep, "/"), &resp); err != nil || string(resp.Body) != "ok" {
				t.Fatalf("call %d: %v %q", i, err, resp.Body)
			}
			select {
			case <-closed:
			case <-time.After(30 * time.Second):
				t.Fatal("the server never closed the idle connection")
			}
		}
	})
}

func TestLargeBodies(t *testing.T) {
	t.Parallel()
	const in, out = 32 << 20, 8 << 20 // the largest request the front end takes; a large answer
	answer := bytes.Repeat([]byte("y"), out)
	srv := blockingServer(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		n, _ := io.Copy(io.Discard, r.Body) // not ReadAll: growing 32 MiB is slow under -race
		if n != in {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, "got %d bytes", n)
			return
		}
		w.Write(answer)
	})
	body := bytes.Repeat([]byte("x"), in)
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		req := request(endpoint(srv.URL), "/")
		req.Body = body
		var resp wire.Response
		if err := tr.Do(req, &resp); err != nil || resp.Status != 200 || !bytes.Equal(resp.Body, answer) {
			t.Fatalf("Do: %v %d, %d bytes", err, resp.Status, len(resp.Body))
		}
		var got int
		s := &sink{onData: func(p []byte) { got += len(p) }} // not kept: 8 MiB in pieces is slow under -race
		if err := tr.Stream(req, s); err != nil || s.status != 200 || got != out {
			t.Fatalf("Stream: %v %d, %d bytes", err, s.status, got)
		}
	})
}
