package db

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ncruces/go-sqlite3"

	"llmcache/db/codec"
)

// Compression of the SQLite store. New answers are compressed with zstd and the newest dictionary of the
// dicts table (db/codec); entries.encoding says how each body is kept, so that bodies written before
// compression (identity), by an older dictionary or with compression turned off all stay readable.
//
// Dictionaries are trained from the store's own answers, never on the hot path: once TrainAfter answers
// are stored, a goroutine of the store samples the most recent ones through a read connection of its own
// and trains one (seconds of CPU), then hands it to the writer, whose next WriteBatch adds it to the dicts
// table in its transaction; only once that has committed does the codec compress with it, so no body ever
// names a dictionary that is not on disk. The next training waits for ten times as many answers (a
// cache's answers change slowly; each dictionary is ~64 KB), and a new dictionary is kept only when it
// compresses the held-out samples at least 3% better than the current one.
//
// Compression itself runs in Prepare, which the writer actor calls from goroutines of its own beside its
// transactions rather than inside them (and not in the goroutine of the request whose answer it is);
// WriteBatch compresses what was not prepared.

const (
	// trainSamples is the most answers a dictionary is trained from. Past a few hundred ~1.3 KB answers of
	// prose a dictionary barely improves (another 1,000 answers compressed to 0.294 of their size by one
	// trained from 250, 0.287 from 1,000, 0.284 from 2,000) while training costs CPU in proportion (0.17,
	// 0.52 and 0.90 s), and it runs again at 10 and 100 times the answers: 1,000.
	trainSamples = 1000
	// dictBytes is the size of a dictionary.
	dictBytes = 64 << 10
	// minCompressBytes: smaller bodies stay as they are (a frame's header and checksum are ~12 bytes).
	minCompressBytes = 64
	// retrainGain is how much smaller a new dictionary must make the held-out samples to replace the
	// current one.
	retrainGain = 0.97
)

// compression is a store's codec and its training state.
type compression struct {
	codec      *codec.Codec
	on         bool // compress new answers (Options.NoCompression unset)
	trainAfter int64
	corrupt    atomic.Int64 // bodies that could not be decoded

	// nextTrain is the entries id past which the next training starts. Writer actor only.
	nextTrain int64
	// training: a training runs, or its result waits in trained; set by the writer, cleared when the
	// writer has dealt with the result. One at a time.
	training atomic.Bool
	trained  chan trainResult // capacity 1: the training's result, for the writer
	wg       sync.WaitGroup   // the training goroutine
	scratch  []byte           // the writer's encoding buffer
}

type trainResult struct {
	t         codec.Trained
	lastEntry int64 // entries' largest id when the samples were read
	adopt     bool  // better than the current dictionary: write it and compress with it
	err       error
}

func newCompression(opts *Options) *compression {
	c := &compression{
		codec:      codec.New(codec.Options{MinBytes: minCompressBytes, MaxBytes: largeBody}),
		on:         !opts.NoCompression,
		trainAfter: opts.TrainAfter,
		trained:    make(chan trainResult, 1),
	}
	if c.trainAfter <= 0 {
		c.trainAfter = DefaultTrainAfter
	}
	c.nextTrain = c.trainAfter
	return c
}

// loadDicts adds to cd the dictionaries of c's database it does not have yet (only is 0), or dictionary
// only; the newest becomes the current one. It returns the last_entry of the newest dictionary (0: none).
// A database older than compressionSchema has no dictionaries.
func loadDicts(c *sqlite3.Conn, cd *codec.Codec, only uint32) (lastEntry int64, err error) {
	v, err := schemaVersion(c)
	if err != nil || v < compressionSchema {
		return 0, err
	}
	sql := `SELECT id, data, last_entry FROM dicts ORDER BY id`
	if only != 0 {
		sql = `SELECT id, data, last_entry FROM dicts WHERE id = ?1`
	}
	st, _, err := c.Prepare(sql)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	if only != 0 {
		if err := st.BindInt64(1, int64(only)); err != nil {
			return 0, err
		}
	}
	var newest uint32
	for st.Step() {
		id := st.ColumnInt64(0)
		if id <= 0 || id > math.MaxUint32 {
			return 0, fmt.Errorf("dictionary id %d out of range", id)
		}
		if err := cd.Add(codec.Dict{ID: uint32(id), Data: st.ColumnRawBlob(1)}, false); err != nil {
			return 0, err
		}
		newest, lastEntry = uint32(id), st.ColumnInt64(2)
	}
	if err := st.Err(); err != nil {
		return 0, err
	}
	if only == 0 && newest != 0 {
		// Add again as current: the data is the same, so this only switches the encoder.
		if err := cd.Add(codec.Dict{ID: newest, Data: cd.Data(newest)}, true); err != nil {
			return 0, err
		}
	}
	return lastEntry, nil
}

// initCompression loads the dictionaries on disk when the store opens: a few rows, no scan.
func (s *SQLite) initCompression() error {
	last, err := loadDicts(s.w, s.comp.codec, 0)
	if err != nil {
		return fmt.Errorf("cannot open cache db %q: cannot load compression dictionaries: %w", s.path, err)
	}
	if last > 0 {
		s.comp.nextTrain = max(10*last, last+s.comp.trainAfter)
	}
	return nil
}

// Prepare compresses e's body for WriteBatch (see Preparer). Safe for concurrent use.
func (s *SQLite) Prepare(e *Entry) {
	if !s.comp.on || e.Encoded != nil {
		return
	}
	enc, frame := s.comp.codec.Encode(nil, e.Body)
	if enc != codec.Identity {
		e.Encoded, e.Encoding = frame, enc
	}
}

// encode returns the bytes to store for e and their encoding. Writer connection only: the frame it
// returns lives in a buffer the next call reuses.
func (s *SQLite) encode(e *Entry) (int64, []byte) {
	if e.Encoded != nil && s.comp.codec.Has(e.Encoding) {
		return int64(e.Encoding), e.Encoded
	}
	if !s.comp.on {
		return encodingIdentity, e.Body
	}
	enc, frame := s.comp.codec.Encode(s.comp.scratch, e.Body)
	s.comp.scratch = frame[:0]
	if enc == codec.Identity {
		return encodingIdentity, e.Body
	}
	return int64(enc), frame
}

// decode appends the body src holds in encoding enc to dst[:0], on connection c (whose statement may be
// stepping on the row: src may point into SQLite's memory). A dictionary this store does not know (written
// by another process since it opened) is loaded from c. An error is counted and logged by the caller.
func (s *SQLite) decode(c *sqlite3.Conn, key *Key, enc int64, src, dst []byte) ([]byte, error) {
	if enc < 0 || enc > math.MaxUint32 {
		return dst[:0], fmt.Errorf("%w: encoding %d", codec.ErrCorrupt, enc)
	}
	out, err := s.comp.codec.Decode(uint32(enc), src, dst)
	if errors.Is(err, codec.ErrUnknownDict) {
		// src may point into SQLite's memory, which another statement may move: decode from a copy.
		src = append([]byte(nil), src...)
		if _, lerr := loadDicts(c, s.comp.codec, uint32(enc)); lerr != nil {
			return dst[:0], fmt.Errorf("cannot load compression dictionary %d: %w", enc, lerr)
		}
		out, err = s.comp.codec.Decode(uint32(enc), src, dst)
	}
	if err != nil {
		s.comp.corrupt.Add(1)
		s.log.Error("cannot decode a stored answer; it is served as a miss and replaced by the fresh answer",
			"db", s.path, "key", fmt.Sprintf("%x", key[:]), "encoding", enc, "err", err)
		return out, err
	}
	return out, nil
}

// adoptTrained writes a dictionary the training goroutine has made, inside the writer's transaction. It
// returns the dictionary to add to the codec once the transaction has committed (nil: none). Writer
// connection only.
func (s *SQLite) adoptTrained() (*trainResult, error) {
	var r trainResult
	select {
	case r = <-s.comp.trained:
	default:
		return nil, nil
	}
	if r.err != nil || !r.adopt {
		return &r, nil
	}
	st, _, err := s.w.Prepare(`INSERT OR IGNORE INTO dicts (id, created_at, samples, last_entry, data) VALUES (?1, ?2, ?3, ?4, ?5)`)
	if err != nil {
		s.comp.trained <- r // room: it was just taken; the next batch tries again
		return nil, err
	}
	defer st.Close()
	b := binder{st: st}
	b.int64(1, int64(r.t.ID))
	b.int64(2, time.Now().UnixMilli())
	b.int64(3, int64(r.t.Samples))
	b.int64(4, r.lastEntry)
	b.blob(5, r.t.Data)
	if b.err == nil {
		b.err = st.Exec()
	}
	if b.err != nil {
		s.comp.trained <- r
		return nil, b.err
	}
	if s.w.Changes() == 0 {
		// Another process added a dictionary with this id meanwhile: bodies must name one dictionary only.
		r.adopt, r.err = false, fmt.Errorf("dictionary id %d was taken by another process", r.t.ID)
	}
	return &r, nil
}

// afterCommit finishes what adoptTrained began once its transaction has committed, and starts the next
// training when enough answers have been stored. Writer actor only.
func (s *SQLite) afterCommit(r *trainResult, lastEntry int64) {
	if r != nil {
		s.comp.nextTrain = max(10*r.lastEntry, r.lastEntry+s.comp.trainAfter)
		switch {
		case r.err != nil:
			s.log.Warn("cannot train a compression dictionary; answers are compressed as before", "db", s.path, "err", r.err)
		case !r.adopt:
			s.log.Info("a newly trained compression dictionary is no better than the current one; keeping the current one", "db", s.path,
				"samples", r.t.Samples, "ratio_new", ratio(r.t.DictBytes, r.t.RawBytes), "ratio_current", ratio(r.t.CurrentBytes, r.t.RawBytes))
		default:
			if err := s.comp.codec.Add(r.t.Dict, true); err != nil {
				// It is on disk, so bodies can still be read once the store is opened again; they are not written with it.
				s.log.Error("cannot use the compression dictionary just trained", "db", s.path, "dictionary", r.t.ID, "err", err)
			} else {
				s.log.Info("new answers are compressed with a dictionary trained from the cache's own answers", "db", s.path,
					"dictionary", r.t.ID, "samples", r.t.Samples, "ratio", ratio(r.t.DictBytes, r.t.RawBytes),
					"ratio_before", ratio(r.t.CurrentBytes, r.t.RawBytes))
			}
		}
		s.comp.training.Store(false)
	}
	if s.comp.on && lastEntry >= s.comp.nextTrain && s.comp.training.CompareAndSwap(false, true) {
		s.comp.wg.Add(1)
		go func() {
			defer s.comp.wg.Done()
			pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("stage", "train")))
			s.comp.trained <- s.train(lastEntry)
		}()
	}
}

func ratio(a, b int64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", float64(a)/float64(b))
}

// TrainNow trains a dictionary from the answers stored so far, whatever their number, writes it and
// compresses new answers with it (unless it is no better than the current one), before it returns. For
// tests, benchmarks and tools: it takes seconds of CPU. Not safe for concurrent use; called only by the
// writer actor, or when none runs.
func (s *SQLite) TrainNow() (err error) {
	defer s.guard(&err, "train a dictionary for")
	if err := s.writer(); err != nil {
		return fmt.Errorf("cannot train a dictionary for cache db %q: %w", s.path, err)
	}
	if !s.comp.training.CompareAndSwap(false, true) {
		return fmt.Errorf("cannot train a dictionary for cache db %q: a training runs", s.path)
	}
	r := s.train(0)
	if r.err != nil {
		s.comp.training.Store(false)
		return fmt.Errorf("cannot train a dictionary for cache db %q: %w", s.path, r.err)
	}
	s.comp.trained <- r
	if err := s.beginTx(); err != nil {
		return err
	}
	var trained *trainResult
	defer func() {
		switch {
		case err == nil:
			s.afterCommit(trained, 0)
		case trained != nil:
			s.comp.trained <- *trained
		}
	}()
	defer s.endTx(&err)
	trained, err = s.adoptTrained()
	return err
}

// train samples the most recent answers through a read connection of its own and trains the next
// dictionary from them; lastEntry is entries' largest id the writer saw (0: read it).
func (s *SQLite) train(lastEntry int64) (r trainResult) {
	defer func() {
		if p := recover(); p != nil {
			s.panics.Add(1)
			r = trainResult{err: driverPanic(p)}
		}
	}()
	c, err := openRead(s.path, s.busyTimeout)
	if err != nil {
		return trainResult{err: err}
	}
	defer c.Close()
	if lastEntry == 0 {
		st, _, err := c.Prepare(`SELECT ifnull(max(id), 0) FROM entries`)
		if err != nil {
			return trainResult{err: err}
		}
		if lastEntry, err = queryInt64(st); err != nil {
			st.Close()
			return trainResult{err: err}
		}
		st.Close()
	}
	samples, err := s.samples(c)
	if err != nil {
		return trainResult{err: fmt.Errorf("cannot read answers to train from: %w", err)}
	}
	var next uint32 = 1
	for s.comp.codec.Has(next) {
		next++
	}
	t, err := codec.Train(next, samples, dictBytes, 0, s.comp.codec)
	if err != nil {
		return trainResult{err: err}
	}
	adopt := s.comp.codec.Current() == codec.Identity || float64(t.DictBytes) <= retrainGain*float64(t.CurrentBytes)
	return trainResult{t: t, lastEntry: lastEntry, adopt: adopt}
}

// samples reads the bodies of the most recent answers that compression would apply to, decoded.
func (s *SQLite) samples(c *sqlite3.Conn) ([][]byte, error) {
	st, _, err := c.Prepare(`SELECT key, encoding, body FROM entries WHERE length(body) BETWEEN ?1 AND ?2 ORDER BY id DESC LIMIT ?3`)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	b := binder{st: st}
	b.int64(1, minCompressBytes)
	b.int64(2, largeBody)
	b.int64(3, trainSamples)
	if b.err != nil {
		return nil, b.err
	}
	var out [][]byte
	for st.Step() {
		var key Key
		copy(key[:], st.ColumnRawBlob(0))
		body, err := s.decode(c, &key, st.ColumnInt64(1), st.ColumnRawBlob(2), nil)
		if err != nil {
			continue // counted and logged; a sample less
		}
		out = append(out, body)
	}
	return out, st.Err()
}
