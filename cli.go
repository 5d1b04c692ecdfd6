package main

// Command-line helpers (issue "The cache's life"): the same binary inspects, compacts, exports and
// imports a cache, so that a cache can be shared as a reproducible artifact of an evaluation run.
//
//	llmcache stats  [-config F] [-db PATH]
//	llmcache vacuum [-config F] [-db PATH]
//	llmcache export [-namespace X] [-o FILE|-] [-config F] [-db PATH]
//	llmcache import [-config F] [-db PATH] FILE|-
//	llmcache batches [-config F] [-db PATH]
//
// The database is -db, else DATABASE_URL, else database_url of the config file (default ./config.toml;
// a missing default file means database_url's default, "cache.db"; a missing file named by -config is
// an error, as for the proxy).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"os"
	"path/filepath"
	"strings"

	"llmcache/db"
	"llmcache/db/redisstore"
	"llmcache/pipeline"
)

// importBatch is the number of lines imported per transaction.
const importBatch = 1000

// progressEvery is how many rows pass between two updates of the progress counter.
const progressEvery = 1000

const cliUsage = `usage:
  llmcache [-config F] [-listen ADDR] [-db PATH] [-demo] [-v]   run the proxy
  llmcache stats  [-config F] [-db PATH]                        print the cache's figures
  llmcache vacuum [-config F] [-db PATH]                        checkpoint and compact the cache file (stop the proxy first)
  llmcache export [-namespace X] [-o FILE|-] [-config F] [-db PATH]
                                                                write every entry (of namespace X) as JSON lines
                                                                (FILE is replaced only once the export is complete)
  llmcache import [-config F] [-db PATH] FILE|-                 upsert the entries of a JSON lines export
                                                                (lines that could not be served are refused and named)
  llmcache batches [-config F] [-db PATH]                       list the Batch API's batches with their progress
`

// isSubcommand reports whether args name a subcommand rather than the proxy's flags.
func isSubcommand(args []string) bool {
	return len(args) > 0 && args[0] != "" && !strings.HasPrefix(args[0], "-")
}

// runCommand runs the subcommand args[0] with its flags args[1:]; results go to stdout, messages and
// progress to stderr. It returns the exit code: 0 done, 1 failed, 2 bad usage.
func runCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	name := args[0]
	fs := flag.NewFlagSet("llmcache "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "config.toml", "path of the configuration file")
	dbFlag := fs.String("db", "", "SQLite file (overrides database_url and DATABASE_URL)")
	var namespace, out *string
	switch name {
	case "stats", "vacuum", "import", "batches":
	case "export":
		namespace = fs.String("namespace", "", "export only this namespace (default: every entry)")
		out = fs.String("o", "-", `output file ("-": stdout)`)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, cliUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "llmcache: unknown command %q\n%s", name, cliUsage)
		return 2
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return 2
	}
	wantPos := 0
	if name == "import" {
		wantPos = 1
	}
	if len(pos) != wantPos {
		fmt.Fprintf(stderr, "llmcache %s: expected %d file argument(s), got %q\n%s", name, wantPos, pos, cliUsage)
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	path, err := cliDBPath(*configPath, set["config"], *dbFlag, getenv)
	if err != nil {
		fmt.Fprintln(stderr, "llmcache:", err)
		return 2
	}
	if *dbFlag == "" {
		// With [store] backend = "redis" the commands work on the shared store (-db names a SQLite file).
		shared, err := cliShared(*configPath, set["config"], getenv)
		if err != nil {
			fmt.Fprintln(stderr, "llmcache:", err)
			return 2
		}
		if shared != nil {
			if err := runShared(ctx, name, *shared, namespace, set["namespace"], out, pos, stdout, stderr); err != nil {
				fmt.Fprintf(stderr, "llmcache %s: %v\n", name, err)
				return 1
			}
			return 0
		}
	}
	switch name {
	case "stats":
		err = cmdStats(path, stdout)
	case "vacuum":
		err = cmdVacuum(path, stdout)
	case "export":
		var ns *string
		if set["namespace"] {
			ns = namespace
		}
		err = cmdExport(ctx, path, ns, *out, stdout, stderr)
	case "import":
		err = cmdImport(ctx, path, pos[0], stdout, stderr)
	case "batches":
		err = cmdBatches(path, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "llmcache %s: %v\n", name, err)
		return 1
	}
	return 0
}

// parseInterspersed parses flags placed before and after positional arguments ("import f.jsonl -db x"),
// which flag.Parse alone stops at. "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// cliDBPath resolves the database file: -db, else DATABASE_URL, else database_url of the config file.
func cliDBPath(configPath string, explicitConfig bool, dbFlag string, getenv func(string) string) (string, error) {
	if dbFlag != "" {
		return db.PathFromURL(dbFlag), nil
	}
	cfg, err := loadConfig(configPath, !explicitConfig)
	if err == nil {
		err = applyEnv(&cfg, getenv)
	}
	if err != nil {
		return "", err
	}
	if cfg.DatabaseURL == "" {
		return "", errors.New("config: database_url must name a file")
	}
	return db.PathFromURL(cfg.DatabaseURL), nil
}

// cliShared is the shared store's options when the configuration (file and environment) says
// backend = "redis", else nil.
func cliShared(configPath string, explicitConfig bool, getenv func(string) string) (*redisstore.Options, error) {
	cfg, err := loadConfig(configPath, !explicitConfig)
	if err == nil {
		err = applyEnv(&cfg, getenv)
	}
	if err == nil {
		err = cfg.Store.validate()
	}
	if err != nil || cfg.Store.Backend != "redis" {
		return nil, err
	}
	pc, err := cfg.proxyConfig(getenv, nil)
	if err != nil {
		return nil, err
	}
	o := pc.Store.Redis
	return &o, nil
}

// runShared runs a command on the shared store: stats, export and import as on SQLite; vacuum has nothing
// to do there.
func runShared(ctx context.Context, name string, o redisstore.Options, namespace *string, nsSet bool, out *string, pos []string, stdout, stderr io.Writer) error {
	if name == "vacuum" {
		return errors.New("vacuum compacts a SQLite file; the shared store (backend = \"redis\") manages its own memory")
	}
	o.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := redisstore.Open(o)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Health(); err != nil {
		return err
	}
	switch name {
	case "stats":
		f, err := s.Figures()
		if err != nil {
			return err
		}
		kinds, namespaces, err := s.Breakdown()
		if err != nil {
			return err
		}
		w := bufio.NewWriter(stdout)
		fmt.Fprintf(w, "store:       redis at %s\n", s.Where())
		fmt.Fprintf(w, "keys:        %d (the whole database: entries, locks and whatever else shares it)\n", f.Keys)
		fmt.Fprintf(w, "used memory: %d (%s)\n", f.UsedBytes, humanBytes(f.UsedBytes))
		printCounts(w, kinds, namespaces)
		return w.Flush()
	case "export":
		var ns *string
		if nsSet {
			ns = namespace
		}
		return writeExport(ctx, s.Export, ns, *out, stdout, stderr)
	case "import":
		return importLines(ctx, pos[0], "the shared store at "+s.Where(), s.Import, stdout, stderr)
	}
	return nil
}

// mustExist refuses to go on with a database file that is not there, rather than create an empty one.
func mustExist(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("cannot open cache db %q: %w (pass -db, or set DATABASE_URL or database_url)", path, err)
	}
	return nil
}

func cmdStats(path string, stdout io.Writer) error {
	if err := mustExist(path); err != nil {
		return err
	}
	// Read-only: a running proxy on the same file is not disturbed (WAL), and nothing is written.
	store, err := db.OpenReadOnly(path)
	if err != nil {
		return err
	}
	defer store.Close()
	st, err := store.Stats()
	if err != nil {
		return err
	}
	kinds, namespaces, err := store.Breakdown()
	if err != nil {
		return err
	}
	w := bufio.NewWriter(stdout)
	fmt.Fprintf(w, "database:    %s\n", path)
	fmt.Fprintf(w, "entries:     %d\n", st.Entries)
	fmt.Fprintf(w, "file bytes:  %d (%s)\n", st.FileBytes, humanBytes(st.FileBytes))
	fmt.Fprintf(w, "wal bytes:   %d (%s)\n", st.WALBytes, humanBytes(st.WALBytes))
	fmt.Fprintf(w, "page size:   %d\n", st.PageSize)
	fmt.Fprintf(w, "free pages:  %d (%s reclaimable by llmcache vacuum)\n", st.FreePages, humanBytes(st.FreePages*st.PageSize))
	printCounts(w, kinds, namespaces)
	return w.Flush()
}

// printCounts prints the entries per kind and per namespace.
func printCounts(w io.Writer, kinds, namespaces []db.Count) {
	for _, g := range []struct {
		title  string
		counts []db.Count
	}{{"by kind:", kinds}, {"by namespace:", namespaces}} {
		fmt.Fprintln(w, g.title)
		if len(g.counts) == 0 {
			fmt.Fprintln(w, "  (none)")
		}
		for _, c := range g.counts {
			fmt.Fprintf(w, "  %-20q %10d entries %12s of bodies\n", c.Name, c.Entries, humanBytes(c.BodyBytes))
		}
	}
}

func cmdVacuum(path string, stdout io.Writer) error {
	if err := mustExist(path); err != nil {
		return err
	}
	store, err := db.Open(path, db.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	before, err := store.Stats()
	if err != nil {
		return err
	}
	// Checkpoint first, so that VACUUM rebuilds from the whole database, then again, because in WAL
	// mode the rebuilt pages land in the WAL and the file shrinks only when they are copied back.
	if err := store.Checkpoint(); err != nil {
		return err
	}
	if err := store.Vacuum(); err != nil {
		return err
	}
	if err := store.Checkpoint(); err != nil {
		return err
	}
	after, err := store.Stats()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "before: file %d bytes (%s), wal %d bytes, %d free pages\n",
		before.FileBytes, humanBytes(before.FileBytes), before.WALBytes, before.FreePages)
	fmt.Fprintf(stdout, "after:  file %d bytes (%s), wal %d bytes, %d free pages\n",
		after.FileBytes, humanBytes(after.FileBytes), after.WALBytes, after.FreePages)
	return nil
}

// cmdExport writes every entry (of *namespace, when set) as one JSON object per line to outPath ("-" =
// stdout). It reads through a read-only connection (db.ExportFile), so it may run beside a proxy, and
// never creates the database. A file is written under a temporary name beside outPath and renamed over it
// at the end: outPath (a symlink itself, never its target) is replaced only by a complete export, and a
// failed one leaves it as it was.
func cmdExport(ctx context.Context, path string, namespace *string, outPath string, stdout, stderr io.Writer) (err error) {
	if err := mustExist(path); err != nil {
		return err
	}
	export := func(ns *string, fn func(*db.ExportedEntry) error) error { return db.ExportFile(path, ns, fn) }
	return writeExport(ctx, export, namespace, outPath, stdout, stderr)
}

// writeExport writes what export yields as JSON lines to outPath ("-" = stdout), replacing a file only once
// the export is complete.
func writeExport(ctx context.Context, export func(*string, func(*db.ExportedEntry) error) error, namespace *string, outPath string, stdout, stderr io.Writer) (err error) {
	out := stdout
	var tmp *os.File
	if outPath != "-" {
		tmp, err = os.CreateTemp(filepath.Dir(outPath), "."+filepath.Base(outPath)+".tmp-*")
		if err != nil {
			return fmt.Errorf("cannot create %q: %w", outPath, err)
		}
		defer func() {
			if err != nil {
				_ = tmp.Close()
				_ = os.Remove(tmp.Name())
			}
		}()
		out = tmp
	}
	w := bufio.NewWriterSize(out, 256<<10)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	p := newProgress(stderr, "exported")
	err = export(namespace, func(e *db.ExportedEntry) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted: %w", err)
		}
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("cannot write %q: %w", outPath, err)
		}
		p.add(1)
		return nil
	})
	if err == nil {
		if ferr := w.Flush(); ferr != nil {
			err = fmt.Errorf("cannot write %q: %w", outPath, ferr)
		}
	}
	p.done()
	if err != nil {
		return err
	}
	if tmp != nil {
		// CreateTemp makes the file readable by its owner only; an export is made to be shared.
		err = tmp.Chmod(0o644)
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), outPath)
		}
		if err != nil {
			return fmt.Errorf("cannot write %q: %w", outPath, err)
		}
	}
	// The count goes to stderr: stdout may be the export itself.
	fmt.Fprintf(stderr, "exported %d entries\n", p.n)
	return nil
}

// vectorContentType is how the pipeline stores an embedding: little-endian float32s (see
// pipeline/embeddings.go). An imported embedding must be one, or it could never be served.
const vectorContentType = "application/x-llmcache-float32"

// maxRefusedShown bounds the refused lines an import names one by one; the count covers them all.
const maxRefusedShown = 100

// checkImportable reports why e cannot be imported, or nil: besides what db.ExportedEntry.Validate checks,
// an entry must be one this llmcache can serve as a hit byte for byte. A chat, completion or responses
// answer, and a batched completions prompt's choices, is a JSON object with a JSON content type; an
// embedding is a float32 vector; other kinds are not served. A responses entry's response_id is the body's
// id (filled in when the line has none).
func checkImportable(e *db.ExportedEntry) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if len(e.Body) == 0 {
		return errors.New("body_b64 is empty: an empty answer is never cached")
	}
	if e.CreatedAt <= 0 {
		return fmt.Errorf("created_at must be a time in unix milliseconds (got %d)", e.CreatedAt)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"version", e.Version}, {"last_hit_at", e.LastHitAt}, {"hit_count", e.HitCount}, {"expires_at", e.ExpiresAt}} {
		if f.v < 0 {
			return fmt.Errorf("%s must not be negative (got %d)", f.name, f.v)
		}
	}
	switch e.Kind {
	case pipeline.KindChat.String(), pipeline.KindCompletion.String(), pipeline.KindResponses.String(), pipeline.PromptEntryKind:
		if mt, _, err := mime.ParseMediaType(e.ContentType); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return fmt.Errorf("content_type %q is not JSON: a %s answer is a JSON object", e.ContentType, e.Kind)
		}
		if b := bytes.TrimLeft(e.Body, " \t\r\n"); len(b) == 0 || b[0] != '{' || !json.Valid(b) {
			return fmt.Errorf("body is not a JSON object: a %s answer is one", e.Kind)
		}
		if e.Kind == pipeline.KindResponses.String() {
			// GET /v1/responses/{id} finds the entry by the id of the response it holds.
			var r struct {
				ID string `json:"id"`
			}
			json.Unmarshal(e.Body, &r)
			switch {
			case e.ResponseID == "":
				e.ResponseID = r.ID
			case e.ResponseID != r.ID:
				return fmt.Errorf("response_id %q is not the id of the response in the body (%q)", e.ResponseID, r.ID)
			}
		}
	case pipeline.KindEmbedding.String():
		if e.ContentType != vectorContentType || len(e.Body)%4 != 0 {
			return fmt.Errorf("an embedding is a vector of float32s (content_type %q, a multiple of 4 bytes); got %q, %d bytes",
				vectorContentType, e.ContentType, len(e.Body))
		}
	default:
		return fmt.Errorf("kind %q is not one this llmcache serves (%s, %s, %s, %s, %s)", e.Kind,
			pipeline.KindChat, pipeline.KindCompletion, pipeline.PromptEntryKind, pipeline.KindEmbedding, pipeline.KindResponses)
	}
	return nil
}

// cmdImport upserts every line of inPath ("-" = stdin) into the database, importBatch lines per
// transaction. Every line is checked (checkImportable): a line that cannot be imported is refused, named
// on stderr with its number and the reason, and the import goes on with the next; the command then fails
// (exit 1) after importing the rest. Imports are upserts, so running the import again once the file is
// fixed gives the same result as one clean run. Blank lines are skipped.
func cmdImport(ctx context.Context, path, inPath string, stdout, stderr io.Writer) (err error) {
	store, err := db.Open(path, db.Options{})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := store.Close(); err == nil {
			err = cerr
		}
	}()
	return importLines(ctx, inPath, path, store.Import, stdout, stderr)
}

// importLines reads inPath's lines into importer, importBatch at a time (see cmdImport); into names the
// store in the final line.
func importLines(ctx context.Context, inPath, into string, importer func([]db.ExportedEntry) error, stdout, stderr io.Writer) (err error) {
	var in io.Reader = os.Stdin
	if inPath != "-" {
		f, err := os.Open(inPath)
		if err != nil {
			return fmt.Errorf("cannot open %q: %w", inPath, err)
		}
		defer f.Close()
		in = f
	}
	p := newProgress(stderr, "imported")
	defer p.done()
	r := bufio.NewReaderSize(in, 256<<10)
	batch := make([]db.ExportedEntry, 0, importBatch)
	firstLine := 0 // line number of batch[0]
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := importer(batch); err != nil {
			return fmt.Errorf("lines %d to %d not imported: %w", firstLine, firstLine+len(batch)-1, err)
		}
		p.add(len(batch))
		batch = batch[:0]
		return nil
	}
	refused := 0
	for line := 1; ; line++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted at line %d after %d entries imported: %w", line, p.n, err)
		}
		// ReadBytes, not a Scanner: a line holds a whole body in base64 and has no length limit.
		text, rerr := r.ReadBytes('\n')
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("cannot read %q at line %d: %w", inPath, line, rerr)
		}
		if len(bytes.TrimSpace(text)) > 0 {
			var e db.ExportedEntry
			dec := json.NewDecoder(bytes.NewReader(text))
			dec.DisallowUnknownFields() // a column this binary does not know would be lost silently
			err := dec.Decode(&e)
			if err == nil && dec.More() {
				err = errors.New("more than one JSON value on the line")
			}
			if err == nil {
				err = checkImportable(&e)
			}
			if err != nil {
				refused++
				if refused <= maxRefusedShown {
					p.done()
					fmt.Fprintf(stderr, "llmcache import: %s line %d refused: %v\n", inPath, line, err)
				}
			} else {
				if len(batch) == 0 {
					firstLine = line
				}
				batch = append(batch, e)
				if len(batch) == importBatch {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
		if rerr == io.EOF {
			break
		}
	}
	if err := flush(); err != nil {
		return err
	}
	p.done()
	fmt.Fprintf(stdout, "imported %d entries into %s\n", p.n, into)
	if refused > 0 {
		shown := ""
		if refused > maxRefusedShown {
			shown = fmt.Sprintf(" (the first %d named above)", maxRefusedShown)
		}
		return fmt.Errorf("refused %d lines of %s%s; the other %d entries were imported", refused, inPath, shown, p.n)
	}
	return nil
}

// progress is a counter on stderr, rewritten in place with \r every progressEvery rows, shown only when
// stderr is a terminal (a log file or a test buffer gets the final count only).
type progress struct {
	w    io.Writer // nil: not a terminal, nothing shown
	verb string
	n    int
	last int // n when last shown
}

func newProgress(stderr io.Writer, verb string) *progress {
	p := &progress{verb: verb}
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.w = f
		}
	}
	return p
}

func (p *progress) add(n int) {
	p.n += n
	if p.w != nil && p.n-p.last >= progressEvery {
		p.last = p.n
		fmt.Fprintf(p.w, "\r%s %d entries...", p.verb, p.n)
	}
}

// done clears the counter's line; calling it twice is harmless.
func (p *progress) done() {
	if p.w != nil && p.last > 0 {
		fmt.Fprint(p.w, "\r\033[K")
		p.last = 0
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
