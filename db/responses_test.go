package db

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/ncruces/go-sqlite3"
)

// responseEntry is entry i as an answer of the Responses API holding response id.
func responseEntry(i int, id, namespace string) *Entry {
	e := entryOf(i)
	e.Kind, e.Namespace, e.ResponseID = "responses", namespace, id
	e.Body = []byte(`{"id":"` + id + `","object":"response","output":[]}`)
	return e
}

func mustGetResponse(t *testing.T, r Reader, id, namespace string) (*Entry, bool) {
	t.Helper()
	var e Entry
	ok, err := r.GetResponse(id, namespace, &e)
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		e.HitCount, e.LastHitAt = hitsOf(t, r.(*sqliteReader), e.Key) // as mustGet
	}
	return &e, ok
}

// TestResponseIDIndex: an entry is found by the id of the response it holds, in its own namespace only; an
// answer that replaces it takes its index row (the old id finds nothing); deleting the entry, by key or by
// filter, deletes its row; a large body is found too.
func TestResponseIDIndex(t *testing.T) {
	s := openTest(t)
	r := mustReader(t, s)
	large := responseEntry(3, "resp_large", "")
	large.Body = append(bytes.Repeat([]byte(" "), largeBody+10), large.Body...)
	mustWrite(t, s, &Batch{Puts: []*Entry{responseEntry(1, "resp_a", ""), responseEntry(2, "resp_b", "team"), large, entryOf(4)}})

	if e, ok := mustGetResponse(t, r, "resp_a", ""); !ok || e.Key != keyOf(1) || string(e.Body) != string(responseEntry(1, "resp_a", "").Body) || e.Kind != "responses" {
		t.Fatalf("resp_a: ok=%v key=%x body=%s", ok, e.Key, e.Body)
	}
	if _, ok := mustGetResponse(t, r, "resp_b", ""); ok {
		t.Fatal("resp_b was found in the default namespace; it belongs to team")
	}
	if e, ok := mustGetResponse(t, r, "resp_b", "team"); !ok || e.Key != keyOf(2) {
		t.Fatalf("resp_b in team: ok=%v", ok)
	}
	if e, ok := mustGetResponse(t, r, "resp_large", ""); !ok || !bytes.Equal(e.Body, large.Body) {
		t.Fatalf("large: ok=%v, %d bytes", ok, len(e.Body))
	}
	if _, ok := mustGetResponse(t, r, "nope", ""); ok {
		t.Fatal("an unknown id was found")
	}

	// A refreshed answer under the same key holds another response.
	mustWrite(t, s, &Batch{Puts: []*Entry{responseEntry(1, "resp_a2", "")}})
	if _, ok := mustGetResponse(t, r, "resp_a", ""); ok {
		t.Fatal("the replaced response's id still finds the entry")
	}
	if e, ok := mustGetResponse(t, r, "resp_a2", ""); !ok || e.Key != keyOf(1) {
		t.Fatal("the new id does not find the entry")
	}
	if n := queryInt(t, s, `SELECT count(*) FROM response_ids`); n != 3 {
		t.Fatalf("%d index rows, want 3", n)
	}

	if _, err := s.Delete(Filter{Keys: []Key{keyOf(1)}}); err != nil {
		t.Fatal(err)
	}
	ns := "team"
	if _, err := s.Delete(Filter{Namespace: &ns}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"resp_a2", "resp_b"} {
		if _, ok := mustGetResponse(t, r, id, "team"); ok {
			t.Fatalf("%s found after its entry was deleted", id)
		}
	}
	if n := queryInt(t, s, `SELECT count(*) FROM response_ids`); n != 1 {
		t.Fatalf("%d index rows after the deletes, want 1 (resp_large)", n)
	}
}

// TestResponseIDsExportImport: an export carries each entry's response id, and an import into an empty
// database indexes it again.
func TestResponseIDsExportImport(t *testing.T) {
	src := openTest(t)
	mustWrite(t, src, &Batch{Puts: []*Entry{responseEntry(1, "resp_x", "ns"), entryOf(2)}})
	out := exportAll(t, src, nil)
	if len(out) != 2 || out[0].ResponseID != "resp_x" || out[1].ResponseID != "" {
		t.Fatalf("exported %+v", out)
	}
	dst := openTest(t)
	if err := dst.Import(out); err != nil {
		t.Fatal(err)
	}
	if e, ok := mustGetResponse(t, mustReader(t, dst), "resp_x", "ns"); !ok || e.Key != keyOf(1) {
		t.Fatal("the imported response is not found by its id")
	}
}

// TestExportSchema2: a file at schema 2 (not yet opened by this version, so not migrated) exports, with no
// response ids, and nothing is written to it.
func TestExportSchema2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(`PRAGMA journal_mode = WAL; ` + sqlCreateMeta + `;` + migrations[0] + migrations[1] +
		`; INSERT INTO meta (key, value) VALUES ('schema_version', 2);
		INSERT INTO entries (key, kind, namespace, model, endpoint, upstream_model, content_type, created_at, body)
		VALUES (zeroblob(32), 'chat', '', 'm', 'e', 'm', 'application/json', 1, CAST('{}' AS BLOB))`); err != nil {
		t.Fatal(err)
	}
	c.Close()
	n := 0
	if err := ExportFile(path, nil, func(e *ExportedEntry) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("export of a schema 2 file: %d entries, %v", n, err)
	}
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	v, err := pragmaText(mustConn(t, path), `SELECT value FROM meta WHERE key = 'schema_version'`)
	if err != nil || v != "2" {
		t.Fatalf("schema_version after the export = %q, %v; want 2 (an export never migrates)", v, err)
	}
}

func mustConn(t *testing.T, path string) *sqlite3.Conn {
	t.Helper()
	c, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
