package db

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ncruces/go-sqlite3"
)

// fileState is a database file's bytes and whether its -wal and -shm files exist (with the -wal's bytes).
type fileState struct {
	main, wal   []byte
	hasWAL, shm bool
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	var st fileState
	var err error
	if st.main, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	st.wal, err = os.ReadFile(path + "-wal")
	st.hasWAL = err == nil
	_, err = os.Stat(path + "-shm")
	st.shm = err == nil
	return st
}

func (a fileState) equal(b fileState) bool {
	return bytes.Equal(a.main, b.main) && bytes.Equal(a.wal, b.wal) && a.hasWAL == b.hasWAL && a.shm == b.shm
}

// TestNewerSchemaRefusedBeforeWriting: a database whose schema_version is newer than this binary knows is
// refused before anything is written to it: the file's bytes, and whether it has -wal and -shm files, are
// as they were, whatever its journal mode and whether another process has it open.
func TestNewerSchemaRefusedBeforeWriting(t *testing.T) {
	newer := LatestSchemaVersion() + 1
	for _, c := range []struct {
		name  string
		setup string // run on the database by a connection of the "newer llmcache"
		open  bool   // that connection stays open (a newer proxy running; its WAL not checkpointed)
	}{
		{"rollback journal", `PRAGMA journal_mode = DELETE`, false},
		{"wal, closed", ``, false},
		{"wal, in use by another process", `PRAGMA wal_autocheckpoint = 0`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cache.db")
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			mustWrite(t, s, &Batch{Puts: []*Entry{entryOf(1), entryOf(2)}})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			other, err := sqlite3.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := other.Exec(c.setup + fmt.Sprintf(`; UPDATE meta SET value = %d WHERE key = 'schema_version'`, newer)); err != nil {
				t.Fatal(err)
			}
			if c.open {
				defer other.Close()
			} else if err := other.Close(); err != nil {
				t.Fatal(err)
			}
			before := stateOf(t, path)

			s, err = Open(path, Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open accepted a newer schema")
			}
			if !errors.Is(err, ErrSchemaTooNew) {
				t.Fatalf("error %v, want ErrSchemaTooNew", err)
			}
			if after := stateOf(t, path); !after.equal(before) {
				t.Fatalf("the refused database changed: main %d -> %d bytes (equal %v), -wal %v -> %v (%d -> %d bytes), -shm %v -> %v",
					len(before.main), len(after.main), bytes.Equal(before.main, after.main), before.hasWAL, after.hasWAL,
					len(before.wal), len(after.wal), before.shm, after.shm)
			}
		})
	}
}
