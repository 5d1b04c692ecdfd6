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

// importLine is one export line: a chat answer under key (a hex digit repeated 64 times when key is one
// character), changed by mutate.
func importLine(t *testing.T, key string, mutate func(*db.ExportedEntry)) string {
	t.Helper()
	if len(key) == 1 {
		key = strings.Repeat(key, 64)
	}
	e := db.ExportedEntry{Key: key, Kind: "chat", ContentType: "application/json", CreatedAt: 1_700_000_000_000,
		Body: []byte(`{"choices":[{"message":{"role":"assistant","content":"hi"}}]}`)}
	if mutate != nil {
		mutate(&e)
	}
	j, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

// TestCLIImportBadLine: a malformed line is refused with its line number and the reason; the other lines
// are imported, and the command fails.
func TestCLIImportBadLine(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, bad, why string }{
		{"not json", `{"key":`, "unexpected"},
		{"short key", `{"key":"abc","body_b64":""}`, "64 hex digits"},
		{"unknown field", `{"key":"` + strings.Repeat("c", 64) + `","body_b64":"","colour":"red"}`, "colour"},
		{"bad base64", `{"key":"` + strings.Repeat("c", 64) + `","body_b64":"!!"}`, "base64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := filepath.Join(dir, "in.jsonl")
			text := importLine(t, "a", nil) + "\n\n" + importLine(t, "b", nil) + "\n" + c.bad + "\n" + importLine(t, "d", nil) + "\n"
			if err := os.WriteFile(in, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, c.name+".db")
			code, stdout, stderr := cli(t, nil, "import", "-db", path, in)
			if code != 1 || !strings.Contains(stderr, "line 4 refused") || !strings.Contains(stderr, c.why) ||
				!strings.Contains(stderr, "refused 1 lines") || !strings.Contains(stdout, "imported 3 entries") {
				t.Fatalf("import: exit %d, stdout %q, stderr %q; want 1, line 4 refused for %q, the 3 others imported", code, stdout, stderr, c.why)
			}
			if n := len(dumpDB(t, path)); n != 3 {
				t.Errorf("%d rows imported, want 3", n)
			}
		})
	}
}

// TestCLIImportRefusesWhatCannotBeServed: import checks every line and refuses, naming each, entries that
// would be served as hits although no upstream would ever have given them: empty or non-JSON bodies, HTML,
// unknown kinds, embeddings that are not float32 vectors, impossible figures. A proxy on the imported file
// then answers such a request from the upstream, not with the imported bytes.
func TestCLIImportRefusesWhatCannotBeServed(t *testing.T) {
	p := newTestProxy(t, nil)
	r, real := p.Post("/v1/chat/completions", chatBody("poisoned"))
	expectCache(t, "miss", r, real, 200, "MISS")
	key := cacheKey(t, r)
	p.Stop()

	lines := []struct {
		line, why string
	}{
		{importLine(t, key, func(e *db.ExportedEntry) { e.ContentType, e.Body = "text/html", []byte("<html>pwned</html>") }), "not JSON"},
		{importLine(t, "1", func(e *db.ExportedEntry) { e.Body = []byte{} }), "empty"},
		{importLine(t, "2", func(e *db.ExportedEntry) { e.Body = []byte("not json at all") }), "not a JSON object"},
		{importLine(t, "3", func(e *db.ExportedEntry) { e.Body = []byte(`["an","array"]`) }), "not a JSON object"},
		{importLine(t, "4", func(e *db.ExportedEntry) { e.Kind = "images" }), `kind "images"`},
		{importLine(t, "5", func(e *db.ExportedEntry) { e.Kind, e.ContentType = "embedding", "application/json" }), "float32"},
		{importLine(t, "6", func(e *db.ExportedEntry) {
			e.Kind, e.ContentType, e.Body = "embedding", vectorContentType, []byte{1, 2, 3}
		}), "float32"},
		{importLine(t, "7", func(e *db.ExportedEntry) { e.HitCount = -1 }), "hit_count"},
		{importLine(t, "8", func(e *db.ExportedEntry) { e.CreatedAt = 0 }), "created_at"},
		{importLine(t, "9", nil), ""}, // fine
		{importLine(t, "a", func(e *db.ExportedEntry) {
			e.Kind, e.ContentType, e.Body = "embedding", vectorContentType, make([]byte, 8)
		}), ""},
		{importLine(t, "b", func(e *db.ExportedEntry) { e.Kind, e.ContentType = "completion", "application/json; charset=utf-8" }), ""},
	}
	var text strings.Builder
	for _, l := range lines {
		text.WriteString(l.line + "\n")
	}
	in := filepath.Join(t.TempDir(), "in.jsonl")
	if err := os.WriteFile(in, []byte(text.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "imported.db")
	code, stdout, stderr := cli(t, nil, "import", "-db", target, in)
	if code != 1 || !strings.Contains(stdout, "imported 3 entries") || !strings.Contains(stderr, "refused 9 lines") {
		t.Fatalf("import: exit %d, stdout %q, stderr %q; want 1, 3 imported and 9 refused", code, stdout, stderr)
	}
	for i, l := range lines {
		named := strings.Contains(stderr, "line "+itoa(i+1)+" refused")
		if l.why == "" {
			if named {
				t.Errorf("line %d refused: %s", i+1, stderr)
			}
			continue
		}
		if !named {
			t.Errorf("line %d (%s) is not named as refused:\n%s", i+1, l.why, stderr)
			continue
		}
		msg := stderr[strings.Index(stderr, "line "+itoa(i+1)+" refused"):]
		if msg = msg[:strings.IndexByte(msg, '\n')]; !strings.Contains(msg, l.why) {
			t.Errorf("line %d: %q does not say %q", i+1, msg, l.why)
		}
	}
	if n := len(dumpDB(t, target)); n != 3 {
		t.Errorf("%d rows imported, want 3", n)
	}

	q := newTestProxy(t, func(c *fileConfig) { c.DatabaseURL = target })
	r, b := q.Post("/v1/chat/completions", chatBody("poisoned"))
	expectCache(t, "the request whose HTML answer was refused", r, b, 200, "MISS")
	if err := checkEcho(b, "poisoned"); err != nil {
		t.Fatal(err)
	}
}

// TestCLIExportKeepsTheOutputOnFailure: an export that fails (a database path that does not exist, a file
// that is not a cache) leaves the output file as it was and creates nothing, neither the database nor a
// temporary file; a complete export replaces the output, and a symlink at the output is replaced, not
// followed.
func TestCLIExportKeepsTheOutputOnFailure(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "keep.jsonl")
	const precious = "an earlier export\n"
	if err := os.WriteFile(keep, []byte(precious), 0o644); err != nil {
		t.Fatal(err)
	}
	notCache := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notCache, []byte("not a database"), 0o644); err != nil {
		t.Fatal(err)
	}
	listing := func() []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	before := listing()
	for _, dbPath := range []string{filepath.Join(dir, "typo.db"), notCache} {
		code, _, stderr := cli(t, nil, "export", "-db", dbPath, "-o", keep)
		if code != 1 || !strings.Contains(stderr, filepath.Base(dbPath)) {
			t.Errorf("export of %s: exit %d, %q; want 1 naming the file", dbPath, code, stderr)
		}
		if b, err := os.ReadFile(keep); err != nil || string(b) != precious {
			t.Errorf("export of %s changed the output file: %q, %v", dbPath, b, err)
		}
		if after := listing(); !reflect.DeepEqual(after, before) {
			t.Errorf("export of %s changed the directory: %v -> %v", dbPath, before, after)
		}
	}

	p := newTestProxy(t, nil)
	r, b := p.Post("/v1/chat/completions", chatBody("exported"))
	expectCache(t, "miss", r, b, 200, "MISS")
	p.Stop()
	if code, _, stderr := cli(t, nil, "export", "-db", p.DBPath, "-o", keep); code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	if got, _ := os.ReadFile(keep); !strings.Contains(string(got), `"key":"`+cacheKey(t, r)+`"`) {
		t.Fatalf("the output holds %q, want the export", got)
	}
	if after := listing(); !reflect.DeepEqual(after, before) {
		t.Errorf("a complete export left files behind: %v -> %v", before, after)
	}

	link := filepath.Join(dir, "link.jsonl")
	if err := os.Symlink(notCache, link); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := cli(t, nil, "export", "-db", p.DBPath, "-o", link); code != 0 {
		t.Fatalf("export to a symlink: exit %d: %s", code, stderr)
	}
	if got, _ := os.ReadFile(notCache); string(got) != "not a database" {
		t.Errorf("the export wrote through the symlink into its target: %q", got)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the output at the symlink's path is not a regular file: %v %v", fi, err)
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
