package db

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// exportAll collects every entry of s (of *ns when set), copying bodies (Export reuses its buffer).
func exportAll(t *testing.T, s *SQLite, ns *string) []ExportedEntry {
	t.Helper()
	var out []ExportedEntry
	if err := s.Export(ns, func(e *ExportedEntry) error {
		c := *e
		c.Body = bytes.Clone(e.Body)
		out = append(out, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExportImportRoundtrip: every column survives export, JSON and import into an empty database, binary
// and empty bodies included, hit counts included.
func TestExportImportRoundtrip(t *testing.T) {
	src := openTest(t)
	var b Batch
	for i := range 5 {
		e := entryOf(i)
		e.HitCount, e.LastHitAt, e.ExpiresAt, e.Version = int64(i*3), 1_700_000_100_000+int64(i), int64(i)*7, int64(i)
		if i == 1 {
			e.Namespace, e.Kind, e.ContentType = "team-a", "embedding", "application/octet-stream"
			var vec [16]byte
			for j := range 4 {
				bits := math.Float32bits(float32(j) - 1.5)
				vec[4*j], vec[4*j+1], vec[4*j+2], vec[4*j+3] = byte(bits), byte(bits>>8), byte(bits>>16), byte(bits>>24)
			}
			e.Body = append(vec[:], 0, 0xff, '\n', '"')
		}
		if i == 2 {
			e.Body = nil
		}
		b.Puts = append(b.Puts, e)
	}
	mustWrite(t, src, &b)
	want := exportAll(t, src, nil)
	if len(want) != 5 {
		t.Fatalf("exported %d entries, want 5", len(want))
	}
	if want[2].Body == nil || len(want[2].Body) != 0 {
		t.Errorf("empty body exported as %#v, want a present empty body", want[2].Body)
	}

	// Through JSON, as the command line does.
	var lines []ExportedEntry
	for _, e := range want {
		j, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var back ExportedEntry
		if err := json.Unmarshal(j, &back); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, back)
	}
	dst := openTest(t)
	if err := dst.Import(lines); err != nil {
		t.Fatal(err)
	}
	if got := exportAll(t, dst, nil); !reflect.DeepEqual(got, want) {
		t.Errorf("imported rows differ:\n got  %+v\n want %+v", got, want)
	}
	// Importing again is an upsert that replaces every column, hit counts included.
	lines[0].HitCount, lines[0].Body = 99, []byte("new")
	if err := dst.Import(lines[:1]); err != nil {
		t.Fatal(err)
	}
	// The replaced entry is a new row: it comes last in the export's (rowid) order.
	got := exportAll(t, dst, nil)
	if len(got) != 5 || got[4].Key != lines[0].Key || got[4].HitCount != 99 || string(got[4].Body) != "new" {
		t.Errorf("re-import did not replace the row: %+v", got)
	}
	// And the pipeline's reader sees the imported row.
	r := mustReader(t, dst)
	k := keyOf(1)
	e, ok := mustGet(t, r, k)
	if !ok || !bytes.Equal(e.Body, want[1].Body) || e.Namespace != "team-a" || e.HitCount != 3 {
		t.Errorf("Get after import: ok=%v %+v", ok, e)
	}

	ns := "team-a"
	if got := exportAll(t, src, &ns); len(got) != 1 || got[0].Namespace != "team-a" {
		t.Errorf("export of namespace team-a: %+v", got)
	}
	empty := ""
	if got := exportAll(t, src, &empty); len(got) != 0 {
		t.Errorf("export of namespace \"\": %d entries, want 0", len(got))
	}
}

// TestImportRefusesBadEntriesAtomically: one bad entry and nothing of the call is written.
func TestImportRefusesBadEntriesAtomically(t *testing.T) {
	s := openTest(t)
	good := ExportedEntry{Key: hex.EncodeToString(make([]byte, 32)), Kind: "chat", Body: []byte("x")}
	for name, bad := range map[string]ExportedEntry{
		"short key":        {Key: "abcd", Body: []byte("x")},
		"non-hex key":      {Key: strings.Repeat("zz", 32), Body: []byte("x")},
		"no body":          {Key: strings.Repeat("ab", 32)},
		"unknown encoding": {Key: strings.Repeat("ab", 32), Body: []byte("x"), Encoding: 7},
	} {
		err := s.Import([]ExportedEntry{good, bad})
		if err == nil || !strings.Contains(err.Error(), "entry 1") {
			t.Errorf("%s: err = %v, want one naming entry 1", name, err)
		}
	}
	if n := queryInt(t, s, `SELECT count(*) FROM entries`); n != 0 {
		t.Errorf("%d rows written by refused imports", n)
	}
}

// TestExportFileReadOnly: ExportFile reads beside an open writer, never creates a file, and stops on the
// callback's error, returning it unwrapped.
func TestExportFileReadOnly(t *testing.T) {
	s := openTest(t)
	mustWrite(t, s, &Batch{Puts: []*Entry{entryOf(1), entryOf(2)}})
	n := 0
	stop := errors.New("stop")
	err := ExportFile(s.Path(), nil, func(*ExportedEntry) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("ExportFile stopped with %v after %d entries, want the callback's error after 1", err, n)
	}
	missing := filepath.Join(t.TempDir(), "missing.db")
	if err := ExportFile(missing, nil, func(*ExportedEntry) error { return nil }); err == nil {
		t.Error("ExportFile of a missing file: no error")
	}
	ro, err := OpenReadOnly(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if st, err := ro.Stats(); err != nil || st.Entries != 2 {
		t.Errorf("read-only Stats = %+v, %v", st, err)
	}
	if err := ro.Import(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Import on a read-only store: %v, want ErrClosed", err)
	}
	if got := exportAll(t, ro, nil); len(got) != 2 {
		t.Errorf("read-only Export: %d entries, want 2", len(got))
	}
	if _, err := OpenReadOnly(missing); err == nil {
		t.Error("OpenReadOnly of a missing file: no error")
	}
	kinds, namespaces, err := ro.Breakdown()
	if err != nil {
		t.Fatal(err)
	}
	if len(kinds) != 1 || kinds[0].Name != "chat" || kinds[0].Entries != 2 || kinds[0].BodyBytes <= 0 ||
		len(namespaces) != 1 || namespaces[0].Name != "ns" {
		t.Errorf("Breakdown = %+v, %+v", kinds, namespaces)
	}
}

// TestVacuumShrinksFile: after deleting most rows, Vacuum and a checkpoint give the space back.
func TestVacuumShrinksFile(t *testing.T) {
	s := openTest(t)
	var b Batch
	for i := range 200 {
		e := entryOf(i)
		e.Body = bodyOf(i, 8<<10)
		b.Puts = append(b.Puts, e)
	}
	mustWrite(t, s, &b)
	if _, err := s.Delete(Filter{All: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	before, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Vacuum(); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	after, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if after.FileBytes >= before.FileBytes || after.FreePages != 0 {
		t.Errorf("vacuum: file %d -> %d bytes, %d free pages after", before.FileBytes, after.FileBytes, after.FreePages)
	}
}
