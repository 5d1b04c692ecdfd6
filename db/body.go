package db

import (
	"io"

	"github.com/ncruces/go-sqlite3"
)

// Large bodies cross between Go and SQLite in chunks, through incremental blob I/O. Bound whole, a body
// is copied into the connection's memory (which is capped, 256 MB per connection with this driver, and
// never shrinks once grown) and copied again into the record SQLite builds: a 100 MB answer needed over
// 200 MB of it. In chunks, a body of any size needs bodyChunk. A large body is inserted as a zeroblob of
// its size, the last column of the record, which SQLite does not expand in memory, then written into.
// Incremental blob I/O needs a rowid: should entries become a WITHOUT ROWID table, large bodies would need
// a rowid table of their own to keep this.
const (
	largeBody = 1 << 20 // bodies above this many bytes are written and read in chunks
	bodyChunk = 1 << 20
)

// writeLargeBody writes body into the body column of the entries row rowid, which holds a zeroblob of
// the same size. It runs inside the caller's transaction.
func writeLargeBody(c *sqlite3.Conn, rowid int64, body []byte) (err error) {
	b, err := c.OpenBlob("main", "entries", "body", rowid, true)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := b.Close(); err == nil {
			err = cerr
		}
	}()
	for off := 0; off < len(body); off += bodyChunk {
		if _, err := b.Write(body[off:min(off+bodyChunk, len(body))]); err != nil {
			return err
		}
	}
	return nil
}

// readLargeBody appends the n-byte body of the entries row rowid to dst[:0]. On the connection of a
// statement still stepping on that row, it reads the statement's snapshot.
func readLargeBody(c *sqlite3.Conn, rowid, n int64, dst []byte) (_ []byte, err error) {
	b, err := c.OpenBlob("main", "entries", "body", rowid, false)
	if err != nil {
		return dst, err
	}
	defer func() {
		if cerr := b.Close(); err == nil {
			err = cerr
		}
	}()
	if int64(cap(dst)) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	for off := int64(0); off < n; off += bodyChunk {
		if _, err := io.ReadFull(b, dst[off:min(off+bodyChunk, n)]); err != nil {
			return dst[:0], err
		}
	}
	return dst, nil
}
