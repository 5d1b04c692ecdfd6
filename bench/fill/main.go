// Command fill makes a cache database with many entries, for bench/startup.sh: the schema comes from
// llmcache's own db package, the rows from one INSERT ... SELECT that SQLite runs by itself (random
// 32-byte keys, a ~1.3 KB chat answer each), so a million rows take a minute, not an hour.
package main

import (
	"flag"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/ncruces/go-sqlite3"

	"llmcache/db"
)

func main() {
	path := flag.String("db", "cache.db", "database file to create or add to")
	n := flag.Int("entries", 1_000_000, "rows to add")
	flag.Parse()

	s, err := db.Open(*path, db.Options{}) // creates the schema, as the proxy would
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Close(); err != nil {
		log.Fatal(err)
	}
	c, err := sqlite3.Open(*path)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	answer := `{"id":"chatcmpl-fill","object":"chat.completion","created":1795600000,"model":"fake-model","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		strings.Repeat("a cached answer of about the usual size ", 30) + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":240,"total_tokens":260}}`
	began := time.Now()
	const batch = 100_000
	for done := 0; done < *n; done += batch {
		rows := min(batch, *n-done)
		err := c.Exec(fmt.Sprintf(`BEGIN;
INSERT INTO labels (kind, namespace, model, endpoint, upstream_model, content_type)
VALUES ('chat', '', 'fake-model', 'fill', 'fake-model', 'application/json') ON CONFLICT DO NOTHING;
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < %d)
INSERT INTO entries (key, label, created_at, body)
SELECT randomblob(32), (SELECT id FROM labels WHERE namespace = '' AND model = 'fake-model' AND endpoint = 'fill'),
       CAST(unixepoch('subsec') * 1000 AS INTEGER), CAST(%s AS BLOB) FROM seq;
COMMIT;`, rows, quote(answer)))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d rows in %v\n", done+rows, time.Since(began).Round(time.Millisecond))
	}
	if err := c.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		log.Fatal(err)
	}
}

// quote is a SQL string literal.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
