package actors

import (
	"bytes"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"llmcache/db"
)

var prose = strings.Fields(`the answer is stored once and served many times from memory or from the disk while the writer
keeps every batch in one transaction because a cache that loses answers costs money and time when an evaluation
replays its prompts after a restart so the proxy checks each body before it keeps it and compresses it with a
dictionary trained from answers already stored which makes small bodies much smaller than they would be alone`)

// proseAnswer is the i-th ~1.3 KB answer of varied prose in OpenAI's indented JSON: a dictionary trained on
// such answers compresses them to well under half.
func proseAnswer(i int) []byte {
	r := rand.New(rand.NewSource(int64(i)))
	var sb strings.Builder
	for sb.Len() < 1100 {
		sb.WriteString(prose[r.Intn(len(prose))])
		sb.WriteByte(' ')
	}
	return fmt.Appendf(nil, "{\n  \"id\": \"chatcmpl-%x\",\n  \"object\": \"chat.completion\",\n  \"choices\": [\n    {\n      \"index\": 0,\n      \"message\": {\n        \"role\": \"assistant\",\n        \"content\": %q\n      },\n      \"finish_reason\": \"stop\"\n    }\n  ]\n}\n", r.Int63(), sb.String())
}

func proseEntry(i int) *db.Entry {
	e := entry(i)
	e.Body = proseAnswer(i)
	return e
}

// TestWriterCompressesWhatItIsHanded: once the store has a dictionary, answers handed to Put from many
// goroutines at once are compressed (by the writer's preparers, not the callers) and every one reads back
// byte for byte; answers queued before the dictionary stay as they are and readable.
func TestWriterCompressesWhatItIsHanded(t *testing.T) {
	s := openStore(t)
	w := NewWriter(s, WriterConfig{BatchSize: 7, FlushInterval: time.Hour}, quiet())
	defer w.Stop()
	const before, after, putters = 100, 600, 6
	for i := range before {
		w.Put(proseEntry(i))
	}
	if _, err := w.Do(func(db.Store) (int64, error) { return 0, s.TrainNow() }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range putters {
		wg.Go(func() {
			for i := before + g; i < before+after; i += putters {
				w.Put(proseEntry(i))
			}
		})
	}
	wg.Wait()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}

	r, err := s.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got db.Entry
	for i := range before + after {
		k := entry(i).Key
		if ok, err := r.Get(&k, &got); err != nil || !ok || !bytes.Equal(got.Body, proseAnswer(i)) {
			t.Fatalf("answer %d: found %v, err %v, same bytes %v", i, ok, err, bytes.Equal(got.Body, proseAnswer(i)))
		}
	}

	conn, err := sqlite3.Open("file:" + s.Path() + "?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, _, err := conn.Prepare(`SELECT encoding = 0, count(*), sum(length(body)) FROM entries GROUP BY 1 ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	counts := map[bool][2]int64{}
	for st.Step() {
		counts[st.ColumnBool(0)] = [2]int64{st.ColumnInt64(1), st.ColumnInt64(2)}
	}
	plain, compressed := counts[true], counts[false]
	if plain[0] != before || compressed[0] != after {
		t.Fatalf("%d answers stored as they are and %d compressed, want %d and %d", plain[0], compressed[0], before, after)
	}
	if perPlain, perCompressed := plain[1]/plain[0], compressed[1]/compressed[0]; perCompressed*2 > perPlain {
		t.Fatalf("compressed answers take %d bytes each against %d as they are", perCompressed, perPlain)
	}
}
