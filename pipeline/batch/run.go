package batch

import (
	"bufio"
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"

	"llmcache/db"
	"llmcache/pipeline"
)

// A run is one unfinished batch, carried to its end by one goroutine, which owns the batch's record, its
// output and error files and its admission of lines. Lines run on goroutines of their own (at most
// Config.Concurrency over every batch, bounded by Manager.slots) and send their results back as values.
//
// Durability. A line's result is appended to the output or error file when it comes back (one write, so
// that a crash of the process loses nothing written), and counted. Every Config.Checkpoint the counts and
// the files' lengths are recorded in the batch's record (by the run's syncer, off its goroutine); when the
// run stops or ends, the files are synced first. The files themselves are what a resumed run trusts: it
// reads each from the start, keeps every whole line (a custom_id per line: that line is done) and cuts the
// file after the last one, so that a torn last write is dropped and only that line is asked again. After a
// stop every answered line is written and synced; after kill -9 every line whose write was made is kept;
// after a power loss, what the files lost since their last sync is asked again.
type run struct {
	m *Manager
	// The batch's id, endpoint and creation time (unix ms), which never change: read by anyone.
	id, endpoint string
	createdAt    int64
	// rec is the batch's record as this run last wrote or read it. Run goroutine only.
	rec db.BatchRecord

	cancel     chan struct{} // closed by cancelNow
	cancelOnce sync.Once

	// What GET /v1/batches and /stats read while the run goes on.
	status                   atomic.Pointer[string]
	total, completed, failed atomic.Int64
}

func newRun(m *Manager, rec db.BatchRecord) *run {
	r := &run{m: m, id: rec.ID, endpoint: rec.Endpoint, createdAt: rec.CreatedAt, rec: rec, cancel: make(chan struct{})}
	r.setStatus(rec.Status)
	r.total.Store(rec.Total)
	r.completed.Store(rec.Completed)
	r.failed.Store(rec.Failed)
	return r
}

func (r *run) setStatus(s string) { r.status.Store(&s) }

func (r *run) cancelNow() { r.cancelOnce.Do(func() { close(r.cancel) }) }

func (r *run) progress() Progress {
	return Progress{ID: r.id, Endpoint: r.endpoint, Status: *r.status.Load(), Total: r.total.Load(),
		Completed: r.completed.Load(), Failed: r.failed.Load(), CreatedAt: time.UnixMilli(r.createdAt)}
}

func (r *run) main() {
	defer r.m.wg.Done()
	defer r.m.finished(r.rec.ID)
	log := r.m.log.With("batch", r.rec.ID)
	if err := r.runBatch(); err != nil {
		// Its record is as it was: the batch resumes at the next start.
		log.Error("batch stopped", "err", err)
	}
}

func (r *run) runBatch() error {
	if r.rec.Status == StatusValidating {
		stopped, err := r.validate()
		if stopped || err != nil {
			return err
		}
	}
	return r.execute()
}

// stopped reports whether the manager is stopping.
func (r *run) stopped() bool {
	select {
	case <-r.m.quit:
		return true
	default:
		return false
	}
}

// inputLine is one request of an input file.
type inputLine struct {
	CustomID json.RawMessage `json:"custom_id"`
	Method   json.RawMessage `json:"method"`
	URL      json.RawMessage `json:"url"`
	Body     json.RawMessage `json:"body"`
}

// lineReader reads an input file's lines, numbered from 1, skipping blank ones as OpenAI does.
type lineReader struct {
	br *bufio.Reader
	n  int64
}

func newLineReader(f io.Reader) *lineReader { return &lineReader{br: bufio.NewReaderSize(f, 256<<10)} }

// next returns the next line that is not blank and its number; io.EOF at the end. The line is valid until
// the next call.
func (lr *lineReader) next() ([]byte, int64, error) {
	for {
		line, err := lr.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: gather it whole.
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = lr.br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, err
		}
		if len(line) == 0 && err != nil {
			return nil, 0, io.EOF
		}
		lr.n++
		if t := bytes.TrimSpace(line); len(t) > 0 {
			return t, lr.n, nil
		}
		if err != nil {
			return nil, 0, io.EOF
		}
	}
}

// validate checks every line of the input file as OpenAI does at creation: JSON, a custom_id unique in the
// file, method POST, url the batch's endpoint, a body object. A file with a bad line ends the batch failed,
// with errors.data naming each bad line, and no line runs. stopped: the manager stopped first (the batch
// is validated again at the next start).
func (r *run) validate() (stopped bool, err error) {
	f, found, err := r.m.store.File(r.rec.InputFileID)
	if err != nil {
		return false, err
	}
	if !found {
		return false, r.fail([]lineError{{Code: "file_not_found", Message: "the input file " + r.rec.InputFileID + " was deleted"}}, 0)
	}
	in, err := os.Open(r.m.path(f.Name))
	if err != nil {
		return false, fmt.Errorf("cannot open the input file: %w", err)
	}
	defer in.Close()
	lr := newLineReader(in)
	seen := map[string]int64{}
	var errs []lineError
	var total int64
	for {
		line, n, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false, fmt.Errorf("cannot read the input file: %w", err)
		}
		total++
		if total%1024 == 0 && r.stopped() {
			return true, nil
		}
		customID, e := checkLine(line, r.rec.Endpoint)
		if e == nil {
			if first, dup := seen[customID]; dup {
				e = &lineError{Code: "duplicate_custom_id", Param: optional("custom_id"),
					Message: fmt.Sprintf("The custom_id for this request is a duplicate of another request (line %d). The custom_id parameter must be unique for each request in a batch.", first)}
			} else {
				seen[customID] = n
			}
		}
		if e != nil {
			e.Line = &n
			errs = append(errs, *e)
		}
	}
	if total == 0 {
		errs = append(errs, lineError{Code: "empty_file", Message: "the input file holds no requests"})
	}
	if len(errs) > 0 {
		return false, r.fail(errs, total)
	}
	rec := r.rec
	rec.Status, rec.InProgressAt, rec.Total = StatusInProgress, time.Now().UnixMilli(), total
	ok, err := r.m.store.UpdateBatch(&rec, nil, StatusValidating)
	if err != nil {
		return false, err
	}
	if ok {
		r.rec = rec
		r.total.Store(total)
		r.setStatus(rec.Status)
	}
	return false, nil // when not ok, a cancel came first: execute ends the batch cancelled
}

// checkLine checks one line of an input file; it returns its custom_id.
func checkLine(line []byte, endpoint string) (string, *lineError) {
	if !json.Valid(line) {
		return "", &lineError{Code: "invalid_json_line", Message: "This line is not parseable as valid JSON."}
	}
	var l inputLine
	if err := json.Unmarshal(line, &l); err != nil {
		return "", &lineError{Code: "invalid_json_line", Message: "This line is not a JSON object."}
	}
	var customID, method, url string
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *string
	}{{"custom_id", l.CustomID, &customID}, {"method", l.Method, &method}, {"url", l.URL, &url}} {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			return "", &lineError{Code: "missing_required_parameter", Param: optional(f.name), Message: "Missing required parameter: '" + f.name + "'."}
		}
		if err := json.Unmarshal(f.raw, f.dst); err != nil {
			return "", &lineError{Code: "invalid_type", Param: optional(f.name), Message: "'" + f.name + "' must be a string."}
		}
	}
	if method != "POST" {
		return "", &lineError{Code: "invalid_method", Param: optional("method"), Message: "The method for this request must be POST; got '" + method + "'."}
	}
	if url != endpoint {
		return "", &lineError{Code: "invalid_url", Param: optional("url"),
			Message: "The URL provided for this request ('" + url + "') does not match the batch's endpoint ('" + endpoint + "')."}
	}
	if b := bytes.TrimSpace(l.Body); len(b) == 0 || b[0] != '{' {
		return "", &lineError{Code: "invalid_body", Param: optional("body"), Message: "'body' must be a JSON object."}
	}
	return customID, nil
}

// fail ends the batch failed with errs.
func (r *run) fail(errs []lineError, total int64) error {
	data := make([]json.RawMessage, len(errs))
	for i := range errs {
		data[i] = marshal(&errs[i])
	}
	rec := r.rec
	rec.Status, rec.FailedAt, rec.Errors, rec.Total = StatusFailed, time.Now().UnixMilli(), marshal(data), total
	ok, err := r.m.store.UpdateBatch(&rec, nil, StatusValidating)
	if err != nil || !ok {
		return err // not ok: a cancel came first, and execute ends the batch cancelled
	}
	r.rec = rec
	r.setStatus(rec.Status)
	return nil
}

// outputs are a batch's output and error files as its run appends to them.
type outputs struct {
	f      [2]*os.File // output (lines answered 2xx), errors (the rest)
	n      [2]int64    // bytes written
	synced [2]int64    // bytes synced and recorded
	lines  [2]int64    // lines written
	// buf holds the result lines taken but not written yet: one burst of them, at most one per line in the
	// pipeline (Config.Concurrency), written with one write per file.
	buf      [2][]byte
	bufLines [2]int64
	writErr  error // the first failed write: the run stops, the batch resumes at the next start
}

const (
	outOK  = 0
	outErr = 1
)

func (r *run) fileNames() [2]string {
	return [2]string{r.rec.ID + ".output.jsonl", r.rec.ID + ".errors.jsonl"}
}

// openOutputs opens the batch's output and error files, creating them, and takes back what an earlier run
// of the batch wrote: every whole line is a line done (its custom_id goes in done), and whatever follows
// the last whole line is cut off.
func (r *run) openOutputs(done map[string]struct{}) (*outputs, error) {
	o := &outputs{}
	for i, name := range r.fileNames() {
		f, err := os.OpenFile(r.m.path(name), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			o.close()
			return nil, fmt.Errorf("cannot open %s: %w", name, err)
		}
		o.f[i] = f
		if o.n[i], o.lines[i], err = recoverLines(f, done); err != nil {
			o.close()
			return nil, fmt.Errorf("cannot read back %s: %w", name, err)
		}
		o.synced[i] = o.n[i]
	}
	return o, nil
}

// recoverLines reads f from the start, adding each whole line's custom_id to done, and cuts f after the
// last whole line. It returns f's length and its lines.
func recoverLines(f *os.File, done map[string]struct{}) (size, lines int64, err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, err
	}
	br := bufio.NewReaderSize(f, 256<<10)
	for {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			break // a line without its newline was cut short
		}
		if err != nil {
			return 0, 0, err
		}
		id, ok := customIDOf(line)
		if !ok {
			break
		}
		done[id] = struct{}{}
		size += int64(len(line))
		lines++
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	if fi.Size() != size {
		if err := f.Truncate(size); err != nil {
			return 0, 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, 0, err
		}
	}
	return size, lines, nil
}

// customIDOf returns the custom_id of a whole result line as encodeLine writes it, false for anything else
// (a line a crash cut short, bytes a power loss left). It reads the line's frame, not its body: an answer
// is kept as the upstream gave it, and is not what says whether the line was written whole.
func customIDOf(line []byte) (string, bool) {
	const head, tail = `{"id":"batch_req_`, "},\"error\":null}\n"
	at := len(head) + 24 + len(`","custom_id":`)
	if len(line) < at+len(tail) || !bytes.HasPrefix(line, []byte(head)) || !bytes.HasSuffix(line, []byte(tail)) ||
		string(line[len(head)+24:at]) != `","custom_id":` {
		return "", false
	}
	var id string
	if err := stdjson.NewDecoder(bytes.NewReader(line[at:])).Decode(&id); err != nil {
		return "", false
	}
	return id, true
}

func (o *outputs) close() {
	for _, f := range o.f {
		if f != nil {
			f.Close()
		}
	}
}

// add takes one result line, to be written by the next flush.
func (o *outputs) add(which int, line []byte) {
	o.buf[which] = append(o.buf[which], line...)
	o.bufLines[which]++
}

// flush writes the lines taken since the last flush, one write per file.
func (o *outputs) flush() {
	for i, f := range o.f {
		if len(o.buf[i]) == 0 || o.writErr != nil {
			continue
		}
		n, err := f.Write(o.buf[i])
		o.n[i] += int64(n)
		if err != nil {
			o.writErr = err
			return
		}
		o.lines[i] += o.bufLines[i]
		o.buf[i], o.bufLines[i] = o.buf[i][:0], 0
		if cap(o.buf[i]) > 16<<20 { // a burst of very large answers: do not keep its room
			o.buf[i] = nil
		}
	}
}

// mark is how far a run has written its output and error files: bytes and lines of each.
type mark struct{ n, lines [2]int64 }

func (o *outputs) mark() mark { return mark{o.n, o.lines} }

// record records m as the batch's progress; with sync, it first syncs the files, so that the record claims
// nothing they do not durably hold.
func (r *run) record(files [2]*os.File, m mark, sync bool) error {
	for _, f := range files {
		if !sync {
			break
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("cannot sync %s: %w", f.Name(), err)
		}
	}
	return r.m.store.Progress(r.rec.ID, m.lines[outOK], m.lines[outErr], m.n[outOK], m.n[outErr])
}

// checkpoint syncs the files and records the run's progress, when it moved since the last time. Run
// goroutine, with its syncer stopped.
func (r *run) checkpoint(o *outputs) error {
	if o.synced == o.n {
		return nil
	}
	if err := r.record(o.f, o.mark(), true); err != nil {
		return err
	}
	o.synced = o.n
	return nil
}

// A syncer records a run's progress every Config.Checkpoint, on a goroutine of its own: a write to the
// database may wait for the writer actor's transaction, and the run's goroutine, which writes every line's
// result, must not. It does not sync the files: a sync takes tens of milliseconds on files that grow by
// megabytes a second, and a write to a file waits for a sync of it under way (a cached batch of 8 KB answers
// ran at half the pace of the same requests sent live when it did). What it records is what the run had
// written to the files, which a crash of the process does not lose; after a power loss, the files may hold
// less than the record says, and a resumed run, which takes its lines back from the files, asks again for
// what they lost. The files are synced when the run stops or ends.
type syncer struct {
	r     *run
	files [2]*os.File
	marks chan mark  // capacity 1: a mark offered while a record is under way is dropped; the next tick offers a newer one
	errs  chan error // capacity 1: the first failure
	done  chan struct{}
}

func (r *run) newSyncer(o *outputs) *syncer {
	s := &syncer{r: r, files: o.f, marks: make(chan mark, 1), errs: make(chan error, 1), done: make(chan struct{})}
	go s.loop(o.mark())
	return s
}

func (s *syncer) loop(last mark) {
	defer close(s.done)
	for m := range s.marks {
		if m == last {
			continue
		}
		if err := s.r.record(s.files, m, false); err != nil {
			select {
			case s.errs <- err:
			default:
			}
			continue
		}
		last = m
	}
}

// offer asks for m to be recorded, unless a sync is under way.
func (s *syncer) offer(m mark) {
	select {
	case s.marks <- m:
	default:
	}
}

// stop waits for the sync under way, if any, and ends the goroutine.
func (s *syncer) stop() {
	close(s.marks)
	<-s.done
}

// pending is a line read from the input file, waiting for admission.
type pending struct {
	customID []byte
	body     []byte
}

// result is a line's answer, as the line of the output or error file it becomes.
type result struct {
	line      []byte
	ok        bool             // answered 2xx: the output file; else the error file
	outcome   pipeline.Outcome // how the pipeline answered it
	abandoned bool             // not answered (the run is stopping): the line runs again at the next start
}

// execute runs the batch's lines that are not done yet, then ends it.
func (r *run) execute() error {
	cur, found, err := r.m.store.Batch(r.rec.ID)
	if err != nil {
		return err
	}
	if !found {
		return errors.New("its record is gone")
	}
	r.rec = cur
	r.setStatus(cur.Status)
	if cur.Status != StatusInProgress && cur.Status != StatusFinalizing && cur.Status != StatusCancelling {
		return nil // ended meanwhile (failed validation, or cancelled as it began)
	}
	done := map[string]struct{}{}
	out, err := r.openOutputs(done)
	if err != nil {
		return err
	}
	defer out.close()
	r.completed.Store(out.lines[outOK])
	r.failed.Store(out.lines[outErr])
	if cur.Status != StatusInProgress {
		return r.finish(out, cur.Status == StatusCancelling)
	}
	f, found, err := r.m.store.File(cur.InputFileID)
	if err != nil {
		return err
	}
	if !found {
		return errors.New("its input file " + cur.InputFileID + " is gone")
	}
	in, err := os.Open(r.m.path(f.Name))
	if err != nil {
		return fmt.Errorf("cannot open the input file: %w", err)
	}
	defer in.Close()
	kind := endpoints[cur.Endpoint]
	var tenant *pipeline.Tenant
	if r.m.cfg.Tenant != nil {
		tenant = r.m.cfg.Tenant(cur.Owner)
	}
	lr := newLineReader(in)
	var next *pending
	var readErr error
	readNext := func() {
		next = nil
		for {
			line, _, err := lr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = fmt.Errorf("cannot read the input file: %w", err)
				}
				return
			}
			var l inputLine
			if err := json.Unmarshal(line, &l); err != nil {
				readErr = fmt.Errorf("the input file changed since it was validated: %w", err)
				return
			}
			var id string
			if err := json.Unmarshal(l.CustomID, &id); err != nil {
				readErr = fmt.Errorf("the input file changed since it was validated: %w", err)
				return
			}
			if _, ok := done[id]; ok {
				continue
			}
			next = &pending{customID: l.CustomID, body: l.Body}
			return
		}
	}
	readNext()

	results := make(chan result)
	stop := make(chan struct{}) // closed when the run stops admitting: lines waiting to be submitted again give up
	stopping := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}
	tick := time.NewTicker(r.m.cfg.Checkpoint)
	defer tick.Stop()
	sy := r.newSyncer(out)
	quit, cancel := r.m.quit, r.cancel
	var cancelled, quitting bool
	inflight := 0
	var ckErr error
	take := func(res result) {
		<-r.m.slots
		inflight--
		if res.abandoned {
			return
		}
		which := outOK
		if !res.ok {
			which = outErr
		}
		out.add(which, res.line)
		r.m.lines[res.outcome].Add(1)
	}
	for {
		halted := quitting || cancelled || readErr != nil || out.writErr != nil || ckErr != nil
		if (next == nil || halted) && inflight == 0 {
			break
		}
		var admit chan struct{}
		if next != nil && !halted {
			admit = r.m.slots
		}
		select {
		case admit <- struct{}{}:
			inflight++
			p := *next
			go func() { results <- r.m.answer(kind, tenant, p, stop) }()
			readNext()
		case res := <-results:
			take(res)
			// Take every other result already waiting, then write them together: one write per burst rather
			// than one per line. Each write may cost this goroutine its processor, and every line's result
			// waits for this goroutine (a write per line held a cached batch of 8 KB answers to half the pace
			// of the same requests sent live).
			for drained := false; !drained; {
				select {
				case res := <-results:
					take(res)
				default:
					drained = true
				}
			}
			out.flush()
			r.completed.Store(out.lines[outOK])
			r.failed.Store(out.lines[outErr])
		case <-tick.C:
			sy.offer(out.mark())
		case err := <-sy.errs:
			if ckErr == nil {
				ckErr = err
				stopping()
			}
		case <-cancel:
			cancel, cancelled = nil, true
			stopping()
		case <-quit:
			quit, quitting = nil, true
			stopping()
		}
	}
	sy.stop()
	if err := r.checkpoint(out); err != nil {
		return err
	}
	switch {
	case out.writErr != nil:
		return fmt.Errorf("cannot write a line's result: %w", out.writErr)
	case ckErr != nil:
		return ckErr
	case readErr != nil:
		return readErr
	case quitting:
		return nil // resumes at the next start
	}
	return r.finish(out, cancelled)
}

// finish ends the batch: completed, or cancelled (a cancel came). The output and error files become files
// of the Batch API (those that hold a line), in the same transaction as the batch's last status.
func (r *run) finish(out *outputs, cancelled bool) error {
	if err := r.checkpoint(out); err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	if !cancelled && r.rec.Status == StatusInProgress {
		changed, err := r.m.store.Transition(r.rec.ID, StatusFinalizing, "finalizing_at", now, StatusInProgress)
		if err != nil {
			return err
		}
		cancelled = !changed // a cancel came first
	}
	cur, found, err := r.m.store.Batch(r.rec.ID)
	if err != nil || !found {
		return errors.Join(err, errors.New("its record is gone"))
	}
	rec := cur
	rec.Completed, rec.Failed, rec.OutputBytes, rec.ErrorBytes = out.lines[outOK], out.lines[outErr], out.n[outOK], out.n[outErr]
	from := StatusFinalizing
	if cancelled || cur.Status == StatusCancelling {
		from, rec.Status, rec.CancelledAt = StatusCancelling, StatusCancelled, now
	} else {
		rec.Status, rec.CompletedAt = StatusCompleted, now
	}
	names := r.fileNames()
	var files []db.FileRecord
	var empty []string
	for i, suffix := range [2]string{"_output.jsonl", "_error.jsonl"} {
		if out.lines[i] == 0 {
			empty = append(empty, names[i])
			continue
		}
		f := db.FileRecord{ID: newID("file-"), Owner: rec.Owner, Filename: rec.ID + suffix, Purpose: purposeOutput, Bytes: out.n[i],
			Lines: out.lines[i], CreatedAt: now, Name: names[i]}
		files = append(files, f)
		if i == outOK {
			rec.OutputFileID = f.ID
		} else {
			rec.ErrorFileID = f.ID
		}
	}
	ok, err := r.m.store.UpdateBatch(&rec, files, from)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("its status changed to %q while it ended", rec.Status)
	}
	r.rec = rec
	r.setStatus(rec.Status)
	for _, name := range empty {
		if err := os.Remove(r.m.path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.m.log.Warn("cannot remove an empty batch file", "file", name, "err", err)
		}
	}
	r.m.log.Info("batch ended", "batch", rec.ID, "status", rec.Status, "completed", rec.Completed, "failed", rec.Failed)
	return nil
}
