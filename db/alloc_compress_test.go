//go:build !race

package db

import (
	"path/filepath"
	"testing"
)

// TestGetCompressedAllocatesNothing: reading a compressed body decodes it into the caller's buffer without
// allocating (counted without -race, whose sync.Pool drops what it holds).
func TestGetCompressedAllocatesNothing(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "cache.db"), Options{TrainAfter: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	putProse(t, s, 0, 100, 0)
	if err := s.TrainNow(); err != nil {
		t.Fatal(err)
	}
	putProse(t, s, 100, 102, 0)
	r := mustReader(t, s)
	k1, k2 := keyOf(100), keyOf(101)
	e := Entry{Body: make([]byte, 0, 4096)}
	if ok, err := r.Get(&k1, &e); !ok || err != nil {
		t.Fatal(ok, err)
	}
	allocs := testing.AllocsPerRun(200, func() {
		_, _ = r.Get(&k1, &e)
		_, _ = r.Get(&k2, &e)
	})
	if allocs != 0 {
		t.Fatalf("Get of a compressed body allocates %.1f times per run", allocs)
	}
}
