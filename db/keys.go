package db

import "fmt"

// KeyScanner is what a store offers when it can list the keys on disk cheaply and knows that only its own
// writer adds to them: the pipeline then keeps a filter of those keys and skips the read of a key that is
// certainly absent. The shared store does not offer it (other instances write to it).
type KeyScanner interface {
	// ScanKeys calls fn with every key stored when the scan begins (one read transaction), in no order,
	// until fn returns false. fn must not keep the pointer.
	ScanKeys(fn func(*Key) bool) error
}

// ScanKeys implements KeyScanner: one pass over the key index on a read connection of its own, beside the
// writer and the miss pool's readers.
func (s *SQLite) ScanKeys(fn func(*Key) bool) (err error) {
	defer catch(&err, s.path, "scan the keys of")
	if s.closed.Load() {
		return fmt.Errorf("cannot scan the keys of cache db %q: %w", s.path, ErrClosed)
	}
	c, err := openRead(s.path, s.busyTimeout)
	if err != nil {
		return fmt.Errorf("cannot scan the keys of cache db %q: %w", s.path, err)
	}
	defer c.Close()
	st, _, err := c.Prepare(`SELECT key FROM entries`)
	if err != nil {
		return fmt.Errorf("cannot scan the keys of cache db %q: %w", s.path, err)
	}
	defer st.Close()
	var k Key
	for st.Step() {
		if b := st.ColumnRawBlob(0); len(b) == len(k) {
			copy(k[:], b)
			if !fn(&k) {
				break
			}
		}
	}
	if err := st.Err(); err != nil {
		return fmt.Errorf("cannot scan the keys of cache db %q: %w", s.path, err)
	}
	return nil
}
