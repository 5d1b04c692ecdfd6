package db

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"llmcache/db/codec"
)

var proseWords = [2][]string{
	strings.Fields(`the a cache answer proxy request model token stream store body key value entry writer reader
dictionary compress frame disk memory page index batch commit query table row column because while when
after before never always often quickly slowly carefully returns keeps holds sends reads writes checks`),
	strings.Fields(`le la une réponse serveur demande modèle jeton flux magasin corps clé valeur entrée écrivain
lecteur dictionnaire compresser trame disque mémoire page index lot valider requête table ligne colonne
parce que pendant quand après avant jamais toujours souvent vite lentement soigneusement rend garde`),
}

// answerOf is the i-th ~1.3 KB JSON answer of prose in one of two vocabularies (style 0 or 1): varied
// enough for a dictionary to be trained from, alike enough within a style for it to help.
func answerOf(i, style int) []byte {
	r := rand.New(rand.NewSource(int64(i)*2 + int64(style)))
	words := proseWords[style]
	var sb strings.Builder
	for sb.Len() < 1000 {
		sb.WriteString(words[r.Intn(len(words))])
		if r.Intn(12) == 0 {
			sb.WriteString(". ")
		} else {
			sb.WriteByte(' ')
		}
	}
	return fmt.Appendf(nil, "{\n  \"id\": \"chatcmpl-%x\",\n  \"object\": \"chat.completion\",\n  \"created\": %d,\n  \"choices\": [\n    {\n      \"index\": 0,\n      \"message\": {\n        \"role\": \"assistant\",\n        \"content\": %q\n      },\n      \"finish_reason\": \"stop\"\n    }\n  ]\n}\n",
		r.Int63(), 1790000000+i, sb.String())
}

func proseEntry(i, style int) *Entry {
	e := entryOf(i)
	e.Body = answerOf(i, style)
	return e
}

// putProse writes entries from..to-1 of style in one batch.
func putProse(t testing.TB, s *SQLite, from, to, style int) {
	t.Helper()
	b := &Batch{}
	for i := from; i < to; i++ {
		b.Puts = append(b.Puts, proseEntry(i, style))
	}
	mustWrite(t, s, b)
}

// encodings counts the entries on disk by encoding.
func encodings(t testing.TB, s *SQLite) map[int64]int64 {
	t.Helper()
	st, _, err := s.w.Prepare(`SELECT encoding, count(*) FROM entries GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := map[int64]int64{}
	for st.Step() {
		m[st.ColumnInt64(0)] = st.ColumnInt64(1)
	}
	return m
}

// checkAll reads entries 0..n-1 (style by styleOf) and compares every byte.
func checkAll(t testing.TB, s *SQLite, n int, styleOf func(i int) int) {
	t.Helper()
	r := mustReader(t, s)
	for i := range n {
		got, ok := mustGet(t, r, keyOf(i))
		if want := answerOf(i, styleOf(i)); !ok || !bytes.Equal(got.Body, want) {
			t.Fatalf("entry %d: ok=%v, %d bytes, want %d, equal %v", i, ok, len(got.Body), len(want), bytes.Equal(got.Body, want))
		}
	}
}

// TestBodiesWrittenBeforeAndAfterEachDictionaryStayReadable: entries written before any dictionary
// (identity), with dictionary 1, and after a retrain with dictionary 2 are all read back byte for byte, by
// the store that wrote them and after it is opened again; export gives every body plain, and an import of
// the export answers the same.
func TestBodiesWrittenBeforeAndAfterEachDictionaryStayReadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := Open(path, Options{TrainAfter: 1 << 40}) // trained only by hand here
	if err != nil {
		t.Fatal(err)
	}
	style := func(i int) int { return min(i/400, 1) }
	putProse(t, s, 0, 200, 0) // before any dictionary
	if err := s.TrainNow(); err != nil {
		t.Fatal(err)
	}
	putProse(t, s, 200, 400, 0) // dictionary 1
	putProse(t, s, 400, 700, 1) // another vocabulary: dictionary 1 fits it badly
	if err := s.TrainNow(); err != nil {
		t.Fatal(err)
	}
	putProse(t, s, 700, 800, 1) // dictionary 2
	st, err := s.Stats()
	if err != nil || st.Dictionaries != 2 || st.Dictionary != 2 {
		t.Fatalf("stats %+v, %v: want 2 dictionaries, the second current", st, err)
	}
	if got := encodings(t, s); got[0] != 200 || got[1] != 500 || got[2] != 100 {
		t.Fatalf("entries by encoding %v, want 200 identity, 500 with dictionary 1, 100 with 2", got)
	}
	checkAll(t, s, 800, style)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st, _ := s.Stats(); st.Dictionaries != 2 || st.Dictionary != 2 {
		t.Fatalf("after a restart: %d dictionaries, current %d", st.Dictionaries, st.Dictionary)
	}
	checkAll(t, s, 800, style)
	putProse(t, s, 800, 900, 1)
	if got := encodings(t, s); got[2] != 200 {
		t.Fatalf("after a restart new answers do not use the current dictionary: %v", got)
	}
	checkAll(t, s, 900, style)

	var exported []ExportedEntry
	if err := ExportFile(path, nil, func(e *ExportedEntry) error {
		c := *e
		c.Body = bytes.Clone(e.Body)
		exported = append(exported, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(exported) != 900 {
		t.Fatalf("exported %d entries", len(exported))
	}
	for i, e := range exported {
		if want := answerOf(i, style(i)); e.Encoding != 0 || !bytes.Equal(e.Body, want) || e.Key != fmt.Sprintf("%x", keyOf(i)) {
			t.Fatalf("exported entry %d: encoding %d, body equal %v", i, e.Encoding, bytes.Equal(e.Body, want))
		}
	}
	other := openTest(t)
	if err := other.Import(exported); err != nil {
		t.Fatal(err)
	}
	checkAll(t, other, 900, style)
}

// TestCorruptBodyIsAnErrorNeverWrongBytes: a compressed body damaged on disk, or naming a dictionary that
// does not exist, is an error of Get (the pipeline serves a miss, and the fresh answer replaces it),
// logged and counted; never other bytes. Its neighbours read as before.
func TestCorruptBodyIsAnErrorNeverWrongBytes(t *testing.T) {
	var logs syncBuffer
	s, err := Open(filepath.Join(t.TempDir(), "cache.db"), Options{Log: slog.New(slog.NewTextHandler(&logs, nil)), TrainAfter: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	putProse(t, s, 0, 200, 0)
	if err := s.TrainNow(); err != nil {
		t.Fatal(err)
	}
	putProse(t, s, 200, 210, 0)
	k1, k2, k3 := keyOf(201), keyOf(202), keyOf(203)
	for _, sql := range []string{
		// A byte in the middle of the frame changed, the frame cut short, another dictionary named.
		fmt.Sprintf(`UPDATE entries SET body = CAST(substr(body, 1, 100) || x'5a' || substr(body, 102) AS BLOB) WHERE key = x'%x'`, k1),
		fmt.Sprintf(`UPDATE entries SET body = substr(body, 1, length(body) - 10) WHERE key = x'%x'`, k2),
		fmt.Sprintf(`UPDATE entries SET encoding = 99 WHERE key = x'%x'`, k3),
	} {
		if err := s.execWriter(sql); err != nil {
			t.Fatal(err)
		}
	}
	r := mustReader(t, s)
	for _, k := range []Key{k1, k2, k3} {
		e := Entry{Body: make([]byte, 0, 4096)}
		ok, err := r.Get(&k, &e)
		if ok || err == nil || !errors.Is(err, codec.ErrCorrupt) && !errors.Is(err, codec.ErrUnknownDict) {
			t.Fatalf("corrupt entry %x: ok=%v err=%v", k[:4], ok, err)
		}
	}
	if st, _ := s.Stats(); st.CorruptBodies != 3 {
		t.Fatalf("CorruptBodies = %d, want 3", st.CorruptBodies)
	}
	if n := strings.Count(logs.String(), "cannot decode a stored answer"); n != 3 {
		t.Fatalf("%d log lines for 3 corrupt bodies:\n%s", n, logs.String())
	}
	if got, ok := mustGet(t, r, keyOf(200)); !ok || !bytes.Equal(got.Body, answerOf(200, 0)) {
		t.Fatal("a sound entry next to corrupt ones is not read back")
	}
	// The fresh answer replaces the corrupt entry.
	mustWrite(t, s, &Batch{Puts: []*Entry{proseEntry(201, 0)}})
	if got, ok := mustGet(t, r, k1); !ok || !bytes.Equal(got.Body, answerOf(201, 0)) {
		t.Fatal("the fresh answer did not replace the corrupt entry")
	}
}

// TestTrainedInTheBackgroundAfterEnoughAnswers: with TrainAfter answers stored, a dictionary is trained off
// the writer's path, written by a later batch, and used from then on; with compression off nothing is
// trained, and what is compressed on disk is still read.
func TestTrainedInTheBackgroundAfterEnoughAnswers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := Open(path, Options{TrainAfter: 100})
	if err != nil {
		t.Fatal(err)
	}
	putProse(t, s, 0, 120, 0)
	i := 120
	for deadline := time.Now().Add(time.Minute); ; i++ {
		if st, _ := s.Stats(); st.Dictionary == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no dictionary within a minute of enough answers")
		}
		putProse(t, s, i, i+1, 0) // each batch may be the one that writes the trained dictionary
		time.Sleep(10 * time.Millisecond)
	}
	putProse(t, s, i, i+50, 0)
	if got := encodings(t, s); got[1] < 50 {
		t.Fatalf("after training: entries by encoding %v", got)
	}
	checkAll(t, s, i+50, func(int) int { return 0 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{NoCompression: true, TrainAfter: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	putProse(t, s, i+50, i+60, 0)
	st, _, err := s.w.Prepare(fmt.Sprintf(`SELECT count(*) FROM entries WHERE encoding <> 0 AND created_at >= %d`, entryOf(i+50).CreatedAt))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := queryInt64(st)
	st.Close()
	if n != 0 {
		t.Fatalf("%d answers compressed with compression off", n)
	}
	checkAll(t, s, i+60, func(int) int { return 0 })
	if s.comp.training.Load() {
		t.Fatal("a training started with compression off")
	}
}

// TestPreparedBodiesAreWrittenAsPrepared: a body compressed by Prepare (in the goroutine that hands it to
// the writer) is stored as prepared, and read back whole.
func TestPreparedBodiesAreWrittenAsPrepared(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "cache.db"), Options{TrainAfter: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	putProse(t, s, 0, 100, 0)
	if err := s.TrainNow(); err != nil {
		t.Fatal(err)
	}
	e := proseEntry(100, 0)
	s.Prepare(e)
	if e.Encoding != 1 || len(e.Encoded) == 0 || len(e.Encoded) >= len(e.Body)/2 {
		t.Fatalf("prepared: encoding %d, %d -> %d bytes", e.Encoding, len(e.Body), len(e.Encoded))
	}
	mustWrite(t, s, &Batch{Puts: []*Entry{e}})
	if n := queryInt(t, s, fmt.Sprintf(`SELECT length(body) FROM entries WHERE key = x'%x'`, e.Key)); n != int64(len(e.Encoded)) {
		t.Fatalf("stored %d bytes, prepared %d", n, len(e.Encoded))
	}
	checkAll(t, s, 101, func(int) int { return 0 })
}

// syncBuffer is a bytes.Buffer safe for the log handler's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
