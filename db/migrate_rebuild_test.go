package db

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ncruces/go-sqlite3"
)

// entriesSchema lists the triggers and indexes on entries (name and SQL), as sqlite_schema holds them.
func entriesSchema(t *testing.T, c *sqlite3.Conn) []string {
	t.Helper()
	st, _, err := c.Prepare(`SELECT type, name, ifnull(sql, '') FROM sqlite_schema WHERE tbl_name = 'entries' AND type IN ('trigger', 'index') ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out []string
	for st.Step() {
		out = append(out, st.ColumnText(0)+" "+st.ColumnText(1)+": "+st.ColumnText(2))
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrationFromSchema4KeepsResponseIDsAndTriggers: a database at schema 4 (the Responses API's id index
// and the Batch API's tables, before compression) is rebuilt by the compression step, the last one. Its
// Responses entry is still found by its id, in its namespace; every trigger schema 4 had on entries is there
// again, so deleting an entry still deletes its response_ids and hits rows; the batch records are kept; and
// the triggers and indexes on entries are those of a database created at the latest schema.
func TestMigrationFromSchema4KeepsResponseIDsAndTriggers(t *testing.T) {
	if compressionSchema != 5 || LatestSchemaVersion() != 5 {
		t.Fatalf("compression is schema %d of %d; this test builds a schema 4 database", compressionSchema, LatestSchemaVersion())
	}
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(`PRAGMA journal_mode = WAL; ` + sqlCreateMeta + `; ` + migrations[0] + migrations[1] + migrations[2] + migrations[3] +
		`; INSERT INTO meta (key, value) VALUES ('schema_version', 4)`); err != nil {
		t.Fatal(err)
	}
	resp := responseEntry(1, "resp_x", "ns")
	resp.HitCount, resp.LastHitAt = 3, 30
	other := entryOf(2)
	for _, e := range []*Entry{resp, other} {
		err := c.Exec(fmt.Sprintf(`INSERT INTO entries (key, kind, namespace, model, endpoint, upstream_model, content_type, version, created_at, expires_at, body)
VALUES (x'%x', '%s', '%s', '%s', '%s', '%s', '%s', %d, %d, %d, x'%x')`, e.Key, e.Kind, e.Namespace, e.Model, e.Endpoint, e.UpstreamModel,
			e.ContentType, e.Version, e.CreatedAt, e.ExpiresAt, e.Body))
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Exec(fmt.Sprintf(`INSERT INTO response_ids (key, id) VALUES (x'%x', 'resp_x');
INSERT INTO hits (key, hit_count, last_hit_at) VALUES (x'%x', 3, 30);
INSERT INTO batch_files (id, owner, filename, purpose, bytes, lines, created_at, name) VALUES ('file-1', '', 'in.jsonl', 'batch', 10, 1, 1, 'file-1')`,
		resp.Key, resp.Key)); err != nil {
		t.Fatal(err)
	}
	before := entriesSchema(t, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v := queryInt(t, s, `SELECT value FROM meta WHERE key = 'schema_version'`); v != 5 {
		t.Fatalf("schema_version = %d after the migration, want 5", v)
	}
	r := mustReader(t, s)
	got, ok := mustGetResponse(t, r, "resp_x", "ns")
	if !ok || got.Key != resp.Key || string(got.Body) != string(resp.Body) || got.Kind != "responses" || got.HitCount != 3 || got.LastHitAt != 30 {
		t.Fatalf("GetResponse(resp_x) after the migration: ok=%v %+v", ok, got)
	}
	if _, ok := mustGetResponse(t, r, "resp_x", ""); ok {
		t.Fatal("resp_x found in another namespace after the migration")
	}
	if n := queryInt(t, s, `SELECT count(*) FROM batch_files WHERE id = 'file-1'`); n != 1 {
		t.Fatalf("%d batch file records after the migration, want 1", n)
	}

	after := entriesSchema(t, s.w)
	for _, b := range before {
		var typ, name string
		fmt.Sscanf(b, "%s %s", &typ, &name)
		if typ != "trigger" {
			continue // the indexes are replaced (labels), checked against a fresh database below
		}
		if !slices.ContainsFunc(after, func(a string) bool { return a == b }) {
			t.Errorf("schema 4's %s is not on entries after the migration:\nbefore %q\nafter  %q", name[:len(name)-1], before, after)
		}
	}
	fresh := openTest(t)
	if want := entriesSchema(t, fresh.w); !slices.Equal(after, want) {
		t.Errorf("triggers and indexes on entries after the migration:\n%q\nin a new database:\n%q", after, want)
	}

	if n, err := s.Delete(Filter{Keys: []Key{resp.Key}}); err != nil || n != 1 {
		t.Fatalf("delete resp_x's entry: %d, %v", n, err)
	}
	if n := queryInt(t, s, `SELECT count(*) FROM response_ids`); n != 0 {
		t.Fatalf("%d response_ids rows after its entry was deleted, want 0", n)
	}
	if n := queryInt(t, s, `SELECT count(*) FROM hits`); n != 0 {
		t.Fatalf("%d hits rows after its entry was deleted, want 0", n)
	}
	if _, ok := mustGetResponse(t, r, "resp_x", "ns"); ok {
		t.Fatal("resp_x still found after its entry was deleted")
	}

	// The migrated database takes new Responses answers, and one that replaces another moves the id.
	mustWrite(t, s, &Batch{Puts: []*Entry{responseEntry(3, "resp_y", "")}})
	mustWrite(t, s, &Batch{Puts: []*Entry{responseEntry(3, "resp_z", "")}})
	if _, ok := mustGetResponse(t, r, "resp_y", ""); ok {
		t.Fatal("resp_y found after an answer with another id replaced its entry")
	}
	if e, ok := mustGetResponse(t, r, "resp_z", ""); !ok || e.Key != keyOf(3) {
		t.Fatalf("resp_z after the migration: ok=%v key=%x", ok, e.Key)
	}
}

// TestExportAndBreakdownOfASchema4File: a file at schema 4 (descriptive columns still in entries, no labels),
// which an export or `llmcache stats` never migrates, exports its entries with their response ids, by
// namespace too, and counts them by kind and namespace.
func TestExportAndBreakdownOfASchema4File(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(`PRAGMA journal_mode = WAL; ` + sqlCreateMeta + `; ` + migrations[0] + migrations[1] + migrations[2] + migrations[3] +
		`; INSERT INTO meta (key, value) VALUES ('schema_version', 4);
		INSERT INTO entries (key, kind, namespace, model, endpoint, upstream_model, content_type, created_at, body)
		VALUES (zeroblob(32), 'responses', 'ns', 'm', 'e', 'm', 'application/json', 1, CAST('{"id":"resp_x"}' AS BLOB)),
			(x'0100000000000000000000000000000000000000000000000000000000000000', 'chat', '', 'm', 'e', 'm', 'application/json', 2, CAST('{}' AS BLOB));
		INSERT INTO response_ids (key, id) VALUES (zeroblob(32), 'resp_x')`); err != nil {
		t.Fatal(err)
	}
	c.Close()
	var got []string
	ns := "ns"
	for _, namespace := range []*string{nil, &ns} {
		if err := ExportFile(path, namespace, func(e *ExportedEntry) error {
			got = append(got, e.Kind+"/"+e.Namespace+"/"+e.ResponseID+"/"+string(e.Body))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{`responses/ns/resp_x/{"id":"resp_x"}`, `chat///{}`, `responses/ns/resp_x/{"id":"resp_x"}`}; !slices.Equal(got, want) {
		t.Fatalf("export of a schema 4 file (all, then namespace ns):\n%q\nwant\n%q", got, want)
	}
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	kinds, namespaces, err := ro.Breakdown()
	if err != nil || len(kinds) != 2 || kinds[1].Name != "responses" || len(namespaces) != 2 || namespaces[1].Name != "ns" || namespaces[1].Entries != 1 {
		t.Fatalf("breakdown of a schema 4 file: %+v %+v %v", kinds, namespaces, err)
	}
	if v, err := pragmaText(mustConn(t, path), `SELECT value FROM meta WHERE key = 'schema_version'`); err != nil || v != "4" {
		t.Fatalf("schema_version after the export = %q, %v; want 4 (an export never migrates)", v, err)
	}
}
