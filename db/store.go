// Package db is llmcache's persistent cache tier: an SQLite store (WAL mode,
// one writer connection, one read connection per miss-pool worker) reached
// through the small Store and Reader interfaces, so that a shared store
// (Redis, ...) can be added later without touching the pipeline or the writer.
//
// All times are unix milliseconds.
package db

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Key is the cache key: the SHA-256 of the canonical request.
type Key = [32]byte

// Entry is one cached answer.
type Entry struct {
	Key           Key
	Body          []byte
	ContentType   string
	Kind          string // "chat", "completion", "embedding", ...
	Namespace     string
	Model         string // the model the client asked for
	Endpoint      string // name of the endpoint that answered
	UpstreamModel string // the model name sent upstream
	Version       int64
	CreatedAt     int64 // unix ms
	LastHitAt     int64 // unix ms, 0 = never hit
	HitCount      int64
	ExpiresAt     int64 // unix ms, 0 = never
	// ResponseID, for an answer of the Responses API, is the id of the response it holds: the entry is
	// found by it (Reader.GetResponse). "" for other answers.
	ResponseID string
	// Refresh marks an answer fetched to replace whatever the cache held (no-cache, write_only): a store
	// shared by several instances tells the others to drop the old one from their memory layers once it is
	// written. Not stored.
	Refresh bool

	// Encoded is Body as the store will keep it, set by a store's Prepare (see Preparer) before the entry
	// reaches WriteBatch: compressed with dictionary Encoding. Nil: not prepared, or kept as it is; the
	// store encodes it when it writes. Readers never set it: Body is always the plain body.
	Encoded  []byte
	Encoding uint32
}

// Preparer is implemented by a store that can do part of a put's work before WriteBatch, on goroutines
// other than the writer's (the writer actor's preparers), so that it runs beside the writer's transactions
// rather than inside them: the SQLite store compresses the body. Prepare must be safe for concurrent use
// and only sets e.Encoded and e.Encoding.
type Preparer interface {
	Prepare(e *Entry)
}

// Touch records hits on an entry that is (or is about to be) on disk.
type Touch struct {
	Key  Key
	Hits int64 // hits to add to hit_count
	At   int64 // unix ms of the latest hit
}

// Batch is everything the writer actor flushes at once; it is written in ONE
// transaction. Puts are applied before Touches, so a touch may refer to an
// entry put in the same batch.
type Batch struct {
	Puts    []*Entry
	Touches []Touch
}

// Len is the number of operations in the batch.
func (b *Batch) Len() int { return len(b.Puts) + len(b.Touches) }

// Filter selects entries to delete. Set fields are combined with AND;
// zero-valued fields do not filter. At least one field must be set unless All
// is true (All alone deletes everything; All with other fields set is the same
// as those fields alone).
type Filter struct {
	Keys      []Key
	Namespace *string // nil: any namespace ("" is a valid namespace)
	Model     string  // the model the client asked for
	OlderThan int64   // created_at < OlderThan (unix ms)
	ExpiredBy int64   // 0 < expires_at <= ExpiredBy (unix ms): entries expired at that time
	// UnusedBefore selects entries neither created nor hit since then (unix ms) whose hit_count is below
	// HitsBelow: the retention rule of maintenance. Both must be set together.
	UnusedBefore int64
	HitsBelow    int64
	All          bool
	// Limit, when above 0, deletes at most that many rows in one transaction and returns: maintenance
	// loops over small chunks so that the writer is never held long. Not used with Keys.
	Limit int
}

func (f *Filter) empty() bool {
	return len(f.Keys) == 0 && f.Namespace == nil && f.Model == "" &&
		f.OlderThan == 0 && f.ExpiredBy == 0 && f.UnusedBefore == 0
}

// Everything reports whether f deletes every entry: All alone, with no other filter and no limit.
func (f *Filter) Everything() bool { return f.All && f.empty() && f.Limit == 0 }

// Stats describes the store. Computing it may count the rows: call it on
// demand only.
type Stats struct {
	Entries    int64 `json:"entries"`     // rows in the entries table
	HitEntries int64 `json:"hit_entries"` // entries hit at least once (rows of the hits table)
	FileBytes  int64 `json:"file_bytes"`  // size of the main database file on disk
	WALBytes   int64 `json:"wal_bytes"`   // size of the -wal file on disk (0 if absent)
	PageSize   int64 `json:"page_size"`
	PageCount  int64 `json:"page_count"` // pages in the database as readers see it (WAL included), free ones too
	FreePages  int64 `json:"free_pages"` // pages on the freelist (reclaimable by incremental vacuum)
	// DriverPanics counts the panics of the SQLite driver that calls on this store recovered into errors
	// since it was opened (each is also logged), on any of its connections, writer or reader.
	DriverPanics int64 `json:"driver_panics"`
	// Dictionaries is the number of compression dictionaries known (trained here or found on disk), and
	// Dictionary the one new answers are compressed with (0: none yet, answers are stored as they are).
	Dictionaries int64 `json:"dictionaries"`
	Dictionary   int64 `json:"dictionary"`
	// CorruptBodies counts the stored bodies that could not be decoded since the store was opened (each is
	// also logged, and served as a miss, so that the fresh answer replaces it).
	CorruptBodies int64 `json:"corrupt_bodies"`
}

// Store is the persistent cache tier seen by the pipeline's miss pool
// (through Readers) and the writer actor (the rest).
type Store interface {
	// OpenReader opens a read connection; safe to call from any goroutine.
	OpenReader() (Reader, error)
	// WriteBatch writes b in one transaction; on error nothing is written
	// and the caller may retry the same batch later.
	// Not safe for concurrent use; called only by the writer actor.
	WriteBatch(b *Batch) error
	// Delete deletes the entries selected by f and returns how many rows
	// were deleted. Large deletes run in chunks of a bounded number of rows,
	// one transaction each; on error the count covers the committed chunks.
	// Not safe for concurrent use; called only by the writer actor.
	Delete(f Filter) (int64, error)
	// Checkpoint copies the WAL into the database and truncates it.
	// Not safe for concurrent use; called only by the writer actor.
	Checkpoint() error
	// Optimize runs PRAGMA optimize.
	// Not safe for concurrent use; called only by the writer actor.
	Optimize() error
	// Stats may count rows: call it on demand, never at start-up.
	// Safe to call from any goroutine.
	Stats() (Stats, error)
	// Close closes the store. Readers should be closed first.
	Close() error
}

// Reader is one read connection; not safe for concurrent use: each miss-pool
// worker owns one.
type Reader interface {
	// Get fills e for key. e.Body is overwritten by appending into e.Body[:0]
	// (so callers can reuse its buffer); the other fields are set too, but
	// for the hit figures (LastHitAt, HitCount), which a store that keeps them
	// apart from the entries (SQLite) leaves 0: serving never needs them.
	// Returns false, nil when absent. It does not filter expired entries:
	// it returns ExpiresAt and the caller decides.
	Get(key *Key, e *Entry) (bool, error)
	// GetResponse is Get for the entry of namespace that holds the response with the given id (the newest
	// one, should several). It fills e.Key too.
	GetResponse(id, namespace string, e *Entry) (bool, error)
	Close() error
}

// Options tunes Open. The zero value is ready to use.
type Options struct {
	// BusyTimeout is how long a connection waits for a lock held by another
	// connection before failing with SQLITE_BUSY. Default 5s.
	BusyTimeout time.Duration
	// Log gets the progress of a schema migration of an existing database.
	// Default slog.Default().
	Log *slog.Logger
	// NoCompression stores new answers as they are. Compressed ones already on disk stay readable.
	NoCompression bool
	// TrainAfter is how many answers are stored before the first compression dictionary is trained from
	// them (in the background); later ones are trained after ten times as many answers each time.
	// Default DefaultTrainAfter.
	TrainAfter int64
}

// DefaultTrainAfter is Options.TrainAfter's default: enough answers for a dictionary that fits them (a
// thousand ~1.3 KB answers compress to 0.345 of their size, two thousand to 0.344).
const DefaultTrainAfter = 1000

// DefaultBusyTimeout is the busy timeout used when Options.BusyTimeout is 0.
const DefaultBusyTimeout = 5 * time.Second

// ErrClosed is returned by methods called on a closed store or reader.
var ErrClosed = errors.New("cache db is closed")

// ErrSchemaTooNew matches (with errors.Is) the error returned by Open for a
// database written by a newer llmcache.
var ErrSchemaTooNew = errors.New("schema version is newer than supported")

// SchemaTooNewError is returned by Open when the database's schema version is
// newer than this binary knows.
type SchemaTooNewError struct {
	Path      string
	Version   int64 // found in the database
	Supported int64 // the newest this binary knows
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("cannot open cache db %q: schema version %d is newer than this llmcache supports (%d); upgrade llmcache",
		e.Path, e.Version, e.Supported)
}

// Is reports whether target is ErrSchemaTooNew.
func (e *SchemaTooNewError) Is(target error) bool { return target == ErrSchemaTooNew }

// Lease is a flight lock held in a store shared by several instances (db/redisstore): while it is held,
// identical misses on the other instances wait for this one's answer instead of calling upstream.
type Lease interface {
	// Storing says the answer is on its way to the writer: the lock is let go, and the other instances
	// told, once the writer has written it. Call it before handing the answer to the writer.
	Storing()
	// End says the flight is over. Unless Storing was called, the lock is let go now and the other
	// instances are told there is nothing to read. It never blocks.
	End()
}
