package bench

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"llmcache/actors"
	"llmcache/bench/fakeupstream"
	"llmcache/db"
)

// BenchmarkStorage stores distinct answers of natural-language text in OpenAI's indented JSON (see
// fakeupstream.Options.Text) through the writer actor, as the proxy does: the first ones as they are, a
// dictionary trained in the background after a thousand, then compressed. It reports the bytes on disk
// per answer, everything counted (key, metadata, indexes, free pages, dictionaries; the file after a
// checkpoint), beside the answers' own size. The target is at most 0.46x for ~1.3 KB answers (a million
// in 0.6 GB). 100,000 answers by default (LLMCACHE_STORAGE_ANSWERS); run it with -benchtime 1x.
func BenchmarkStorage(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("LLMCACHE_STORAGE_ANSWERS")); err == nil && v > 0 {
		n = v
	}
	text, err := fakeupstream.GoDocText()
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []struct {
		name    string
		content int // bytes of text in each answer
	}{{"answer=1.3KB", answerBytes}, {"answer=2.6KB", 1800}} {
		answers, err := fakeupstream.ChatAnswers(text, n, size.content)
		if err != nil {
			b.Fatal(err)
		}
		var raw int64
		for _, a := range answers {
			raw += int64(len(a))
		}
		for _, compress := range []bool{true, false} {
			b.Run(fmt.Sprintf("%s/compress=%v", size.name, compress), func(b *testing.B) {
				st := storeAnswers(b, answers, compress)
				perAnswer := float64(st.FileBytes) / float64(n)
				b.ReportMetric(float64(raw)/float64(n), "answer_bytes")
				b.ReportMetric(perAnswer, "disk_bytes/answer")
				b.ReportMetric(perAnswer/(float64(raw)/float64(n)), "ratio")
				b.ReportMetric(perAnswer*1e6/1e9, "GB/million")
				b.ReportMetric(float64(st.FreePages), "free_pages")
			})
		}
	}
}

// storeAnswers stores answers (keys of their own) through a writer from two goroutines, checkpoints, and
// returns the store's figures.
func storeAnswers(b *testing.B, answers [][]byte, compress bool) db.Stats {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := db.Open(filepath.Join(b.TempDir(), "cache.db"), db.Options{NoCompression: !compress, Log: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	w := actors.NewWriter(store, actors.DefaultWriterConfig(), quiet)
	defer w.Stop()
	put := func(i int) {
		e := entryFor(uint64(i), answers)
		e.Body = answers[i]
		w.Put(e)
	}
	// A cache's first answers are stored as they are until a dictionary has been trained from them, which
	// takes seconds in the background: at the rate answers come to a cache that is minutes, not the whole
	// of this run. So the first ones are stored, then the rest once the dictionary is in use.
	first := int(db.DefaultTrainAfter) + 1
	for i := range first {
		put(i)
	}
	if compress {
		for i := first; ; i++ {
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			if st, err := store.Stats(); err != nil || st.Dictionary != 0 {
				first = i
				break
			}
			if i == len(answers)/2 {
				b.Fatal("no dictionary after half the answers")
			}
			put(i) // each write may be the one that writes the trained dictionary
			time.Sleep(20 * time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Go(func() {
			for i := first + g; i < len(answers); i += 2 {
				put(i)
			}
		})
	}
	wg.Wait()
	if _, err := w.Do(func(s db.Store) (int64, error) { return 0, s.Checkpoint() }); err != nil {
		b.Fatal(err)
	}
	st, err := store.Stats()
	if err != nil {
		b.Fatal(err)
	}
	if dir := os.Getenv("LLMCACHE_STORAGE_KEEP"); dir != "" { // a copy to look into (sqlite3_analyzer)
		data, err := os.ReadFile(store.Path())
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, strings.NewReplacer("/", "_", "=", "-").Replace(b.Name())+".db"), data, 0o644)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if st.Entries != int64(len(answers)) || st.WALBytes != 0 {
		b.Fatalf("%d entries, WAL %d bytes after a checkpoint", st.Entries, st.WALBytes)
	}
	if compress && st.Dictionaries == 0 {
		b.Fatal("no dictionary was trained")
	}
	return st
}
