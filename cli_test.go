package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"llmcache/db"
)

// cli runs a subcommand in-process and returns its exit code, stdout and stderr.
func cli(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runCommand(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// dumpDB returns every row of the database at path, every column, sorted by key.
func dumpDB(t *testing.T, path string) map[string]db.ExportedEntry {
	t.Helper()
	out := map[string]db.ExportedEntry{}
	if err := db.ExportFile(path, nil, func(e *db.ExportedEntry) error {
		c := *e
		c.Body = bytes.Clone(e.Body)
		out[c.Key] = c
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCLIExportImportRoundtrip: a cache exported while its proxy runs and imported into an empty file has
// identical rows, and a proxy on the imported file answers the same request as a HIT with the same bytes
// and no upstream call. Export -namespace exports that namespace only; stats counts the entries.
func TestCLIExportImportRoundtrip(t *testing.T) {
	p := newTestProxy(t, nil)
	bodies := map[string][]byte{}
	for _, c := range []struct{ ns, content string }{{"", "one"}, {"", "two"}, {"team-a", "three"}} {
		r, b := p.Post("/v1/chat/completions", chatBody(c.content), "X-Cache-Namespace", c.ns)
		expectCache(t, c.content, r, b, 200, "MISS")
		bodies[c.ns+"/"+c.content] = b
	}
	r, b := p.Post("/v1/embeddings", `{"model":"fake-embed","input":["a","b"],"encoding_format":"base64"}`)
	if r.StatusCode != 200 {
		t.Fatalf("embeddings: %d %s", r.StatusCode, b)
	}
	r, b = p.Post("/v1/chat/completions", chatBody("one"))
	expectCache(t, "hit before export", r, b, 200, "HIT")
	d := openCacheDB(t, p.DBPath)
	waitFor(t, "4 rows on disk", func() bool { return d.count() >= 4 })
	rows := d.count()

	dir := t.TempDir()
	all := filepath.Join(dir, "all.jsonl")
	// While the proxy runs: a read-only export beside the proxy's writer.
	code, _, stderr := cli(t, nil, "export", "-db", p.DBPath, "-o", all)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "exported "+itoa(rows)+" entries") {
		t.Errorf("export stderr %q, want the count %d", stderr, rows)
	}
	p.Stop() // the last hit counts are flushed now; compare the files at rest
	code, _, stderr = cli(t, nil, "export", "-db", p.DBPath, "-o", all)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}

	imported := filepath.Join(dir, "sub", "imported.db")
	// The file after the flags, as people type it, and the path from DATABASE_URL.
	code, stdout, stderr := cli(t, map[string]string{"DATABASE_URL": "sqlite://" + imported}, "import", all)
	if code != 0 {
		t.Fatalf("import: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "imported "+itoa(rows)+" entries") {
		t.Errorf("import stdout %q, want the count %d", stdout, rows)
	}
	want, got := dumpDB(t, p.DBPath), dumpDB(t, imported)
	if len(want) != rows || !reflect.DeepEqual(got, want) {
		t.Fatalf("imported rows differ from the exported ones:\n got  %+v\n want %+v", got, want)
	}

	// A proxy on the imported file: the same request is a HIT with the same bytes, and upstream is idle.
	q := newTestProxy(t, func(c *fileConfig) { c.DatabaseURL = imported })
	for key, body := range bodies {
		ns, content, _ := strings.Cut(key, "/")
		r, b := q.Post("/v1/chat/completions", chatBody(content), "X-Cache-Namespace", ns)
		expectCache(t, "imported "+key, r, b, 200, "HIT")
		if !bytes.Equal(b, body) {
			t.Errorf("imported %s: body differs:\n got  %s\n want %s", key, b, body)
		}
	}
	if n := q.Fake.Calls(); n != 0 {
		t.Errorf("upstream calls on the imported cache = %d, want 0", n)
	}
	q.Stop()

	// -namespace exports that namespace only; -o - writes to stdout.
	code, stdout, stderr = cli(t, nil, "export", "-db", p.DBPath, "-namespace", "team-a", "-o", "-")
	if code != 0 {
		t.Fatalf("export -namespace: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("export -namespace team-a: %d lines, want 1:\n%s", len(lines), stdout)
	}
	var e db.ExportedEntry
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil || e.Namespace != "team-a" || e.Kind != "chat" {
		t.Errorf("export -namespace team-a: %v %+v", err, e)
	}

	code, stdout, stderr = cli(t, nil, "stats", "-db", imported)
	if code != 0 {
		t.Fatalf("stats: exit %d: %s", code, stderr)
	}
	for _, s := range []string{"entries:     " + itoa(rows) + "\n", `"team-a"`, `"embedding"`, "file bytes:", "wal bytes:", "free pages:"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("stats output lacks %q:\n%s", s, stdout)
		}
	}
	want = dumpDB(t, imported) // the hits above counted on the imported file
	code, stdout, stderr = cli(t, nil, "vacuum", "-db", imported)
	if code != 0 || !strings.Contains(stdout, "before: file ") || !strings.Contains(stdout, "after:  file ") {
		t.Errorf("vacuum: exit %d\n%s%s", code, stdout, stderr)
	}
	if got := dumpDB(t, imported); !reflect.DeepEqual(got, want) {
		t.Error("rows changed by vacuum")
	}
}

// TestCLIImportBadLine: a malformed line stops the import with its line number, and nothing of its batch
// is written.
func TestCLIImportBadLine(t *testing.T) {
	dir := t.TempDir()
	good := func(b byte) string {
		e := db.ExportedEntry{Key: strings.Repeat(string([]byte{b}), 64), Kind: "chat", Body: []byte("{}")}
		j, _ := json.Marshal(e)
		return string(j)
	}
	for _, c := range []struct{ name, bad, why string }{
		{"not json", `{"key":`, "unexpected"},
		{"short key", `{"key":"abc","body_b64":""}`, "64 hex digits"},
		{"unknown field", `{"key":"` + strings.Repeat("c", 64) + `","body_b64":"","colour":"red"}`, "colour"},
		{"bad base64", `{"key":"` + strings.Repeat("c", 64) + `","body_b64":"!!"}`, "base64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := filepath.Join(dir, "in.jsonl")
			if err := os.WriteFile(in, []byte(good('a')+"\n\n"+good('b')+"\n"+c.bad+"\n"+good('d')+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, c.name+".db")
			code, _, stderr := cli(t, nil, "import", "-db", path, in)
			if code != 1 || !strings.Contains(stderr, "line 4") || !strings.Contains(stderr, c.why) {
				t.Fatalf("import: exit %d, stderr %q; want 1 and a message naming line 4 and %q", code, stderr, c.why)
			}
			if n := len(dumpDB(t, path)); n != 0 {
				t.Errorf("%d rows written by a refused batch", n)
			}
		})
	}
}

// TestCLIUsage: an unknown subcommand is a usage error; without a subcommand the proxy's flags apply.
func TestCLIUsage(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"frobnicate"}, func(string) string { return "" }, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), `unknown command "frobnicate"`) || !strings.Contains(stderr.String(), "usage:") {
		t.Errorf("unknown command: exit %d, stderr %q", code, stderr.String())
	}
	if isSubcommand([]string{"-config", "x.toml"}) || isSubcommand(nil) || isSubcommand([]string{""}) || !isSubcommand([]string{"stats"}) {
		t.Error("isSubcommand misreads its args")
	}
	missing := filepath.Join(t.TempDir(), "missing.db")
	if code, _, stderr := cli(t, nil, "stats", "-db", missing); code != 1 || !strings.Contains(stderr, "missing.db") {
		t.Errorf("stats of a missing file: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("stats created the missing database")
	}
	if code, _, _ := cli(t, nil, "import", "-db", missing); code != 2 {
		t.Errorf("import without a file: exit %d, want 2", code)
	}
	if code, _, stderr := cli(t, nil, "stats", "-config", filepath.Join(t.TempDir(), "none.toml")); code != 2 || !strings.Contains(stderr, "none.toml") {
		t.Errorf("stats with a missing -config file: exit %d, %q", code, stderr)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
