package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"llmcache/bench/fakeupstream"
)

// Durability of the real binary: after kill -9 at most the last flush_interval_ms of
// answers is lost and the database opens cleanly; after SIGTERM nothing answered is lost. Also the helpers
// that run the binary, shared with e2e_versions_test.go.

// binProc is one run of the real binary, listening on a loopback port.
type binProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited and stderr is drained
	err    error         // cmd.Wait's result; valid after done is closed
	addr   string        // "127.0.0.1:PORT"
}

// writeBinConfig writes a config file for the binary: a loopback port, dbPath, one endpoint at fakeURL
// and extra (TOML, which may open tables, so it goes after the top-level keys and before the endpoint).
// binFixture builds the binary (once per run) and starts a fake upstream, both cleaned up with the test,
// then writes a config for a fresh database in a temp dir; topLevel and tables are extra config text.
func binFixture(t *testing.T, topLevel, tables string) (fake *fakeupstream.Server, dbPath, cfgPath string) {
	t.Helper()
	llmcacheBinary(t)
	fake, err := fakeupstream.Start(fakeupstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	dir := t.TempDir()
	dbPath = filepath.Join(dir, "cache.db")
	return fake, dbPath, writeBinConfig(t, dir, "config.toml", dbPath, fake.URL(), topLevel, tables)
}

func writeBinConfig(t *testing.T, dir, name, dbPath, fakeURL, topLevel, extra string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	cfg := fmt.Sprintf("listen = \"127.0.0.1:0\"\ndatabase_url = %q\n%s\n%s\n\n[[api_endpoints]]\nname = \"fake\"\nurl = %q\nweight = 1\n",
		dbPath, topLevel, extra, fakeURL)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startBin runs the binary with -config cfgPath and env added to a clean environment, and waits until it
// logs its listening address. The process is killed when the test ends, if it still runs.
func startBin(t *testing.T, cfgPath string, env ...string) *binProc {
	t.Helper()
	bin := llmcacheBinary(t)
	cmd := exec.Command(bin, "-config", cfgPath)
	cmd.Env = append(cleanEnv(), env...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &binProc{t: t, cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.Write([]byte(line + "\n"))
			if m := listenAddr.FindStringSubmatch(line); m != nil {
				select {
				case addrCh <- m[1]:
				default:
				}
			}
		}
		p.err = cmd.Wait() // after stderr is drained, as exec requires
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case p.addr = <-addrCh:
	case <-p.done:
		t.Fatalf("llmcache exited before listening: %v\n%s", p.err, p.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("llmcache did not log its listening address\n%s", p.stderr.String())
	}
	return p
}

// chatURL is the binary's chat completions endpoint.
func (p *binProc) chatURL() string { return "http://" + p.addr + "/v1/chat/completions" }

// signalAndWait sends sig and waits for the process to exit; it returns the exit code.
func (p *binProc) signalAndWait(sig syscall.Signal) int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("cannot send %v: %v", sig, err)
	}
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.t.Fatalf("llmcache did not exit after %v\n%s", sig, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and fails unless the process exits 0.
func (p *binProc) stop() {
	p.t.Helper()
	if code := p.signalAndWait(syscall.SIGTERM); code != 0 {
		p.t.Fatalf("llmcache exited with code %d after SIGTERM, want 0 (%v)\n%s", code, p.err, p.stderr.String())
	}
}

// ack is one answer of the sequential stream: when the client had it, and its key.
type ack struct {
	content string
	at      time.Time
	key     string
	body    []byte
}

// streamUntil sends distinct chat requests one after another until d has passed or n were answered, and
// records each 200 answer. Any other outcome fails the test.
func streamUntil(t *testing.T, url, prefix string, d time.Duration, n int) []ack {
	t.Helper()
	var acks []ack
	end := time.Now().Add(d)
	for i := 0; i < n && time.Now().Before(end); i++ {
		content := prefix + " " + strconv.Itoa(i)
		r := send(loadClient, url, chatBody(content))
		at := time.Now()
		if r.err != nil || r.status != 200 {
			t.Fatalf("request %d: status %d, err %v: %s", i, r.status, r.err, r.body)
		}
		if x := r.header.Get("X-Cache"); x != "MISS" {
			t.Fatalf("request %d: X-Cache %q, want MISS for a new request", i, x)
		}
		key := r.header.Get("X-Cache-Key")
		if !hexKey.MatchString(key) {
			t.Fatalf("request %d: X-Cache-Key %q", i, key)
		}
		acks = append(acks, ack{content: content, at: at, key: key, body: r.body})
	}
	return acks
}

// integrityCheck opens the file the way a new process would (read-write, so a WAL left by a crash is
// recovered) and returns PRAGMA integrity_check's answer.
func integrityCheck(t *testing.T, path string) string {
	t.Helper()
	c, err := sqlite3.Open(path)
	if err != nil {
		t.Fatalf("cannot open cache db %q after the crash: %v", path, err)
	}
	defer c.Close()
	st, _, err := c.Prepare(`PRAGMA integrity_check`)
	if err != nil {
		t.Fatalf("cannot run integrity_check: %v", err)
	}
	defer st.Close()
	var lines []string
	for st.Step() {
		lines = append(lines, st.ColumnText(0))
	}
	if err := st.Err(); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	return strings.Join(lines, "\n")
}

// durabilityConfig makes the deadline the only thing that flushes during the stream: batch_write_size is
// far above the number of requests, so a flush that only happens on batch size would lose everything.
const durabilityConfig = "[cache]\nflush_interval_ms = 200\nbatch_write_size = 100000\n"

// binWriter reads the writer's figures from a running binary's /stats.
func binWriter(t *testing.T, p *binProc) (written, pending int64) {
	t.Helper()
	resp, err := loadClient.Get("http://" + p.addr + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Writer struct{ Written, Pending int64 } `json:"writer"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/stats: status %d, %v", resp.StatusCode, err)
	}
	return st.Writer.Written, st.Writer.Pending
}

// TestE2EDurabilitySIGKILL: answers reach the disk on the writer's deadline alone (batch_write_size is far
// above the number of answers, and nothing stops the proxy), and every answer the writer reported written
// survives kill -9; answers still waiting for the deadline may be lost, nothing else. The file passes
// integrity_check, and a restart serves the kept answers as hits.
//
// The test waits for what the writer reports rather than for a guessed time since the last answer, so a
// loaded machine can make it slower, never make it fail.
func TestE2EDurabilitySIGKILL(t *testing.T) {
	fake, dbPath, cfgPath := binFixture(t, "", durabilityConfig)

	p := startBin(t, cfgPath)
	kept := streamUntil(t, p.chatURL(), "sigkill", 1500*time.Millisecond, 300)
	waitFor(t, "the deadline flush to write every answer so far", func() bool {
		written, pending := binWriter(t, p)
		return written >= int64(len(kept)) && pending == 0
	})
	// More answers, killed while they wait for the next deadline (or just after it).
	late := streamUntil(t, p.chatURL(), "sigkill late", time.Hour, 20)
	p.signalAndWait(syscall.SIGKILL)
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("llmcache was not killed by SIGKILL: %v", p.cmd.ProcessState)
	}

	if got := integrityCheck(t, dbPath); got != "ok" {
		t.Fatalf("PRAGMA integrity_check after kill -9 = %q, want ok", got)
	}
	d := openCacheDB(t, dbPath)
	for i, a := range kept {
		if _, ok := d.row(a.key); !ok {
			t.Errorf("request %d, reported written before the kill, has no row on disk", i)
			continue
		}
		d.mustRow(a.key, a.body)
	}
	lateKept := 0
	for _, a := range late {
		if _, ok := d.row(a.key); ok {
			d.mustRow(a.key, a.body)
			lateKept++
		}
	}
	if rows := d.count(); rows != len(kept)+lateKept {
		t.Errorf("%d rows on disk, want the %d written answers and the %d late ones found", rows, len(kept), lateKept)
	}
	t.Logf("%d answers written before kill -9, all on disk; %d of %d later answers kept", len(kept), lateKept, len(late))

	p2 := startBin(t, cfgPath)
	calls := fake.CallsTo("chat")
	for _, i := range []int{0, len(kept) / 2, len(kept) - 1} {
		a := kept[i]
		r := send(loadClient, p2.chatURL(), chatBody(a.content))
		if r.err != nil || r.status != 200 || r.header.Get("X-Cache") != "HIT" {
			t.Fatalf("after restart, %q: status %d, X-Cache %q, err %v; want a HIT", a.content, r.status, r.header.Get("X-Cache"), r.err)
		}
		if err := checkEcho(r.body, a.content); err != nil {
			t.Fatal(err)
		}
	}
	if got := fake.CallsTo("chat"); got != calls {
		t.Fatalf("hits after the restart called the upstream %d times", got-calls)
	}
	p2.stop()
}

// TestE2EDurabilitySIGTERM: SIGTERM right after a stream of answers (many still waiting in the writer)
// keeps every one of them, and the process exits 0.
func TestE2EDurabilitySIGTERM(t *testing.T) {
	_, dbPath, cfgPath := binFixture(t, "", durabilityConfig)

	p := startBin(t, cfgPath)
	acks := streamUntil(t, p.chatURL(), "sigterm stream", 1500*time.Millisecond, 300)
	if code := p.signalAndWait(syscall.SIGTERM); code != 0 {
		t.Fatalf("llmcache exited with code %d after SIGTERM, want 0 (%v)\n%s", code, p.err, p.stderr.String())
	}
	if got := integrityCheck(t, dbPath); got != "ok" {
		t.Fatalf("PRAGMA integrity_check after SIGTERM = %q, want ok", got)
	}
	d := openCacheDB(t, dbPath)
	for i, a := range acks {
		if _, ok := d.row(a.key); !ok {
			t.Errorf("request %d (answered %v before SIGTERM) has no row on disk", i, time.Since(a.at).Round(time.Millisecond))
			continue
		}
		d.mustRow(a.key, a.body)
	}
	if n := d.count(); n != len(acks) {
		t.Errorf("%d rows on disk, %d answers given", n, len(acks))
	}
	t.Logf("%d answers, all checked on disk after SIGTERM", len(acks))
}

// TestE2EBinarySchemaTooNew: a database written by a newer schema is refused at start with a non-zero
// exit and a message saying it is newer; the file is left alone, byte for byte, and no -wal or -shm file
// appears beside it.
func TestE2EBinarySchemaTooNew(t *testing.T) {
	bin := llmcacheBinary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "cache.db")
	// The endpoint is never called: nothing is requested.
	cfgPath := writeBinConfig(t, dir, "config.toml", dbPath, "http://127.0.0.1:9", "", "")
	startBin(t, cfgPath).stop()

	c, err := sqlite3.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	var v int64
	st, _, err := c.Prepare(`SELECT value FROM meta WHERE key = 'schema_version'`)
	if err != nil {
		t.Fatalf("cannot read meta.schema_version: %v", err)
	}
	if !st.Step() {
		t.Fatalf("meta has no schema_version: %v", st.Err())
	}
	v = st.ColumnInt64(0)
	st.Close()
	if v < 1 {
		t.Fatalf("meta.schema_version = %d after a first start", v)
	}
	if err := c.Exec(fmt.Sprintf(`UPDATE meta SET value = %d WHERE key = 'schema_version'`, v+1)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-config", cfgPath)
	cmd.Env = cleanEnv()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("llmcache did not exit on a database of schema %d (it knows %d)\n%s", v+1, v, stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); err == nil || code == 0 {
		t.Fatalf("exit code %d on a newer schema, want non-zero\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "newer") {
		t.Fatalf("stderr does not say the database is newer:\n%s", stderr.String())
	}
	if after, err := os.ReadFile(dbPath); err != nil || !bytes.Equal(after, before) {
		t.Fatalf("the refused database changed (%v)", err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(dbPath + suffix); !os.IsNotExist(err) {
			t.Errorf("the refused start left a %s file (%v)", suffix, err)
		}
	}

	// The refused file keeps its version: the old binary did not "migrate" it down.
	d := openCacheDB(t, dbPath)
	st, _, err = d.c.Prepare(`SELECT value FROM meta WHERE key = 'schema_version'`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if !st.Step() || st.ColumnInt64(0) != v+1 {
		t.Fatalf("schema_version changed by the refused start: %v", st.Err())
	}
}
