package db

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ncruces/go-sqlite3"
)

// TestMigrationFromSchema2KeepsEveryColumn: a schema 2 database (descriptive columns in entries) is rebuilt
// at open: every entry keeps every field, its body and its hits, and the filters by namespace and model
// still select what they did.
func TestMigrationFromSchema2KeepsEveryColumn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(`PRAGMA journal_mode = WAL; ` + sqlCreateMeta + `; ` + migrations[0] + migrations[1] +
		`; INSERT INTO meta (key, value) VALUES ('schema_version', 2)`); err != nil {
		t.Fatal(err)
	}
	want := make([]*Entry, 60)
	for i := range want {
		e := entryOf(i)
		e.Namespace, e.Model, e.Endpoint = []string{"", "a", "b"}[i%3], fmt.Sprintf("m%d", i%2), fmt.Sprintf("ep%d", i%4)
		e.Kind, e.ContentType, e.UpstreamModel = []string{"chat", "embedding"}[i%2], "application/json", "up-"+e.Model
		e.Version, e.ExpiresAt, e.Body = int64(i%5), int64(i%3)*1000, bodyOf(i, 100+i)
		if i%4 == 0 {
			e.HitCount, e.LastHitAt = int64(i), int64(i)*10
		}
		want[i] = e
		err := c.Exec(fmt.Sprintf(`INSERT INTO entries (key, kind, namespace, model, endpoint, upstream_model, content_type, version, created_at, expires_at, body)
VALUES (x'%x', '%s', '%s', '%s', '%s', '%s', '%s', %d, %d, %d, x'%x')`, e.Key, e.Kind, e.Namespace, e.Model, e.Endpoint, e.UpstreamModel,
			e.ContentType, e.Version, e.CreatedAt, e.ExpiresAt, e.Body))
		if err == nil && e.HitCount > 0 {
			err = c.Exec(fmt.Sprintf(`INSERT INTO hits (key, hit_count, last_hit_at) VALUES (x'%x', %d, %d)`, e.Key, e.HitCount, e.LastHitAt))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	s, err := Open(path, Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(logs.String(), "copies every cached answer once") {
		t.Errorf("migration log:\n%s", logs.String())
	}
	r := mustReader(t, s)
	for i, w := range want {
		got, ok := mustGet(t, r, w.Key)
		if !ok || !bytes.Equal(got.Body, w.Body) || got.Kind != w.Kind || got.Namespace != w.Namespace || got.Model != w.Model ||
			got.Endpoint != w.Endpoint || got.UpstreamModel != w.UpstreamModel || got.ContentType != w.ContentType ||
			got.Version != w.Version || got.CreatedAt != w.CreatedAt || got.ExpiresAt != w.ExpiresAt ||
			got.HitCount != w.HitCount || got.LastHitAt != w.LastHitAt {
			t.Fatalf("entry %d after migration: ok=%v\n got %+v\nwant %+v", i, ok, got, w)
		}
	}
	if n, err := s.Delete(Filter{Namespace: new("a"), Model: "m1"}); err != nil || n != 10 {
		t.Fatalf("delete namespace a, model m1: %d, %v", n, err)
	}
	if n, err := s.Delete(Filter{Model: "m0"}); err != nil || n != 30 {
		t.Fatalf("delete model m0: %d, %v", n, err)
	}
	if n, err := s.Delete(Filter{Namespace: new("")}); err != nil || n != 10 {
		t.Fatalf("delete namespace \"\": %d, %v", n, err)
	}
	if n := queryInt(t, s, `SELECT count(*) FROM entries`); n != 10 {
		t.Fatalf("%d entries left, want 10", n)
	}
}
