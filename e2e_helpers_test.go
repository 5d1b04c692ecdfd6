package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"llmcache/db"
)

// Helpers shared by the end-to-end tests (e2e_*_test.go). Those tests drive the real proxy over loopback
// HTTP with a real net/http client, a real SQLite file and the fake upstream, and assert only what a user
// would notice: bytes, upstream call counts, rows on disk, statuses, headers and error bodies.

const testModel = "fake-model"

// chatBody is a minimal chat request whose last user message is content.
func chatBody(content string) string {
	return `{"model":"` + testModel + `","messages":[{"role":"user","content":` + jsonString(content) + `}]}`
}

func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

var hexKey = regexp.MustCompile(`^[0-9a-f]{64}$`)

// cacheKey returns the X-Cache-Key of resp, failing unless it is 64 hex digits.
func cacheKey(t *testing.T, resp *http.Response) string {
	t.Helper()
	k := resp.Header.Get("X-Cache-Key")
	if !hexKey.MatchString(k) {
		t.Fatalf("X-Cache-Key = %q, want 64 lower-case hex digits", k)
	}
	return k
}

// expectCache checks the status and X-Cache header of one answer.
func expectCache(t *testing.T, what string, resp *http.Response, body []byte, status int, xcache string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, resp.StatusCode, status, body)
	}
	if got := resp.Header.Get("X-Cache"); got != xcache {
		t.Fatalf("%s: X-Cache = %q, want %q (X-Cache-Source %q, Cache-Status %q)", what, got, xcache,
			resp.Header.Get("X-Cache-Source"), resp.Header.Get("Cache-Status"))
	}
}

// expectCalls checks how many chat calls the fake upstream received so far.
func expectCalls(t *testing.T, p *testProxy, want int64) {
	t.Helper()
	if got := p.Fake.CallsTo("chat"); got != want {
		t.Fatalf("upstream chat calls = %d, want %d", got, want)
	}
}

// answerContent returns choices[0].message.content of a chat answer.
func answerContent(body []byte) (string, error) {
	var a struct {
		Choices []struct {
			Message struct {
				Content *string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return "", fmt.Errorf("answer is not JSON: %v: %s", err, body)
	}
	if len(a.Choices) == 0 || a.Choices[0].Message.Content == nil {
		return "", fmt.Errorf("answer has no content: %s", body)
	}
	return *a.Choices[0].Message.Content, nil
}

// checkEcho verifies that a chat answer is the fake upstream's answer to a last message of content.
func checkEcho(body []byte, content string) error {
	c, err := answerContent(body)
	if err != nil {
		return err
	}
	want := "echo: " + content
	if c != want && !strings.HasPrefix(c, want+" ") {
		return fmt.Errorf("answer content %.60q... does not belong to the request %q", c, content)
	}
	return nil
}

// apiError is OpenAI's error body. Param and Code are kept raw so a test can tell null from a string.
type apiError struct {
	Error struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Param   json.RawMessage `json:"param"`
		Code    json.RawMessage `json:"code"`
	} `json:"error"`
}

// expectError checks an error answer: its status, and a body in OpenAI's error shape with all four fields
// present. It returns the decoded error.
func expectError(t *testing.T, what string, resp *http.Response, body []byte, status int) apiError {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var outer map[string]map[string]json.RawMessage
	if err := json.Unmarshal(body, &outer); err != nil {
		t.Fatalf("%s: error body is not a JSON object of objects: %v: %s", what, err, body)
	}
	inner, ok := outer["error"]
	if !ok || len(outer) != 1 {
		t.Fatalf("%s: error body is not {\"error\":{...}}: %s", what, body)
	}
	for _, f := range []string{"message", "type", "param", "code"} {
		if _, ok := inner[f]; !ok {
			t.Errorf("%s: error body lacks error.%s: %s", what, f, body)
		}
	}
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: error body does not decode: %v: %s", what, err, body)
	}
	if e.Error.Message == "" || e.Error.Type == "" {
		t.Errorf("%s: error message or type empty: %s", what, body)
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"param", e.Error.Param}, {"code", e.Error.Code}} {
		if s := string(f.raw); s != "null" && !strings.HasPrefix(s, `"`) {
			t.Errorf("%s: error.%s is %s, want a string or null", what, f.name, s)
		}
	}
	return e
}

// str decodes a raw JSON string or null ("" for null).
func str(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// result is one answer collected by a goroutine, where t.Fatal may not be called.
type result struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// loadClient keeps enough idle connections for the concurrent tests not to churn ports.
var loadClient = &http.Client{
	Timeout:   60 * time.Second,
	Transport: &http.Transport{MaxIdleConns: 1000, MaxIdleConnsPerHost: 1000, IdleConnTimeout: 30 * time.Second},
}

// send posts body to url; safe to call from any goroutine.
func send(client *http.Client, url, body string, header ...string) result {
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		return result{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// sendAll sends bodies[i] concurrently, all released at once, and returns the answers in the same order.
func sendAll(url string, bodies []string, header ...string) []result {
	out := make([]result, len(bodies))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, b := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = send(loadClient, url, b, header...)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// dbRow is one entry as stored on disk.
type dbRow struct {
	Kind, Namespace, Model, Endpoint, UpstreamModel, ContentType string
	Body                                                         []byte
	ExpiresAt, HitCount, LastHitAt                               int64
}

// cacheDB is a read connection of the test's own to a proxy's SQLite file: it may be opened while the
// proxy runs (WAL) or after it stopped.
type cacheDB struct {
	t    *testing.T
	c    *sqlite3.Conn
	path string
}

func openCacheDB(t *testing.T, path string) *cacheDB {
	t.Helper()
	c, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatalf("cannot open cache db %q: %v", path, err)
	}
	if err := c.BusyTimeout(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	d := &cacheDB{t: t, c: c, path: path}
	t.Cleanup(func() { d.c.Close() })
	return d
}

// count returns the number of rows in entries.
func (d *cacheDB) count() int {
	d.t.Helper()
	st, _, err := d.c.Prepare(`SELECT count(*) FROM entries`)
	if err != nil {
		d.t.Fatalf("cannot count rows: %v", err)
	}
	defer st.Close()
	if !st.Step() {
		d.t.Fatalf("cannot count rows: %v", st.Err())
	}
	return st.ColumnInt(0)
}

// row returns the entry stored under keyHex (an X-Cache-Key value), its body decoded as the proxy reads it
// (bodies are stored compressed once a dictionary has been trained).
func (d *cacheDB) row(keyHex string) (dbRow, bool) {
	d.t.Helper()
	key, err := hex.DecodeString(keyHex)
	if err != nil || len(key) != 32 {
		d.t.Fatalf("bad key %q", keyHex)
	}
	store, err := db.OpenReadOnly(d.path)
	if err != nil {
		d.t.Fatalf("cannot read row: %v", err)
	}
	defer store.Close()
	r, err := store.OpenReader()
	if err != nil {
		d.t.Fatalf("cannot read row: %v", err)
	}
	defer r.Close()
	var e db.Entry
	ok, err := r.Get((*db.Key)(key), &e)
	if err != nil {
		d.t.Fatalf("cannot read row: %v", err)
	}
	if !ok {
		return dbRow{}, false
	}
	if e.Body == nil {
		e.Body = []byte{}
	}
	// The hit figures live in a table of their own, which Get does not read.
	st, _, err := d.c.Prepare(`SELECT hit_count, last_hit_at FROM hits WHERE key = ?1`)
	if err != nil {
		d.t.Fatalf("cannot read hits: %v", err)
	}
	defer st.Close()
	if err := st.BindBlob(1, key); err != nil {
		d.t.Fatal(err)
	}
	if st.Step() {
		e.HitCount, e.LastHitAt = st.ColumnInt64(0), st.ColumnInt64(1)
	} else if err := st.Err(); err != nil {
		d.t.Fatalf("cannot read hits: %v", err)
	}
	return dbRow{
		Kind: e.Kind, Namespace: e.Namespace, Model: e.Model, Endpoint: e.Endpoint, UpstreamModel: e.UpstreamModel,
		ContentType: e.ContentType, Body: e.Body, ExpiresAt: e.ExpiresAt, HitCount: e.HitCount, LastHitAt: e.LastHitAt,
	}, true
}

// mustRow is row that fails when the entry is absent, and checks that its body is what the client got.
func (d *cacheDB) mustRow(keyHex string, clientBody []byte) dbRow {
	d.t.Helper()
	r, ok := d.row(keyHex)
	if !ok {
		d.t.Fatalf("no row on disk for key %s", keyHex)
	}
	if !bytes.Equal(r.Body, clientBody) {
		d.t.Fatalf("row %s body differs from what the client got:\n disk   %s\n client %s", keyHex, r.Body, clientBody)
	}
	return r
}

// upstreamGate is a reverse proxy between the proxy and its first endpoint that holds upstream calls while
// it is shut: a test can let the upstream answer only once every client has joined a flight (or queued
// behind a slot), instead of guessing how long that takes on a loaded machine. It streams SSE through as it
// comes.
type upstreamGate struct {
	mu      sync.Mutex
	open    chan struct{} // closed while the gate is open; a new one when it shuts again
	arrived atomic.Int64  // calls that reached the gate, held or not
}

// newGatedProxy is newTestProxy with a shut gate in front of the first endpoint. The gate opens by itself
// when the test ends, before the proxy stops (whose stop waits for the calls in flight), so that a failed
// test cannot hang.
func newGatedProxy(t *testing.T, mutate func(*fileConfig)) (*testProxy, *upstreamGate) {
	t.Helper()
	g := &upstreamGate{open: make(chan struct{})}
	p := newTestProxy(t, func(c *fileConfig) {
		if mutate != nil {
			mutate(c)
		}
		target, err := url.Parse(c.APIEndpoints[0].URL)
		if err != nil {
			t.Fatal(err)
		}
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.FlushInterval = -1
		// A transport of its own: nothing of another test's reaches it through http.DefaultTransport.
		tr := &http.Transport{}
		rp.Transport = tr
		t.Cleanup(tr.CloseIdleConnections)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			g.arrived.Add(1)
			g.mu.Lock()
			open := g.open
			g.mu.Unlock()
			<-open
			forwardWhole(rp, w, r)
		}))
		t.Cleanup(srv.Close)
		c.APIEndpoints[0].URL = srv.URL
	})
	t.Cleanup(g.release) // registered after the proxy's stop, so it runs first
	return p, g
}

// forwardWhole hands r to rp with its body read whole first. Go's HTTP/1 server closes what a handler has
// not read of a request's body once the handler starts its answer, and rp's transport copies the body in a
// goroutine of its own: on a loaded machine the upstream had the whole body and answered before that
// goroutine's last Read met the body's end, the Read failed on the closed body, and the transport dropped
// the connection mid-answer (the proxy saw a stream cut: "unexpected EOF").
func forwardWhole(rp *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rp.ServeHTTP(w, r)
}

// release opens the gate: the calls it holds and later ones go through.
func (g *upstreamGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

// hold shuts the gate again: later calls wait at it.
func (g *upstreamGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default:
	}
}

// waitArrived waits until n calls have reached the gate.
func (g *upstreamGate) waitArrived(t *testing.T, n int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d upstream calls at the gate", n), func() bool { return g.arrived.Load() >= n })
	if got := g.arrived.Load(); got != n {
		t.Fatalf("%d upstream calls reached the gate, want %d", got, n)
	}
}

// waitWaiting waits until n requests wait on upstream calls, as GET /stats upstream.waiting counts them:
// each call's leader and the followers that joined it (a streaming follower of a live stream has its
// answer already and is not counted).
func waitWaiting(t *testing.T, p *testProxy, n int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d requests waiting on upstream calls", n), func() bool { return getStats(t, p).Upstream.Waiting >= n })
	if got := getStats(t, p).Upstream.Waiting; got != n {
		t.Fatalf("%d requests wait on upstream calls, want %d", got, n)
	}
}
