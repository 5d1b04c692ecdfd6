package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"llmcache/actors"
	"llmcache/bench/fakeupstream"
	"llmcache/db"
)

// answerBytes makes the fake's indented chat answers about 1.3 KB, the size the targets speak of.
const answerBytes = 520

var (
	answersOnce sync.Once
	answersSet  [][]byte
	answersErr  error
)

// realAnswers is 4,096 distinct ~1.3 KB indented chat answers of natural-language text (the Go standard
// library's doc comments, see fakeupstream.GoDocText), made once per process.
func realAnswers(tb testing.TB) [][]byte {
	tb.Helper()
	answersOnce.Do(func() {
		var text []byte
		if text, answersErr = fakeupstream.GoDocText(); answersErr == nil {
			answersSet, answersErr = fakeupstream.ChatAnswers(text, 4096, answerBytes)
		}
	})
	if answersErr != nil {
		tb.Fatal(answersErr)
	}
	return answersSet
}

// entryFor is the entry the writer stores for the n-th answer: a key of its own, a realistic body.
func entryFor(n uint64, answers [][]byte) *db.Entry {
	var k [8]byte
	binary.LittleEndian.PutUint64(k[:], n)
	return &db.Entry{Key: sha256.Sum256(k[:]), Body: answers[n%uint64(len(answers))], ContentType: "application/json",
		Kind: "chat", Model: "fake-model", Endpoint: "fake", UpstreamModel: "fake-model", CreatedAt: time.Now().UnixMilli()}
}

var (
	seedMu    sync.Mutex
	seedFiles = map[bool]string{} // by compression: a seeded database file to copy
)

// seededStore opens a store at path holding 2,000 answers (keys apart from entryFor's first 2^40) and,
// unless compression is off, a dictionary trained from them, as a cache has soon after it starts. The
// first call per process makes the database (training takes seconds); later ones copy it.
func seededStore(tb testing.TB, path string, answers [][]byte, compress bool) *db.SQLite {
	tb.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := db.Options{NoCompression: !compress, TrainAfter: 1 << 40, Log: quiet}
	seedMu.Lock()
	defer seedMu.Unlock()
	if seed, ok := seedFiles[compress]; ok {
		data, err := os.ReadFile(seed)
		if err == nil {
			err = os.WriteFile(path, data, 0o644)
		}
		if err != nil {
			tb.Fatal(err)
		}
	} else {
		store, err := db.Open(path, opts)
		if err != nil {
			tb.Fatal(err)
		}
		batch := &db.Batch{}
		for i := range uint64(2000) {
			batch.Puts = append(batch.Puts, entryFor(1<<40+i, answers))
		}
		if err := store.WriteBatch(batch); err != nil {
			tb.Fatal(err)
		}
		if compress {
			if err := store.TrainNow(); err != nil {
				tb.Fatal(err)
			}
		}
		if err := store.Close(); err != nil { // checkpoints: the whole database is in the file
			tb.Fatal(err)
		}
		dir, err := os.MkdirTemp("", "llmcache-bench-seed")
		if err != nil {
			tb.Fatal(err)
		}
		seed := filepath.Join(dir, "seed.db")
		data, err := os.ReadFile(path)
		if err == nil {
			err = os.WriteFile(seed, data, 0o644)
		}
		if err != nil {
			tb.Fatal(err)
		}
		seedFiles[compress] = seed
	}
	store, err := db.Open(path, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return store
}

// BenchmarkWriter measures the writer actor's sustained rate of stored ~1.3 KB answers, with puts arriving
// from several goroutines as they do from upstream calls, next to its baseline in the same run: a bare
// batched insert of the same rows into the same schema through the same driver with the writer
// connection's settings (BEGIN, one prepared INSERT per row, COMMIT; the rows' labels row exists), in
// batches of the size the writer just wrote. With compression the bare insert stores the same compressed
// bodies, compressed before its clock starts; impl=writer pays for compressing (in the producers'
// goroutines, as Put does it in the upstream calls' goroutines), impl=writer-prepared does not: it is what
// the writer itself costs. The targets are 50,000 answers/s and at least 0.8x the bare insert.
func BenchmarkWriter(b *testing.B) {
	answers := realAnswers(b)
	const batch = 20 // batch_write_size's default; under load the writer's batches are what waits
	for _, compress := range []bool{true, false} {
		meanBatch := batch // the writer's mean batch in its last run: the bare insert's batch size
		name := map[bool]string{true: "compress=on", false: "compress=off"}[compress]
		impls := []string{"writer", "writer-prepared"}
		if !compress {
			impls = impls[:1]
		}
		for _, impl := range impls {
			b.Run(name+"/impl="+impl, func(b *testing.B) {
				store := seededStore(b, filepath.Join(b.TempDir(), "cache.db"), answers, compress)
				defer store.Close()
				var prepared []db.Entry // the answers' bodies as the store keeps them, by answer
				if impl == "writer-prepared" {
					prepared = make([]db.Entry, len(answers))
					for i, a := range answers {
						prepared[i].Body = a
						store.Prepare(&prepared[i])
					}
				}
				w := actors.NewWriter(store, actors.WriterConfig{BatchSize: batch}, slog.New(slog.NewTextHandler(io.Discard, nil)))
				var seq atomic.Uint64
				b.SetBytes(int64(len(answers[0])))
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						n := seq.Add(1)
						e := entryFor(n, answers)
						if prepared != nil {
							p := &prepared[n%uint64(len(answers))]
							e.Encoded, e.Encoding = p.Encoded, p.Encoding
						}
						w.Put(e)
					}
				})
				if err := w.Flush(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "answers/s")
				s := w.Stats()
				if s.Batches > 0 {
					meanBatch = max(1, int(s.Written/s.Batches))
					b.ReportMetric(float64(meanBatch), "answers/batch")
				}
				w.Stop()
			})
		}
		b.Run(name+"/impl=bare-insert", func(b *testing.B) {
			benchBareInsert(b, answers, meanBatch, compress)
		})
	}
}

// benchBareInsert inserts b.N answers as entryFor makes them into a database of the store's schema, in
// transactions of batch rows: what the writer's transactions cost without the writer.
func benchBareInsert(b *testing.B, answers [][]byte, batch int, compress bool) {
	path := filepath.Join(b.TempDir(), "cache.db")
	store := seededStore(b, path, answers, compress)
	// The bodies as the store keeps them: compressed with its dictionary, or as they are.
	bodies, encodings := make([][]byte, len(answers)), make([]int64, len(answers))
	for i, a := range answers {
		e := &db.Entry{Body: a}
		store.Prepare(e)
		bodies[i], encodings[i] = a, int64(e.Encoding)
		if e.Encoded != nil {
			bodies[i] = e.Encoded
		}
	}
	if err := store.Close(); err != nil {
		b.Fatal(err)
	}
	c, err := sqlite3.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Exec(db.WriterPragmas); err != nil {
		b.Fatal(err)
	}
	// The labels row of entryFor's descriptive columns, which the store's seed wrote.
	lab, _, err := c.Prepare(`SELECT id FROM labels WHERE kind = 'chat' AND namespace = '' AND model = 'fake-model' AND endpoint = 'fake'`)
	if err != nil || !lab.Step() {
		b.Fatalf("no labels row: %v", err)
	}
	label := lab.ColumnInt64(0)
	lab.Close()
	ins, _, err := c.Prepare(`INSERT INTO entries (key, label, version, created_at, expires_at, encoding, body)
	VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)`)
	if err != nil {
		b.Fatal(err)
	}
	defer ins.Close()
	exec := func(sql string) {
		if err := c.Exec(sql); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(answers[0])))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	n := uint64(0)
	for i := 0; i < b.N; i += batch {
		exec(`BEGIN IMMEDIATE`)
		for j := i; j < min(i+batch, b.N); j++ {
			n++
			e := entryFor(n, answers)
			k := n % uint64(len(answers))
			ins.BindBlob(1, e.Key[:])
			ins.BindInt64(2, label)
			ins.BindInt64(3, e.Version)
			ins.BindInt64(4, e.CreatedAt)
			ins.BindInt64(5, e.ExpiresAt)
			ins.BindInt64(6, encodings[k])
			ins.BindBlob(7, bodies[k])
			if err := ins.Exec(); err != nil {
				b.Fatal(err)
			}
		}
		exec(`COMMIT`)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "answers/s")
	b.ReportMetric(float64(batch), "answers/batch")
}
