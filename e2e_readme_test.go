package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// Promises README.md makes to a user, checked from the outside.

// TestE2EReadmeExportImportBatchedPrompts: "An exported file is a reproducible artifact of an evaluation
// run: import it into an empty database and the same requests are hits with the same bytes" holds for a
// batched completions request too, whose prompts are entries of a kind of their own (completions-prompt):
// the import takes them, and a proxy on the imported file answers the request from them with no upstream
// call.
func TestE2EReadmeExportImportBatchedPrompts(t *testing.T) {
	p := newTestProxy(t, nil)
	const req = `{"model":"fake-model","prompt":["first prompt","second prompt"],"max_tokens":3}`
	r, want := p.Post("/v1/completions", req)
	expectCache(t, "batched prompts", r, want, 200, "MISS")
	p.Stop() // everything on disk

	dir := t.TempDir()
	file := filepath.Join(dir, "run.jsonl")
	if code, _, stderr := cli(t, nil, "export", "-db", p.DBPath, "-o", file); code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	imported := filepath.Join(dir, "imported.db")
	code, stdout, stderr := cli(t, nil, "import", "-db", imported, file)
	if code != 0 || !strings.Contains(stdout, "imported 2 entries") {
		t.Fatalf("import of an export with batched prompts: exit %d\n%s%s", code, stdout, stderr)
	}

	q := newTestProxy(t, func(c *fileConfig) { c.DatabaseURL = imported })
	r, got := q.Post("/v1/completions", req)
	expectCache(t, "batched prompts on the imported file", r, got, 200, "HIT")
	if items := r.Header.Get("X-Cache-Items"); items != "hits=2 misses=0" {
		t.Errorf("X-Cache-Items = %q, want hits=2 misses=0", items)
	}
	if n := q.Fake.Calls(); n != 0 {
		t.Errorf("upstream calls on the imported cache = %d, want 0", n)
	}
	// The choices are the stored ones; usage is 0 on an all-cached answer (README, Batched completions).
	if !bytes.Contains(got, []byte(`"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}`)) {
		t.Errorf("all-cached answer without zero usage: %s", got)
	}
	if before, after := choicesOf(t, want), choicesOf(t, got); before != after {
		t.Errorf("choices differ from the exported run's:\n got  %s\n want %s", after, before)
	}
}

// choicesOf returns the "choices" array of a completions answer, as text.
func choicesOf(t *testing.T, body []byte) string {
	t.Helper()
	i := bytes.Index(body, []byte(`"choices":`))
	j := bytes.Index(body, []byte(`],"usage"`))
	if i < 0 || j < i {
		t.Fatalf("no choices in %s", body)
	}
	return string(body[i : j+1])
}
